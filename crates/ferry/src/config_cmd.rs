//! `ferry config init` and `ferry config check`.

use std::io::Write;
use std::path::Path;

use ferry_config::{AlgorithmList, Config, ANNOTATED_TEMPLATE};
use ferry_sftp::Algorithms;

use crate::cli::{ConfigCmd, GlobalArgs};
use crate::{hostkeys, CliError};

pub fn run(global: &GlobalArgs, cmd: &ConfigCmd) -> Result<(), CliError> {
    match cmd {
        ConfigCmd::Init { output: None, .. } => {
            let _ = std::io::stdout().write_all(ANNOTATED_TEMPLATE.as_bytes());
            Ok(())
        }
        ConfigCmd::Init { output: Some(path), force } => {
            if path.exists() && !force {
                return Err(CliError::usage(
                    format!("{} already exists", path.display()),
                    "pass --force to overwrite it, or choose another file",
                ));
            }
            std::fs::write(path, ANNOTATED_TEMPLATE)
                .map_err(|e| CliError::runtime(format!("cannot write {}: {e}", path.display())))?;
            println!("wrote {}; start with: ferry --config {} serve", path.display(), path.display());
            Ok(())
        }
        ConfigCmd::Check => check(global),
    }
}

/// What `check` found wrong: each is printed with a hint, and the command exits 1.
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn add(&mut self, message: String, hint: String) {
        println!("problem: {message}");
        println!("  hint: {hint}");
        self.0.push((message, hint));
    }
}

fn check(global: &GlobalArgs) -> Result<(), CliError> {
    let env = crate::bootstrap::load(global)?;
    let c = &env.config;
    println!("data dir: {}", env.data_dir.display());
    for l in &c.server.listeners {
        println!("listener: {l}");
    }
    println!("passive ports: {}", c.server.passive_ports);
    println!("shutdown grace: {}s", c.server.shutdown_grace.as_secs());
    for list in AlgorithmList::ALL {
        println!("ssh {}: {}", list.key(), c.sftp.algorithms.get(list).join(","));
    }
    let mut problems = Problems::default();
    check_host_keys(&env.data_dir, c, &mut problems);
    let serves_ftp = c.server.listeners.iter().any(|l| l.protocols.iter().any(|p| p.is_ftp()));
    if serves_ftp {
        check_certificate(&env.data_dir, c, &mut problems);
    } else {
        println!("tls certificate: not used (no FTPS listener)");
    }
    match problems.0.len() {
        0 => {
            println!("configuration OK");
            Ok(())
        }
        n => Err(CliError::runtime(format!("the configuration has {n} problem(s), listed above"))),
    }
}

fn check_host_keys(data_dir: &Path, c: &Config, problems: &mut Problems) {
    let algorithms = match Algorithms::from_config(&c.sftp.algorithms) {
        Ok(a) => a,
        Err(e) => {
            return problems.add(e, "report this: the configuration names an algorithm Ferry cannot offer".into())
        }
    };
    let mut offered = 0;
    for path in hostkeys::paths(data_dir, &c.sftp.host_keys) {
        if c.sftp.host_keys.is_empty() && !path.exists() {
            println!("host key {}: not there yet (ferry serve generates it)", path.display());
            offered += 1;
            continue;
        }
        // `load` refuses open permissions and RSA under 2048 bits, as `serve` does.
        let key = match hostkeys::load(&path) {
            Ok(k) => k,
            Err(e) => {
                problems.add(e.message, e.hint.unwrap_or_default());
                continue;
            }
        };
        let (algo, fingerprint) = hostkeys::describe(&key);
        let bits = hostkeys::rsa_bits(&key).map(|b| format!(" {b}")).unwrap_or_default();
        let with = algorithms.offered_for(&key);
        if with.is_empty() {
            println!("host key {algo}{bits} {fingerprint} {}: not offered (no algorithm for it)", path.display());
        } else {
            offered += 1;
            println!("host key {algo}{bits} {fingerprint} {}: offered as {}", path.display(), with.join(","));
        }
        if matches!(hostkeys::rsa_bits(&key), Some(b) if b < 3072) {
            println!("  warning: RSA below 3072 bits is warned about by ssh-audit (ssh-keygen -t rsa -b 3072)");
        }
    }
    if let Some(path) = hostkeys::skipped_ecdsa(data_dir, &c.sftp.host_keys) {
        println!("host key {}: not offered (ECDSA; list it in [sftp] host_keys to offer it)", path.display());
    }
    if offered == 0 {
        problems.add(
            "no host key can be offered".into(),
            "add the algorithm of a key you have to [sftp] host_key_algorithms, or a key to host_keys".into(),
        );
    }
}

fn check_certificate(data_dir: &Path, c: &Config, problems: &mut Problems) {
    let paths = match ferry_tls::cert_paths(data_dir, c.ftps.cert.as_deref(), c.ftps.key.as_deref()) {
        Ok(p) => p,
        Err(e) => return problems.add(e.message, "name both [ftps] cert and key, or neither".into()),
    };
    if paths.self_signed && !paths.cert.exists() {
        println!("tls certificate {}: not there yet (ferry serve generates a self-signed one)", paths.cert.display());
        return;
    }
    let s = match ferry_tls::inspect(&paths) {
        Ok(s) => s,
        Err(e) => {
            let hint = e
                .hint
                .unwrap_or_else(|| "fix [ftps] cert and key, or remove both to use a generated certificate".into());
            return problems.add(format!("tls certificate: {}", e.message), hint);
        }
    };
    let origin = if paths.self_signed { "self-signed, generated" } else { "from the config" };
    println!("tls certificate {} ({origin}): {}", paths.cert.display(), s.subject);
    println!("  names: {}", s.sans.join(", "));
    println!("  key: {} (private key {}: permissions OK)", s.key, paths.key.display());
    println!("  SHA256 {}", s.sha256);
    println!("  expires {} ({} days left)", s.expires(), s.days_left);
    if s.days_left < 0 {
        problems.add(
            format!("tls certificate {} expired {} days ago", paths.cert.display(), -s.days_left),
            "renew it, then `kill -HUP` the server".into(),
        );
    } else if s.days_left < ferry_tls::RENEW_BEFORE_DAYS {
        if paths.self_signed {
            println!("  ferry serve makes a new one at its next start (or within a day)");
        } else {
            println!(
                "  warning: fewer than {} days left: renew it, then `kill -HUP` the server",
                ferry_tls::RENEW_BEFORE_DAYS
            );
        }
    }
}
