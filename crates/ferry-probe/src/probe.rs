//! One port: three independent ways in (wait for a greeting; a TLS ClientHello; an SSH version
//! line), each on its own connection, merged into what the port speaks and what is wrong.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::classify::{classify_bytes, explain, explain_connect, explain_unidentified, ConnectFailure, Heard, Method};
use crate::ftp::control::{tls_error_words, Control};
use crate::ftp::{self, login::Mode, FtpInfo};
use crate::net::{connect, read_until, seen, ReadEnd, Recorder, GREETING_WAIT};
use crate::report::{Attempt, Check, PortReport, Status};
use crate::ssh::{self, hostkeys, SshScan, CLIENT_VERSION};
use crate::tls::{client_config, server_name_or_ip, tls_checks, TlsInfo};
use crate::transfer::Credentials;

/// The check name of a port that could not be connected to or resolved.
pub const CONNECT_CHECK: &str = "port.connect";

/// What one attempt found.
#[derive(Debug)]
enum Outcome {
    Connect(ConnectFailure),
    Ssh(SshScan),
    Ftp(FtpInfo),
    /// A TLS handshake worked (implicit TLS), with what came inside.
    Tls(TlsInfo),
    /// The server answers TLS but the handshake failed; the reason.
    TlsFailed(String),
    Heard(Heard),
}

fn heard_from_end(end: &ReadEnd) -> Heard {
    match end {
        ReadEnd::Eof => Heard::Closed,
        ReadEnd::Reset => Heard::Reset,
        ReadEnd::Error(e) => Heard::Failed(format!("read error: {e}")),
        ReadEnd::Timeout | ReadEnd::Enough => Heard::Silence,
    }
}

/// Enough of an answer to classify it: a whole line, or a TLS record header, or plenty of bytes.
fn classifiable(b: &[u8]) -> bool {
    b.contains(&b'\n') || b.len() >= 256 || (b.len() >= 7 && (0x14..=0x17).contains(&b[0]))
}

/// Reads the first bytes: something within `first_wait`, then the rest of the line within `timeout`.
async fn first_answer(stream: &mut TcpStream, first_wait: Duration, timeout: Duration) -> (Vec<u8>, Heard) {
    let mut buf = Vec::new();
    let end = read_until(stream, &mut buf, Instant::now() + first_wait, |b| !b.is_empty()).await;
    if buf.is_empty() {
        return (buf, heard_from_end(&end));
    }
    let _ = read_until(stream, &mut buf, Instant::now() + timeout, classifiable).await;
    let heard = classify_bytes(&buf);
    (buf, heard)
}

/// Connect and wait for the server to speak first.
async fn greeting_attempt(addr: SocketAddr, host: &str, timeout: Duration) -> Outcome {
    let mut stream = match connect(addr, timeout).await {
        Ok(s) => s,
        Err(f) => return Outcome::Connect(f),
    };
    let (buf, heard) = first_answer(&mut stream, GREETING_WAIT.min(timeout), timeout).await;
    match heard {
        Heard::Ssh(_) => match ssh::scan(&mut stream, buf, false, Instant::now() + timeout).await {
            Ok(scan) => Outcome::Ssh(scan),
            Err(e) => Outcome::Heard(Heard::Failed(e)),
        },
        Heard::Ftp(_) => match ftp::scan_plain(stream, buf, host, addr.ip(), timeout).await {
            Ok(info) => Outcome::Ftp(info),
            Err(e) => Outcome::Heard(Heard::Failed(e)),
        },
        other => Outcome::Heard(other),
    }
}

/// Open with a TLS ClientHello; on success read the FTP greeting inside TLS.
async fn tls_attempt(addr: SocketAddr, host: &str, timeout: Duration) -> Outcome {
    let stream = match connect(addr, timeout).await {
        Ok(s) => s,
        Err(f) => return Outcome::Connect(f),
    };
    let config = match client_config() {
        Ok(c) => c,
        Err(e) => return Outcome::Heard(Heard::Failed(format!("TLS set-up failed: {e}"))),
    };
    let name = server_name_or_ip(host, addr.ip());
    let (rec, recorded) = Recorder::new(stream);
    let res = tokio::time::timeout(timeout, TlsConnector::from(config).connect(name, rec)).await;
    let tls = match res {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let bytes = seen(&recorded);
            if bytes.is_empty() {
                return Outcome::Heard(match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => Heard::Closed,
                    std::io::ErrorKind::ConnectionReset => Heard::Reset,
                    _ => Heard::Failed(tls_error_words(&e)),
                });
            }
            return match classify_bytes(&bytes) {
                // The server speaks TLS, but not with this client.
                Heard::Tls | Heard::TlsAlert(_) => Outcome::TlsFailed(tls_error_words(&e)),
                other => Outcome::Heard(other),
            };
        }
        Err(_) => {
            let bytes = seen(&recorded);
            return Outcome::Heard(if bytes.is_empty() { Heard::Silence } else { classify_bytes(&bytes) });
        }
    };
    let mut info = TlsInfo::from_connection(tls.get_ref().1, host, "implicit");
    let mut control = Control::new(tls, Vec::new(), timeout);
    if let Ok(greeting) = control.reply_within(GREETING_WAIT.min(timeout)).await {
        info.ftp_greeting = Some(greeting.summary());
        if greeting.code == 220 {
            info.ftp_features = ftp::feat(&mut control).await.lines;
        }
    }
    control.quit().await;
    Outcome::Tls(info)
}

/// Open with an SSH version line.
async fn ssh_attempt(addr: SocketAddr, timeout: Duration) -> Outcome {
    let mut stream = match connect(addr, timeout).await {
        Ok(s) => s,
        Err(f) => return Outcome::Connect(f),
    };
    let hello = format!("{CLIENT_VERSION}\r\n");
    match tokio::time::timeout(timeout, stream.write_all(hello.as_bytes())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Outcome::Heard(Heard::Failed(format!("cannot send the SSH version line: {e}"))),
        Err(_) => return Outcome::Heard(Heard::Failed("timed out sending the SSH version line".into())),
    }
    let (buf, heard) = first_answer(&mut stream, timeout, timeout).await;
    match heard {
        Heard::Ssh(_) => match ssh::scan(&mut stream, buf, true, Instant::now() + timeout).await {
            Ok(scan) => Outcome::Ssh(scan),
            Err(e) => Outcome::Heard(Heard::Failed(e)),
        },
        other => Outcome::Heard(other),
    }
}

/// Resolves `host:port` to the address to probe: the first that accepts a connection when the
/// name has several (`localhost` is often ::1 and 127.0.0.1, and a server may listen on one only).
async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Err(_) => return Err(format!("resolving {host} timed out")),
        Ok(Err(e)) => return Err(format!("cannot resolve {host}: {e}")),
        Ok(Ok(addrs)) => addrs.collect(),
    };
    let Some(first) = addrs.first().copied() else { return Err(format!("{host} has no address")) };
    if addrs.len() > 1 {
        for addr in &addrs {
            if connect(*addr, timeout).await.is_ok() {
                return Ok(*addr);
            }
        }
    }
    Ok(first)
}

/// Probes one port; `creds` adds the login checks.
pub async fn probe_port(
    host: String,
    port: u16,
    default_port: bool,
    timeout: Duration,
    creds: Option<Credentials>,
) -> PortReport {
    let mut report = PortReport::new(&host, port, default_port);
    let addr = match resolve(&host, port, timeout).await {
        Ok(a) => a,
        Err(e) => {
            report.checks.push(Check::fail(CONNECT_CHECK, e).hint("check the name (a typo? no DNS?)"));
            report.settle();
            return report;
        }
    };
    report.address = Some(addr.ip().to_string());
    let (greeting, tls, ssh) = tokio::join!(
        greeting_attempt(addr, &host, timeout),
        tls_attempt(addr, &host, timeout),
        ssh_attempt(addr, timeout)
    );
    merge(&mut report, vec![(Method::Greeting, greeting), (Method::TlsHello, tls), (Method::SshHello, ssh)]);
    if let Some(info) = report.ssh.as_mut() {
        if info.kexinit_error.is_none() {
            let (keys, errors) = hostkeys::fetch(addr, &info.host_key_algorithms, timeout).await;
            info.host_keys = keys;
            info.host_key_errors = errors;
        }
    }
    security_checks(&mut report);
    if let Some(creds) = &creds {
        login_checks(&mut report, addr, creds, timeout).await;
    }
    report.settle();
    report
}

/// Folds the attempts into the report: protocols, details, and the answers that identified nothing.
fn merge(report: &mut PortReport, outcomes: Vec<(Method, Outcome)>) {
    let port = report.port;
    if let Some((_, Outcome::Connect(f))) = outcomes.first() {
        if outcomes.iter().all(|(_, o)| matches!(o, Outcome::Connect(_))) {
            let (detail, hint) = explain_connect(f, port);
            // A default port the user did not ask for may well be closed: a note, unless no
            // default port of the host answers (decided in `run`).
            let status = if report.default_port { Status::Warn } else { Status::Fail };
            report.checks.push(Check::new(CONNECT_CHECK, status, detail).hint(hint));
            return;
        }
    }
    let mut answers = Vec::new();
    let mut tls_failed = None;
    for (method, outcome) in outcomes {
        match outcome {
            Outcome::Ssh(scan) => {
                // Both the greeting and the SSH-line attempt read the offer; keep one that has it.
                let better = report.ssh.as_ref().is_none_or(|s| s.kexinit_error.is_some() && scan.kexinit.is_ok());
                if better {
                    report.ssh = Some(scan.into_info());
                }
            }
            Outcome::Ftp(info) => report.ftp = Some(info),
            Outcome::Tls(info) => report.tls = Some(info),
            Outcome::TlsFailed(why) => tls_failed = Some(why),
            Outcome::Connect(f) => report
                .attempts
                .push(Attempt { method, result: format!("could not connect: {}", explain_connect(&f, port).0) }),
            Outcome::Heard(h) => answers.push((method, h)),
        }
    }
    if report.ssh.is_some() {
        report.protocols.push("ssh".into());
    }
    if let Some(ftp) = &report.ftp {
        report.protocols.push(ftp.protocol().into());
    }
    if let Some(tls) = &report.tls {
        let ftp_inside = tls.ftp_greeting.as_deref().is_some_and(|g| g.starts_with("220"));
        report.protocols.push(if ftp_inside { "ftps-implicit" } else { "tls" }.into());
    } else if let Some(why) = tls_failed {
        report.protocols.push("tls".into());
        report.checks.push(Check::fail("tls.handshake", why));
    }
    if report.protocols.is_empty() {
        let (detail, hint) = explain_unidentified(&answers);
        report.checks.push(Check::fail("port.identify", detail).hint(hint));
        return;
    }
    for (method, heard) in answers {
        report.attempts.push(Attempt { method, result: explain(method, &heard) });
    }
}

fn security_checks(report: &mut PortReport) {
    let mut checks = Vec::new();
    if let Some(info) = &report.ssh {
        checks.extend(ssh::checks(info));
    }
    if let Some(info) = &report.ftp {
        checks.extend(ftp::checks(info));
    }
    if let Some(info) = &report.tls {
        checks.extend(tls_checks("tls", info));
        checks.push(match &info.ftp_greeting {
            Some(g) if g.starts_with("220") => Check::pass("tls.ftp_greeting", g.clone()),
            Some(g) => {
                Check::fail("tls.ftp_greeting", format!("the FTP server inside TLS does not accept clients: {g}"))
            }
            None => Check::warn(
                "tls.ftp_greeting",
                "TLS works but no FTP greeting came inside it: not an FTPS port (HTTPS? another TLS service?)",
            ),
        });
    }
    report.checks.extend(checks);
}

async fn login_checks(report: &mut PortReport, addr: SocketAddr, creds: &Credentials, timeout: Duration) {
    let protocols = report.protocols.clone();
    for p in protocols {
        let (checks, info) = match p.as_str() {
            "ssh" => ssh::login::check(addr, creds, timeout).await,
            "ftps" => ftp::login::check(addr, &report.host, Mode::Explicit, creds, timeout).await,
            "ftps-implicit" => ftp::login::check(addr, &report.host, Mode::Implicit, creds, timeout).await,
            "ftp" => (
                vec![Check::warn(
                    "ftp.login",
                    "skipped: the server offers no TLS, so the password would cross the network in clear",
                )],
                None,
            ),
            _ => continue,
        };
        report.checks.extend(checks);
        report.transfers.extend(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh_scan() -> SshScan {
        SshScan {
            ident: crate::ssh::wire::Ident {
                line: "SSH-2.0-X".into(),
                proto: "2.0".into(),
                software: "X".into(),
                comments: None,
                pre_lines: Vec::new(),
            },
            kexinit: Err("closed".into()),
        }
    }

    #[test]
    fn closed_ports() {
        let all_refused = || {
            vec![
                (Method::Greeting, Outcome::Connect(ConnectFailure::Refused)),
                (Method::TlsHello, Outcome::Connect(ConnectFailure::Refused)),
                (Method::SshHello, Outcome::Connect(ConnectFailure::Refused)),
            ]
        };
        let mut r = PortReport::new("h", 2121, false);
        merge(&mut r, all_refused());
        assert_eq!(r.checks.len(), 1);
        assert_eq!(r.checks[0].status, Status::Fail);
        assert!(r.checks[0].detail.contains("nothing listens on port 2121"));
        let mut r = PortReport::new("h", 21, true);
        merge(&mut r, all_refused());
        assert_eq!(r.checks[0].status, Status::Warn, "a closed default port is a note");
    }

    #[test]
    fn ssh_port_says_what_a_tls_client_would_meet() {
        let mut r = PortReport::new("h", 22, false);
        merge(
            &mut r,
            vec![
                (Method::Greeting, Outcome::Ssh(ssh_scan())),
                (Method::TlsHello, Outcome::Heard(Heard::Ssh("SSH-2.0-X".into()))),
                (Method::SshHello, Outcome::Ssh(ssh_scan())),
            ],
        );
        assert_eq!(r.protocols, vec!["ssh"]);
        assert_eq!(r.attempts.len(), 1);
        assert!(r.attempts[0].result.contains("this is an SSH/SFTP port, not FTPS"));
    }

    #[test]
    fn silent_port_is_unidentified_and_tls_failure_is_a_tls_port() {
        let mut r = PortReport::new("h", 1234, false);
        merge(
            &mut r,
            vec![
                (Method::Greeting, Outcome::Heard(Heard::Silence)),
                (Method::TlsHello, Outcome::Heard(Heard::Closed)),
                (Method::SshHello, Outcome::Heard(Heard::Silence)),
            ],
        );
        assert!(r.protocols.is_empty());
        assert!(r.checks.iter().any(|c| c.name == "port.identify" && c.status == Status::Fail));
        let mut r = PortReport::new("h", 990, false);
        merge(
            &mut r,
            vec![
                (Method::Greeting, Outcome::Heard(Heard::Silence)),
                (Method::TlsHello, Outcome::TlsFailed("no version in common".into())),
                (Method::SshHello, Outcome::Heard(Heard::TlsAlert("decode_error".into()))),
            ],
        );
        assert_eq!(r.protocols, vec!["tls"]);
        assert!(r.checks.iter().any(|c| c.name == "tls.handshake" && c.status == Status::Fail));
    }
}
