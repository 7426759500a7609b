//! What a port's first bytes (or its silence, or a failed connect) mean, in plain words. Pure
//! functions: the network code records what happened, this module says what it means.

use std::io;

use serde::Serialize;

/// How an attempt opened the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Connect and wait, sending nothing: SSH and FTP servers speak first.
    Greeting,
    /// Send a TLS ClientHello at once: implicit FTPS (and HTTPS) wait for one.
    TlsHello,
    /// Send an SSH version line at once: SSH servers answer with theirs.
    SshHello,
}

impl Method {
    pub fn label(self) -> &'static str {
        match self {
            Method::Greeting => "waiting for a greeting",
            Method::TlsHello => "sending a TLS ClientHello",
            Method::SshHello => "sending an SSH version line",
        }
    }
}

/// What came back, as far as the first bytes tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// An SSH version line (the line).
    Ssh(String),
    /// An FTP reply (its first line).
    Ftp(String),
    /// A TLS alert record (its description, when known).
    TlsAlert(String),
    /// Another TLS record (a server answering TLS).
    Tls,
    /// An HTTP response (its first line).
    Http(String),
    /// Something else (shown printable).
    Other(String),
    /// Nothing within the wait.
    Silence,
    /// The server closed without a byte.
    Closed,
    /// The server reset the connection.
    Reset,
    /// The attempt broke off for a reason already in words (an SSH line too long, a read error).
    Failed(String),
}

/// The longest excerpt of unknown bytes shown to the user.
const SHOWN_BYTES: usize = 60;

/// The first line of `bytes`, printable, at most [`SHOWN_BYTES`] characters.
pub fn printable_line(bytes: &[u8]) -> String {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(bytes);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut s: String =
        line.iter().take(SHOWN_BYTES).map(|&b| if (32..127).contains(&b) { b as char } else { '.' }).collect();
    if line.len() > SHOWN_BYTES {
        s.push('…');
    }
    s
}

/// Names the TLS alert descriptions a server sends when it will not talk (RFC 8446 §6).
pub fn tls_alert_name(code: u8) -> String {
    match code {
        0 => "close_notify".into(),
        10 => "unexpected_message".into(),
        20 => "bad_record_mac".into(),
        22 => "record_overflow".into(),
        40 => "handshake_failure".into(),
        42 => "bad_certificate".into(),
        47 => "illegal_parameter".into(),
        50 => "decode_error".into(),
        51 => "decrypt_error".into(),
        70 => "protocol_version".into(),
        71 => "insufficient_security".into(),
        80 => "internal_error".into(),
        86 => "inappropriate_fallback".into(),
        109 => "missing_extension".into(),
        112 => "unrecognized_name".into(),
        116 => "certificate_required".into(),
        120 => "no_application_protocol".into(),
        other => format!("alert {other}"),
    }
}

/// Classifies the first bytes a server sent (not empty).
pub fn classify_bytes(bytes: &[u8]) -> Heard {
    // TLS record: content type, then version 3.x (SSL 3.0 to TLS 1.3 all use 0x03 here).
    if bytes.len() >= 2 && (0x14..=0x17).contains(&bytes[0]) && bytes[1] == 0x03 {
        if bytes[0] == 0x15 {
            // alert: type, version (2), length (2), level, description
            return Heard::TlsAlert(bytes.get(6).map(|&d| tls_alert_name(d)).unwrap_or_else(|| "alert".into()));
        }
        return Heard::Tls;
    }
    let line = printable_line(bytes);
    // An SSH server may print banner lines before its version line (RFC 4253 §4.2).
    if let Some(ssh) = bytes.split(|&b| b == b'\n').find(|l| l.starts_with(b"SSH-")) {
        return Heard::Ssh(printable_line(ssh));
    }
    let lower: Vec<u8> = bytes.iter().take(16).map(u8::to_ascii_lowercase).collect();
    // An HTTP/0.9-style answer (what a web server sends to a line it cannot parse) has no status line.
    if bytes.starts_with(b"HTTP/") || lower.starts_with(b"<!doctype") || lower.starts_with(b"<html") {
        return Heard::Http(line);
    }
    let code = bytes.get(..3).is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        && matches!(bytes.get(3), None | Some(b' ') | Some(b'-') | Some(b'\r') | Some(b'\n'));
    if code {
        return Heard::Ftp(line);
    }
    Heard::Other(line)
}

/// What an attempt's answer means, for the "other ways in" lines of a port that speaks something.
pub fn explain(method: Method, heard: &Heard) -> String {
    match (method, heard) {
        (Method::TlsHello, Heard::Ssh(line)) => format!(
            "answered with an SSH version line (`{line}`): this is an SSH/SFTP port, not FTPS (use an SFTP client)"
        ),
        (Method::TlsHello, Heard::Ftp(line)) => format!(
            "answered with a plain FTP greeting (`{line}`): this is an FTP port (explicit FTPS: TLS after AUTH TLS), not implicit FTPS"
        ),
        (Method::SshHello, Heard::Ftp(line)) => {
            format!("answered with an FTP greeting (`{line}`): this is an FTP port, not SFTP")
        }
        (Method::SshHello, Heard::TlsAlert(alert)) => format!(
            "answered with a TLS alert ({alert}): this port expects TLS from the first byte (implicit FTPS or HTTPS), not SSH"
        ),
        (Method::SshHello, Heard::Tls) => {
            "answered with TLS: this port expects TLS from the first byte, not SSH".into()
        }
        (Method::Greeting, Heard::Silence) => {
            "said nothing until spoken to (TLS servers wait for the client's ClientHello)".into()
        }
        (Method::Greeting, Heard::Tls | Heard::TlsAlert(_)) => {
            "sent TLS bytes unasked (a broken server?)".into()
        }
        (_, Heard::Ssh(line)) => format!("answered with an SSH version line (`{line}`)"),
        (_, Heard::Ftp(line)) => format!("answered with an FTP reply (`{line}`)"),
        (_, Heard::TlsAlert(alert)) => format!("answered with a TLS alert ({alert})"),
        (_, Heard::Tls) => "answered with TLS".into(),
        (_, Heard::Http(line)) => format!("answered with HTTP (`{line}`): this is a web server"),
        (_, Heard::Other(line)) => format!("answered with `{line}`, which is neither SSH, FTP nor TLS"),
        (_, Heard::Silence) => "no answer".into(),
        (_, Heard::Closed) => "the server closed the connection without a word".into(),
        (_, Heard::Reset) => "the server reset the connection".into(),
        (_, Heard::Failed(why)) => why.clone(),
    }
}

/// Why a TCP connect failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    Refused,
    TimedOut,
    Unreachable(String),
    Other(String),
}

pub fn classify_connect(e: &io::Error) -> ConnectFailure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
        io::ErrorKind::TimedOut => ConnectFailure::TimedOut,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            ConnectFailure::Unreachable(e.to_string())
        }
        _ => ConnectFailure::Other(e.to_string()),
    }
}

/// The detail and hint for a port that could not be connected to.
pub fn explain_connect(f: &ConnectFailure, port: u16) -> (String, String) {
    match f {
        ConnectFailure::Refused => (
            format!("connection refused: nothing listens on port {port}"),
            "is the server running? is it the right port? (or a firewall rejects the connection)".into(),
        ),
        ConnectFailure::TimedOut => (
            format!("no answer to the connection attempt on port {port} (timed out)"),
            "a firewall may drop the packets, or the host is down or behind another address".into(),
        ),
        ConnectFailure::Unreachable(e) => (
            format!("the host cannot be reached: {e}"),
            "wrong address, or no route to it from here (VPN? network down?)".into(),
        ),
        ConnectFailure::Other(e) => (format!("cannot connect: {e}"), "check the address".into()),
    }
}

/// For a port where no attempt identified a protocol: one detail and hint from all answers.
pub fn explain_unidentified(answers: &[(Method, Heard)]) -> (String, String) {
    let all = |p: fn(&Heard) -> bool| !answers.is_empty() && answers.iter().all(|(_, h)| p(h));
    if all(|h| matches!(h, Heard::Silence | Heard::Closed | Heard::Reset)) {
        return (
            "the port accepts connections but speaks neither SSH, FTP nor TLS: it said nothing, and a TLS \
             ClientHello and an SSH version line got no answer"
                .into(),
            "is this the server's port? a proxy or load balancer without a working backend does this too".into(),
        );
    }
    if let Some((_, Heard::Http(line))) = answers.iter().find(|(_, h)| matches!(h, Heard::Http(_))) {
        return (
            format!("this is a web server (`{line}`), not SSH, FTP or FTPS"),
            "use the server's SFTP or FTP port".into(),
        );
    }
    let parts: Vec<String> = answers.iter().map(|(m, h)| format!("{}: {}", m.label(), explain(*m, h))).collect();
    (format!("speaks neither SSH, FTP nor TLS ({})", parts.join("; ")), "is this the server's port?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes() {
        assert_eq!(classify_bytes(b"SSH-2.0-OpenSSH_9.2\r\n"), Heard::Ssh("SSH-2.0-OpenSSH_9.2".into()));
        assert_eq!(classify_bytes(b"banner\r\nSSH-2.0-x\r\n"), Heard::Ssh("SSH-2.0-x".into()));
        assert_eq!(classify_bytes(b"220 (vsFTPd 3.0.3)\r\n"), Heard::Ftp("220 (vsFTPd 3.0.3)".into()));
        assert_eq!(classify_bytes(b"220-multi\r\n"), Heard::Ftp("220-multi".into()));
        assert_eq!(classify_bytes(b"\x15\x03\x03\x00\x02\x02\x28"), Heard::TlsAlert("handshake_failure".into()));
        assert_eq!(classify_bytes(b"\x15\x03\x01\x00\x02\x02\x46"), Heard::TlsAlert("protocol_version".into()));
        assert_eq!(classify_bytes(b"\x16\x03\x03\x00\x7a\x02"), Heard::Tls);
        assert_eq!(classify_bytes(b"HTTP/1.1 400 Bad Request\r\n"), Heard::Http("HTTP/1.1 400 Bad Request".into()));
        assert_eq!(classify_bytes(b"\x00\x01hello"), Heard::Other("..hello".into()));
        assert_eq!(classify_bytes(b"<!DOCTYPE HTML>\n<html>"), Heard::Http("<!DOCTYPE HTML>".into()));
        let long = vec![b'x'; 100];
        assert_eq!(printable_line(&long).chars().count(), SHOWN_BYTES + 1);
    }

    #[test]
    fn mismatches_in_plain_words() {
        let ssh = Heard::Ssh("SSH-2.0-Ferry".into());
        assert!(explain(Method::TlsHello, &ssh).contains("this is an SSH/SFTP port, not FTPS"));
        let ftp = Heard::Ftp("220 hi".into());
        assert!(explain(Method::SshHello, &ftp).contains("this is an FTP port, not SFTP"));
        assert!(explain(Method::TlsHello, &ftp).contains("not implicit FTPS"));
        assert!(explain(Method::SshHello, &Heard::TlsAlert("decode_error".into())).contains("expects TLS"));
        assert!(explain(Method::Greeting, &Heard::Silence).contains("said nothing"));
    }

    #[test]
    fn connect_failures() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify_connect(&refused), ConnectFailure::Refused);
        let (detail, hint) = explain_connect(&ConnectFailure::Refused, 2121);
        assert!(detail.contains("nothing listens on port 2121"), "{detail}");
        assert!(hint.contains("is the server running"));
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(classify_connect(&timed_out), ConnectFailure::TimedOut);
        assert!(explain_connect(&ConnectFailure::TimedOut, 21).1.contains("firewall"));
        let unreachable = io::Error::from(io::ErrorKind::HostUnreachable);
        assert!(matches!(classify_connect(&unreachable), ConnectFailure::Unreachable(_)));
    }

    #[test]
    fn unidentified_ports() {
        let silent =
            [(Method::Greeting, Heard::Silence), (Method::TlsHello, Heard::Closed), (Method::SshHello, Heard::Silence)];
        assert!(explain_unidentified(&silent).0.contains("speaks neither SSH, FTP nor TLS"));
        let web = [(Method::Greeting, Heard::Silence), (Method::SshHello, Heard::Http("HTTP/1.1 400".into()))];
        assert!(explain_unidentified(&web).0.contains("web server"));
        let odd = [(Method::Greeting, Heard::Other("+OK POP3".into()))];
        assert!(explain_unidentified(&odd).0.contains("+OK POP3"));
    }
}
