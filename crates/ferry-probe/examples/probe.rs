//! `probe HOST[:PORT]... [--user U] [--password-stdin] [--key FILE] [--timeout SECS] [--json]`:
//! the same arguments as `ferry probe`, for the crate's own end-to-end tests before the binary
//! wires the subcommand.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ferry_probe::{run, ProbeOptions, Target};

const USAGE: &str = "usage: probe HOST[:PORT]... [--user U] [--password-stdin] [--key FILE] [--timeout SECS] [--json]";

fn parse() -> Result<(Vec<Target>, ProbeOptions), String> {
    let mut opts = ProbeOptions::default();
    let mut targets = Vec::new();
    let mut password_stdin = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--user" => opts.user = Some(value("--user")?),
            "--key" => opts.key = Some(PathBuf::from(value("--key")?)),
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: f64 = v.parse().map_err(|_| format!("--timeout {v}: not a number of seconds"))?;
                if !(secs > 0.0 && secs <= 3600.0) {
                    return Err("--timeout must be between 0 and 3600 seconds".into());
                }
                opts.timeout = Duration::from_secs_f64(secs);
            }
            "--password-stdin" => password_stdin = true,
            "--json" => opts.json = true,
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s => targets.push(Target::parse(s).map_err(|e| e.to_string())?),
        }
    }
    if targets.is_empty() {
        return Err(USAGE.into());
    }
    if password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
        opts.password = Some(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if opts.user.is_none() && (opts.password.is_some() || opts.key.is_some()) {
        return Err("--password-stdin and --key need --user".into());
    }
    Ok((targets, opts))
}

fn main() -> ExitCode {
    let (targets, opts) = match parse() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let json = opts.json;
    let report = rt.block_on(run(targets, opts));
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render_text());
    }
    if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
