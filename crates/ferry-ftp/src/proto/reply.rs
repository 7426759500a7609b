//! FTP replies (RFC 959 section 4.2): a three-digit code and one or more lines of text.
//!
//! A single-line reply is `NNN text\r\n`. A multi-line reply is `NNN-first\r\n`, any lines, then
//! `NNN last\r\n`. Intermediate lines that could be mistaken for the end of the reply (they start with a
//! digit) are indented by one space, and no line may carry a CR or LF of its own: text that holds a file
//! name must never be able to end a reply early or forge another.

use ferry_vfs::FsError;

/// One reply. The text is bytes because it can hold file names, which need not be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// At least one line; the first and last carry the code.
    lines: Vec<Vec<u8>>,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<Vec<u8>>) -> Reply {
        Reply { code, lines: vec![text.into()] }
    }

    /// A multi-line reply: `first` goes on the `NNN-` line, `body` in between, `last` on the `NNN ` line.
    pub fn multi(code: u16, first: impl Into<Vec<u8>>, body: Vec<Vec<u8>>, last: impl Into<Vec<u8>>) -> Reply {
        let mut lines = Vec::with_capacity(body.len() + 2);
        lines.push(first.into());
        lines.extend(body);
        lines.push(last.into());
        Reply { code, lines }
    }

    /// The text of the first line (for tests and logs).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines[0]).into_owned()
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let code = self.code.min(999);
        let n = self.lines.len();
        for (i, line) in self.lines.iter().enumerate() {
            let first = i == 0;
            let last = i + 1 == n;
            if first || last {
                out.extend_from_slice(format!("{code:03}").as_bytes());
                out.push(if last { b' ' } else { b'-' });
            } else if line.first().is_some_and(u8::is_ascii_digit) {
                out.push(b' ');
            }
            out.extend(line.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
            out.extend_from_slice(b"\r\n");
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// The one place where filesystem errors become FTP replies (as `errno_to_portable` in OpenSSH's
/// sftp-server.c does for SFTP). The text is [`FsError::user_message`], which never names server paths.
pub fn fs_error_reply(err: &FsError) -> Reply {
    let code = match err {
        FsError::NotFound
        | FsError::PermissionDenied
        | FsError::InvalidPath
        | FsError::AlreadyExists
        | FsError::IsADirectory
        | FsError::NotADirectory
        | FsError::DirectoryNotEmpty
        | FsError::Unsupported(_) => 550,
        // 452: insufficient storage space (a full disk or quota); the client may try again later.
        FsError::NoSpace => 452,
        // 552: "exceeded storage allocation", the user's own limit, not a full disk.
        FsError::QuotaExceeded => 552,
        // Transient local errors: 451, "local error in processing".
        _ => 451,
    };
    let text = match err {
        FsError::InvalidPath => "Permission denied".to_string(),
        other => other.user_message(),
    };
    Reply::new(code, text)
}

/// A path in double quotes for 257 replies (RFC 959 appendix II): quotes inside are doubled, and an
/// embedded LF is sent as NUL.
pub fn quote_path(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 2);
    out.push(b'"');
    for &b in path {
        match b {
            b'"' => out.extend_from_slice(b"\"\""),
            b'\n' => out.push(0),
            b'\r' => out.push(b' '),
            _ => out.push(b),
        }
    }
    out.push(b'"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        assert_eq!(Reply::new(220, "Ferry ready").to_bytes(), b"220 Ferry ready\r\n");
        assert_eq!(Reply::new(7, "x").to_bytes(), b"007 x\r\n");
    }

    #[test]
    fn multi_line_framing() {
        let r = Reply::multi(211, "Features:", vec![b" AUTH TLS".to_vec(), b"123 looks like a code".to_vec()], "End");
        assert_eq!(r.to_bytes(), b"211-Features:\r\n AUTH TLS\r\n 123 looks like a code\r\n211 End\r\n".to_vec());
    }

    #[test]
    fn no_line_breaks_inside_text() {
        let r = Reply::new(550, b"bad\r\n230 fake".to_vec());
        assert_eq!(r.to_bytes(), b"550 bad  230 fake\r\n");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_path(b"/a \"b\""), b"\"/a \"\"b\"\"\"");
        assert_eq!(quote_path(b"/x\ny"), b"\"/x\0y\"");
        // A CR would end the reply line early: it goes out as a space.
        assert_eq!(quote_path(b"/x\ry"), b"\"/x y\"");
    }

    #[test]
    fn fs_errors() {
        assert_eq!(fs_error_reply(&FsError::NotFound).code, 550);
        assert_eq!(fs_error_reply(&FsError::NotFound).text(), "No such file or directory");
        assert_eq!(fs_error_reply(&FsError::InvalidPath).text(), "Permission denied");
        assert_eq!(fs_error_reply(&FsError::PermissionDenied).code, 550);
        assert_eq!(fs_error_reply(&FsError::NoSpace).code, 452);
        assert_eq!(fs_error_reply(&FsError::QuotaExceeded).code, 552);
        assert_eq!(fs_error_reply(&FsError::IsADirectory).code, 550);
        assert_eq!(fs_error_reply(&FsError::Io(std::io::Error::other("x"))).code, 451);
    }
}
