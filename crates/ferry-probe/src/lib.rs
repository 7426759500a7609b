//! `ferry probe HOST[:PORT]...`: what each port speaks (SSH, FTP with or without AUTH TLS,
//! implicit TLS), what is wrong with it in plain words, and — with credentials — whether a login,
//! a listing and a transfer work.
//!
//! Each port is tried three ways on fresh connections: wait for a greeting, send a TLS
//! ClientHello, send an SSH version line. A port that answers one of them sensibly speaks that
//! protocol; the other answers are kept as notes ("this is an SSH port, not FTPS").
//!
//! What counts (documented for users in `ferry probe --help` by the binary):
//! - **fail**: nothing listens / no answer / nothing identified on a port asked for; SSH-1 only;
//!   every algorithm of a kind weak; an FTP server without working AUTH TLS; a TLS handshake that
//!   fails; an expired or not-yet-valid certificate; a CA-signed certificate for another name;
//!   an invalid chain; any login, list, upload, download or remove that fails.
//! - **warn**: weak algorithms offered beside good ones; Terrapin; a self-signed certificate or
//!   one from a CA the system does not know (and a name mismatch on those); a certificate that
//!   expires within 14 days; FEAT missing; a PASV address that differs from the server's; a
//!   closed default port (22/21/990 when no port was given) as long as another default port of
//!   the host answers.
//! - A port passes when at least one protocol was identified and none of its checks failed; the
//!   run passes when every port passed (closed default ports aside).

#![forbid(unsafe_code)]

mod classify;
mod ftp;
mod net;
mod probe;
mod report;
mod ssh;
mod target;
mod tls;
mod transfer;

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinSet;

pub use report::{Attempt, Check, PortReport, Report, Status, TransferInfo};
pub use target::{Target, TargetError, DEFAULT_PORTS};

/// The timeout when none (or zero) is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the user asked for besides the targets.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// With a user, the login checks run (password and/or key).
    pub user: Option<String>,
    pub password: Option<String>,
    /// An unencrypted OpenSSH private key, for SFTP.
    pub key: Option<PathBuf>,
    /// For each connect and each wait for an answer.
    pub timeout: Duration,
    /// For the caller: print `to_json()` instead of `render_text()`.
    pub json: bool,
}

impl Default for ProbeOptions {
    fn default() -> ProbeOptions {
        ProbeOptions { user: None, password: None, key: None, timeout: DEFAULT_TIMEOUT, json: false }
    }
}

/// Probes every port of every target, all at once; the report lists them in the order given.
pub async fn run(targets: Vec<Target>, opts: ProbeOptions) -> Report {
    let timeout = if opts.timeout.is_zero() { DEFAULT_TIMEOUT } else { opts.timeout };
    let creds = opts.user.clone().map(|user| transfer::Credentials {
        user,
        password: opts.password.clone(),
        key: opts.key.clone(),
    });
    let mut set = JoinSet::new();
    let mut n = 0;
    for (t, target) in targets.iter().enumerate() {
        for port in target.ports() {
            let (host, default_port, creds) = (target.host.clone(), target.port.is_none(), creds.clone());
            let i = n;
            set.spawn(async move { (i, t, probe::probe_port(host, port, default_port, timeout, creds).await) });
            n += 1;
        }
    }
    let mut done = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        // A panicking probe is a bug; the other ports' results still count.
        if let Ok(r) = joined {
            done.push(r);
        }
    }
    done.sort_by_key(|(i, _, _)| *i);
    let mut ports: Vec<(usize, PortReport)> = done.into_iter().map(|(_, t, r)| (t, r)).collect();
    fail_silent_hosts(&mut ports);
    Report::new(ports.into_iter().map(|(_, r)| r).collect())
}

/// A closed default port is only a note while another port of the same target answers; when
/// none does, the host has failed. `ports`: (target index, report).
fn fail_silent_hosts(ports: &mut [(usize, PortReport)]) {
    let silent: Vec<usize> = ports
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| !ports.iter().any(|(ti, r)| ti == t && !r.protocols.is_empty()))
        .collect();
    for (t, r) in ports.iter_mut() {
        if silent.contains(t) {
            for c in r.checks.iter_mut().filter(|c| c.name == probe::CONNECT_CHECK) {
                c.status = Status::Fail;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(port: u16) -> PortReport {
        let mut r = PortReport::new("h", port, true);
        r.checks.push(Check::warn(probe::CONNECT_CHECK, "refused"));
        r.settle();
        r
    }

    #[test]
    fn closed_default_ports_fail_only_when_no_port_answers() {
        let mut open = PortReport::new("h", 22, true);
        open.protocols.push("ssh".into());
        open.settle();
        let mut ports = vec![(0, open), (0, closed(21)), (0, closed(990)), (1, closed(22)), (1, closed(21))];
        fail_silent_hosts(&mut ports);
        let status = |i: usize| ports[i].1.checks.first().map(|c| c.status);
        assert_eq!((status(1), status(2)), (Some(Status::Warn), Some(Status::Warn)));
        assert_eq!((status(3), status(4)), (Some(Status::Fail), Some(Status::Fail)));
        let report = Report::new(ports.into_iter().map(|(_, r)| r).collect());
        assert!(!report.all_passed());
    }
}
