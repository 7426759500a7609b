//! The SFTP v3 wire format (draft-ietf-secsh-filexfer-02), as far as the login check needs it:
//! INIT, REALPATH, OPENDIR/READDIR, OPEN/WRITE/READ/CLOSE, REMOVE. Pure functions over bytes;
//! [`super::sftp_client::SftpClient`] drives them over an SSH channel.

pub(crate) const FXP_INIT: u8 = 1;
pub(crate) const FXP_VERSION: u8 = 2;
pub(crate) const FXP_OPEN: u8 = 3;
pub(crate) const FXP_CLOSE: u8 = 4;
pub(crate) const FXP_READ: u8 = 5;
pub(crate) const FXP_WRITE: u8 = 6;
pub(crate) const FXP_OPENDIR: u8 = 11;
pub(crate) const FXP_READDIR: u8 = 12;
pub(crate) const FXP_REMOVE: u8 = 13;
pub(crate) const FXP_REALPATH: u8 = 16;
pub(crate) const FXP_STATUS: u8 = 101;
pub(crate) const FXP_HANDLE: u8 = 102;
pub(crate) const FXP_DATA: u8 = 103;
pub(crate) const FXP_NAME: u8 = 104;
pub(crate) const FXP_ATTRS: u8 = 105;

pub const FXF_READ: u32 = 0x01;
pub const FXF_WRITE: u32 = 0x02;
pub const FXF_CREAT: u32 = 0x08;
pub const FXF_TRUNC: u32 = 0x10;
pub const FXF_EXCL: u32 = 0x20;

pub(crate) const FX_OK: u32 = 0;
pub(crate) const FX_EOF: u32 = 1;

pub(crate) const ATTR_SIZE: u32 = 0x01;
pub(crate) const ATTR_UIDGID: u32 = 0x02;
pub(crate) const ATTR_PERMISSIONS: u32 = 0x04;
pub(crate) const ATTR_ACMODTIME: u32 = 0x08;
pub(crate) const ATTR_EXTENDED: u32 = 0x8000_0000;

/// The largest packet accepted from the server (OpenSSH's limit is 256 KiB).
pub const MAX_PACKET: usize = 256 * 1024 + 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Version(u32),
    Status { id: u32, code: u32, message: String },
    Handle { id: u32, handle: Vec<u8> },
    Data { id: u32, data: Vec<u8> },
    Name { id: u32, names: Vec<String> },
    Attrs { id: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SftpError {
    /// The server answered a request with an error status.
    Status { code: u32, message: String },
    /// The server sent something that is not what SFTP v3 allows here.
    Protocol(String),
    /// The channel broke or timed out.
    Io(String),
}

impl std::fmt::Display for SftpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SftpError::Status { code, message } => write!(f, "{} ({message})", status_name(*code)),
            SftpError::Protocol(e) => write!(f, "protocol error: {e}"),
            SftpError::Io(e) => f.write_str(e),
        }
    }
}

pub fn status_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "operation unsupported",
        _ => "unknown status",
    }
}

// ----------------------------------------------------------------------------------------------
// encoding

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// `u32 length, u8 type, [u32 id], body`.
pub(crate) fn frame(typ: u8, id: Option<u32>, body: &[u8]) -> Vec<u8> {
    let len = 1 + if id.is_some() { 4 } else { 0 } + body.len();
    let mut out = Vec::with_capacity(4 + len);
    put_u32(&mut out, len as u32);
    out.push(typ);
    if let Some(id) = id {
        put_u32(&mut out, id);
    }
    out.extend_from_slice(body);
    out
}

pub fn init() -> Vec<u8> {
    frame(FXP_INIT, None, &3u32.to_be_bytes())
}

fn path_request(typ: u8, id: u32, path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    put_str(&mut b, path.as_bytes());
    frame(typ, Some(id), &b)
}

pub fn realpath(id: u32, path: &str) -> Vec<u8> {
    path_request(FXP_REALPATH, id, path)
}

pub fn opendir(id: u32, path: &str) -> Vec<u8> {
    path_request(FXP_OPENDIR, id, path)
}

pub fn remove(id: u32, path: &str) -> Vec<u8> {
    path_request(FXP_REMOVE, id, path)
}

fn handle_request(typ: u8, id: u32, handle: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    put_str(&mut b, handle);
    frame(typ, Some(id), &b)
}

pub fn readdir(id: u32, handle: &[u8]) -> Vec<u8> {
    handle_request(FXP_READDIR, id, handle)
}

pub fn close(id: u32, handle: &[u8]) -> Vec<u8> {
    handle_request(FXP_CLOSE, id, handle)
}

pub fn open(id: u32, path: &str, pflags: u32) -> Vec<u8> {
    let mut b = Vec::new();
    put_str(&mut b, path.as_bytes());
    put_u32(&mut b, pflags);
    // attrs: permissions 0600, so the probe's file is not readable by others meanwhile
    put_u32(&mut b, ATTR_PERMISSIONS);
    put_u32(&mut b, 0o600);
    frame(FXP_OPEN, Some(id), &b)
}

pub fn read(id: u32, handle: &[u8], offset: u64, len: u32) -> Vec<u8> {
    let mut b = Vec::new();
    put_str(&mut b, handle);
    b.extend_from_slice(&offset.to_be_bytes());
    put_u32(&mut b, len);
    frame(FXP_READ, Some(id), &b)
}

pub fn write(id: u32, handle: &[u8], offset: u64, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(data.len() + handle.len() + 16);
    put_str(&mut b, handle);
    b.extend_from_slice(&offset.to_be_bytes());
    put_str(&mut b, data);
    frame(FXP_WRITE, Some(id), &b)
}

// ----------------------------------------------------------------------------------------------
// decoding

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], SftpError> {
        if self.0.len() < n {
            return Err(SftpError::Protocol("packet ends inside a field".into()));
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, SftpError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], SftpError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub(crate) fn string(&mut self) -> Result<String, SftpError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    /// Skips an ATTRS structure (its size depends on its flags).
    pub(crate) fn skip_attrs(&mut self) -> Result<(), SftpError> {
        let flags = self.u32()?;
        if flags & ATTR_SIZE != 0 {
            self.take(8)?;
        }
        if flags & ATTR_UIDGID != 0 {
            self.take(8)?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            self.take(4)?;
        }
        if flags & ATTR_ACMODTIME != 0 {
            self.take(8)?;
        }
        if flags & ATTR_EXTENDED != 0 {
            let n = self.u32()?;
            for _ in 0..n {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(())
    }
}

/// Reads one response from the start of `buf`: `Ok(None)` when more bytes are needed, else the
/// response and the bytes it used.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, SftpError> {
    let Some(len) = buf.get(..4) else { return Ok(None) };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len == 0 || len > MAX_PACKET {
        return Err(SftpError::Protocol(format!("packet length {len} out of range")));
    }
    let Some(body) = buf.get(4..4 + len) else { return Ok(None) };
    let mut r = Reader(&body[1..]);
    let resp = match body[0] {
        FXP_VERSION => Response::Version(r.u32()?),
        FXP_STATUS => {
            let id = r.u32()?;
            let code = r.u32()?;
            // Version 3 servers should send message and language, but some old ones omit them.
            let message = if r.0.is_empty() { String::new() } else { r.string()? };
            Response::Status { id, code, message }
        }
        FXP_HANDLE => {
            let id = r.u32()?;
            Response::Handle { id, handle: r.bytes()?.to_vec() }
        }
        FXP_DATA => {
            let id = r.u32()?;
            Response::Data { id, data: r.bytes()?.to_vec() }
        }
        FXP_NAME => {
            let id = r.u32()?;
            let count = r.u32()?;
            let mut names = Vec::new();
            for _ in 0..count {
                names.push(r.string()?);
                r.bytes()?; // longname
                r.skip_attrs()?;
            }
            Response::Name { id, names }
        }
        FXP_ATTRS => Response::Attrs { id: r.u32()? },
        other => return Err(SftpError::Protocol(format!("unexpected packet type {other}"))),
    };
    Ok(Some((resp, 4 + len)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn response(typ: u8, body: &[u8]) -> Vec<u8> {
        frame(typ, None, body)
    }

    #[test]
    fn encodes_requests() {
        assert_eq!(init(), vec![0, 0, 0, 5, 1, 0, 0, 0, 3]);
        assert_eq!(realpath(7, "."), vec![0, 0, 0, 10, 16, 0, 0, 0, 7, 0, 0, 0, 1, b'.']);
        let w = write(1, b"h", 2, b"xy");
        assert_eq!(
            w,
            vec![0, 0, 0, 24, 6, 0, 0, 0, 1, 0, 0, 0, 1, b'h', 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, b'x', b'y']
        );
        let r = read(1, b"h", 0, 512);
        assert_eq!(&r[..5], &[0, 0, 0, 22, 5]);
    }

    #[test]
    fn decodes_responses() {
        let v = response(FXP_VERSION, &3u32.to_be_bytes());
        assert_eq!(parse_response(&v), Ok(Some((Response::Version(3), 9))));
        let mut body = Vec::new();
        put_u32(&mut body, 9);
        put_u32(&mut body, 2);
        put_str(&mut body, b"No such file");
        put_str(&mut body, b"en");
        let s = response(FXP_STATUS, &body);
        assert_eq!(
            parse_response(&s).expect("parse").map(|r| r.0),
            Some(Response::Status { id: 9, code: 2, message: "No such file".into() })
        );
        // NAME with attrs of every kind
        let mut body = Vec::new();
        put_u32(&mut body, 4);
        put_u32(&mut body, 2);
        for name in ["a", "b"] {
            put_str(&mut body, name.as_bytes());
            put_str(&mut body, b"-rw-r--r-- 1 u g 0 Jan 1 00:00 x");
            put_u32(&mut body, ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED);
            body.extend_from_slice(&[0; 8 + 8 + 4 + 8]);
            put_u32(&mut body, 1);
            put_str(&mut body, b"k");
            put_str(&mut body, b"v");
        }
        let n = response(FXP_NAME, &body);
        assert_eq!(
            parse_response(&n).expect("parse").map(|r| r.0),
            Some(Response::Name { id: 4, names: vec!["a".into(), "b".into()] })
        );
        // partial packets need more bytes; a cut field inside a whole packet is an error
        assert_eq!(parse_response(&n[..n.len() - 1]), Ok(None));
        assert_eq!(parse_response(&n[..3]), Ok(None));
        let mut cut = n.clone();
        cut[3] -= 3;
        cut.truncate(cut.len() - 3);
        assert!(matches!(parse_response(&cut), Err(SftpError::Protocol(_))));
        assert!(matches!(parse_response(&[0xff, 0, 0, 0, 1]), Err(SftpError::Protocol(_))));
        assert!(matches!(parse_response(&response(99, &[])), Err(SftpError::Protocol(_))));
    }
}
