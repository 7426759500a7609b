//! `ferry probe`: runs the checker of `ferry-probe` and maps its verdict to the exit status.

use std::io::BufRead;
use std::time::Duration;

use ferry_probe::{ProbeOptions, Target};

use crate::cli::ProbeArgs;
use crate::CliError;

pub fn run(args: &ProbeArgs) -> Result<(), CliError> {
    let targets = args
        .targets
        .iter()
        .map(|t| Target::parse(t).map_err(|e| CliError::usage(e.to_string(), "give HOST, HOST:PORT or [IPv6]:PORT")))
        .collect::<Result<Vec<_>, _>>()?;
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::runtime(format!("reading the password from standard input: {e}")))?;
        Some(line.trim_end_matches(['\n', '\r']).to_string())
    } else {
        None
    };
    if args.user.is_some() && password.is_none() && args.key.is_none() {
        return Err(CliError::usage(
            "--user needs --password-stdin or --key FILE",
            "echo 'PASSWORD' | ferry probe host:2222 --user NAME --password-stdin",
        ));
    }
    let opts = ProbeOptions {
        user: args.user.clone(),
        password,
        key: args.key.clone(),
        timeout: Duration::from_secs(args.timeout),
        json: args.json,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the async runtime: {e}")))?;
    let report = runtime.block_on(ferry_probe::run(targets, opts));
    runtime.shutdown_timeout(Duration::from_secs(1));
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render_text());
    }
    if report.all_passed() {
        Ok(())
    } else {
        // The report already says what failed; the exit status is for scripts.
        Err(CliError { message: "some checks failed (see above)".into(), hint: None, code: 1 })
    }
}
