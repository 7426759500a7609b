//! Telling protocols apart from a client's first bytes, so one port can serve SFTP, explicit and implicit
//! FTPS. Pure functions over bytes: the listener feeds them what it has read so far.

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// `SSH-`: an SSH identification line (RFC 4253 section 4.2).
    Ssh,
    /// A TLS handshake record (content type 22, version 3.x): an implicit FTPS client's ClientHello.
    TlsClientHello,
    /// A plain-text line such as `USER`, `AUTH TLS` or `HELP`: an FTP client that did not wait for the
    /// greeting.
    FtpCommand,
    /// An HTTP request: someone pointed a browser or a proxy at the port.
    Http,
    /// Something else entirely.
    Unknown,
    /// Too few bytes to tell yet.
    NeedMore,
}

const HTTP_METHODS: &[&[u8]] = &[b"GET ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ", b"CONNECT ", b"DELETE "];

fn prefix_match(data: &[u8], pattern: &[u8]) -> Option<bool> {
    let n = data.len().min(pattern.len());
    if data[..n] != pattern[..n] {
        Some(false)
    } else if n < pattern.len() {
        None
    } else {
        Some(true)
    }
}

/// Classifies the bytes a client sent first.
pub fn classify(data: &[u8]) -> Opening {
    if data.is_empty() {
        return Opening::NeedMore;
    }
    let mut undecided = false;
    match prefix_match(data, b"SSH-") {
        Some(true) => return Opening::Ssh,
        None => undecided = true,
        Some(false) => {}
    }
    if data[0] == 0x16 {
        return match data.get(1) {
            None => Opening::NeedMore,
            Some(3) => Opening::TlsClientHello,
            Some(_) => Opening::Unknown,
        };
    }
    for m in HTTP_METHODS {
        match prefix_match(data, m) {
            Some(true) => return Opening::Http,
            None => undecided = true,
            Some(false) => {}
        }
    }
    if undecided {
        return Opening::NeedMore;
    }
    // An FTP command: letters up to a space or the end of the line.
    let word_len = data.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    match data.get(word_len) {
        _ if word_len == 0 || word_len > 4 => Opening::Unknown,
        None => Opening::NeedMore,
        Some(b' ' | b'\r' | b'\n') => Opening::FtpCommand,
        Some(_) => Opening::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_lines() {
        assert_eq!(classify(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n"), Opening::Ssh);
        assert_eq!(classify(b"SSH-"), Opening::Ssh);
        assert_eq!(classify(b"SS"), Opening::NeedMore);
    }

    #[test]
    fn tls_client_hello() {
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), Opening::TlsClientHello);
        assert_eq!(classify(&[0x16]), Opening::NeedMore);
        assert_eq!(classify(&[0x16, 0x07]), Opening::Unknown);
    }

    #[test]
    fn ftp_commands_and_http() {
        assert_eq!(classify(b"AUTH TLS\r\n"), Opening::FtpCommand);
        assert_eq!(classify(b"USER alice\r\n"), Opening::FtpCommand);
        assert_eq!(classify(b"FEAT\r\n"), Opening::FtpCommand);
        assert_eq!(classify(b"USE"), Opening::NeedMore);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Opening::Http);
        assert_eq!(classify(b"GE"), Opening::NeedMore);
        assert_eq!(classify(b"\x00\x01garbage"), Opening::Unknown);
        assert_eq!(classify(b"HELLOWORLD"), Opening::Unknown);
    }
}
