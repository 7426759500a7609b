use bytes::Bytes;

use super::attrs::FileAttrs;
use super::fxp;
use super::wire::{DecodeError, Reader};

/// SSH_FXP_OPEN pflags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags(pub u32);

impl OpenFlags {
    pub const READ: u32 = 0x01;
    pub const WRITE: u32 = 0x02;
    pub const APPEND: u32 = 0x04;
    pub const CREAT: u32 = 0x08;
    pub const TRUNC: u32 = 0x10;
    pub const EXCL: u32 = 0x20;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// One client request. Paths and handles are raw bytes: non-UTF-8 names stay intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Init {
        version: u32,
    },
    Open {
        id: u32,
        path: Vec<u8>,
        flags: OpenFlags,
        attrs: FileAttrs,
    },
    Close {
        id: u32,
        handle: Vec<u8>,
    },
    Read {
        id: u32,
        handle: Vec<u8>,
        offset: u64,
        len: u32,
    },
    Write {
        id: u32,
        handle: Vec<u8>,
        offset: u64,
        data: Bytes,
    },
    Lstat {
        id: u32,
        path: Vec<u8>,
    },
    Fstat {
        id: u32,
        handle: Vec<u8>,
    },
    Setstat {
        id: u32,
        path: Vec<u8>,
        attrs: FileAttrs,
    },
    Fsetstat {
        id: u32,
        handle: Vec<u8>,
        attrs: FileAttrs,
    },
    Opendir {
        id: u32,
        path: Vec<u8>,
    },
    Readdir {
        id: u32,
        handle: Vec<u8>,
    },
    Remove {
        id: u32,
        path: Vec<u8>,
    },
    Mkdir {
        id: u32,
        path: Vec<u8>,
        attrs: FileAttrs,
    },
    Rmdir {
        id: u32,
        path: Vec<u8>,
    },
    Realpath {
        id: u32,
        path: Vec<u8>,
    },
    Stat {
        id: u32,
        path: Vec<u8>,
    },
    Rename {
        id: u32,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Readlink {
        id: u32,
        path: Vec<u8>,
    },
    /// OpenSSH sends (and every client follows it) the target first, then the link path: the reverse
    /// of the draft. We follow OpenSSH.
    Symlink {
        id: u32,
        target: Vec<u8>,
        link: Vec<u8>,
    },
    Extended {
        id: u32,
        request: Extended,
    },
    /// A packet type we do not know: answered with SSH_FX_OP_UNSUPPORTED.
    Unknown {
        id: Option<u32>,
        kind: u8,
    },
}

/// SSH_FXP_EXTENDED requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extended {
    PosixRename { from: Vec<u8>, to: Vec<u8> },
    Statvfs { path: Vec<u8> },
    Fstatvfs { handle: Vec<u8> },
    Hardlink { existing: Vec<u8>, link: Vec<u8> },
    Fsync { handle: Vec<u8> },
    Lsetstat { path: Vec<u8>, attrs: FileAttrs },
    Limits,
    ExpandPath { path: Vec<u8> },
    Unknown { name: Vec<u8> },
}

impl Request {
    /// Decodes one packet body (everything after the 4-byte length). On error, the request id is
    /// returned with it when it could be read, so the session can still answer SSH_FX_BAD_MESSAGE.
    pub fn decode(body: Bytes) -> Result<Request, (Option<u32>, DecodeError)> {
        let mut r = Reader::new(body);
        let kind = r.u8("type").map_err(|e| (None, e))?;
        if kind == fxp::INIT {
            let version = r.u32("version").map_err(|e| (None, e))?;
            // Extension pairs a client may send after the version are ignored.
            return Ok(Request::Init { version });
        }
        let id = r.u32("request id").map_err(|e| (None, e))?;
        Self::decode_body(kind, id, &mut r).map_err(|e| (Some(id), e))
    }

    fn decode_body(kind: u8, id: u32, r: &mut Reader) -> Result<Request, DecodeError> {
        Ok(match kind {
            fxp::OPEN => Request::Open {
                id,
                path: r.string("filename")?,
                flags: OpenFlags(r.u32("pflags")?),
                attrs: FileAttrs::decode(r)?,
            },
            fxp::CLOSE => Request::Close { id, handle: r.string("handle")? },
            fxp::READ => {
                Request::Read { id, handle: r.string("handle")?, offset: r.u64("offset")?, len: r.u32("len")? }
            }
            fxp::WRITE => {
                Request::Write { id, handle: r.string("handle")?, offset: r.u64("offset")?, data: r.bytes("data")? }
            }
            fxp::LSTAT => Request::Lstat { id, path: r.string("path")? },
            fxp::FSTAT => Request::Fstat { id, handle: r.string("handle")? },
            fxp::SETSTAT => Request::Setstat { id, path: r.string("path")?, attrs: FileAttrs::decode(r)? },
            fxp::FSETSTAT => Request::Fsetstat { id, handle: r.string("handle")?, attrs: FileAttrs::decode(r)? },
            fxp::OPENDIR => Request::Opendir { id, path: r.string("path")? },
            fxp::READDIR => Request::Readdir { id, handle: r.string("handle")? },
            fxp::REMOVE => Request::Remove { id, path: r.string("filename")? },
            fxp::MKDIR => Request::Mkdir { id, path: r.string("path")?, attrs: FileAttrs::decode(r)? },
            fxp::RMDIR => Request::Rmdir { id, path: r.string("path")? },
            fxp::REALPATH => Request::Realpath { id, path: r.string("path")? },
            fxp::STAT => Request::Stat { id, path: r.string("path")? },
            fxp::RENAME => Request::Rename { id, from: r.string("oldpath")?, to: r.string("newpath")? },
            fxp::READLINK => Request::Readlink { id, path: r.string("path")? },
            fxp::SYMLINK => Request::Symlink { id, target: r.string("targetpath")?, link: r.string("linkpath")? },
            fxp::EXTENDED => Request::Extended { id, request: Extended::decode(r)? },
            other => Request::Unknown { id: Some(id), kind: other },
        })
    }

    /// The request id, for every request but INIT.
    pub fn id(&self) -> Option<u32> {
        use Request::*;
        match self {
            Init { .. } => None,
            Unknown { id, .. } => *id,
            Open { id, .. }
            | Close { id, .. }
            | Read { id, .. }
            | Write { id, .. }
            | Lstat { id, .. }
            | Fstat { id, .. }
            | Setstat { id, .. }
            | Fsetstat { id, .. }
            | Opendir { id, .. }
            | Readdir { id, .. }
            | Remove { id, .. }
            | Mkdir { id, .. }
            | Rmdir { id, .. }
            | Realpath { id, .. }
            | Stat { id, .. }
            | Rename { id, .. }
            | Readlink { id, .. }
            | Symlink { id, .. }
            | Extended { id, .. } => Some(*id),
        }
    }

    /// The handle this request works on, if any: requests on one handle are run in order.
    pub fn handle(&self) -> Option<&[u8]> {
        use Request::*;
        match self {
            Close { handle, .. }
            | Read { handle, .. }
            | Write { handle, .. }
            | Fstat { handle, .. }
            | Fsetstat { handle, .. }
            | Readdir { handle, .. } => Some(handle),
            Extended { request: self::Extended::Fstatvfs { handle } | self::Extended::Fsync { handle }, .. } => {
                Some(handle)
            }
            _ => None,
        }
    }
}

impl Extended {
    fn decode(r: &mut Reader) -> Result<Extended, DecodeError> {
        let name = r.string("extended request name")?;
        Ok(match name.as_slice() {
            b"posix-rename@openssh.com" => {
                Extended::PosixRename { from: r.string("oldpath")?, to: r.string("newpath")? }
            }
            b"statvfs@openssh.com" => Extended::Statvfs { path: r.string("path")? },
            b"fstatvfs@openssh.com" => Extended::Fstatvfs { handle: r.string("handle")? },
            b"hardlink@openssh.com" => {
                Extended::Hardlink { existing: r.string("oldpath")?, link: r.string("newpath")? }
            }
            b"fsync@openssh.com" => Extended::Fsync { handle: r.string("handle")? },
            b"lsetstat@openssh.com" => Extended::Lsetstat { path: r.string("path")?, attrs: FileAttrs::decode(r)? },
            b"limits@openssh.com" => Extended::Limits,
            b"expand-path@openssh.com" => Extended::ExpandPath { path: r.string("path")? },
            _ => {
                r.rest();
                Extended::Unknown { name }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(parts: &[&[u8]]) -> Bytes {
        Bytes::from(parts.concat())
    }

    #[test]
    fn open_decodes() {
        let body = pkt(&[&[fxp::OPEN], &7u32.to_be_bytes(), b"\0\0\0\x03a/b", &0x1au32.to_be_bytes(), b"\0\0\0\0"]);
        let req = Request::decode(body).expect("decodes");
        assert_eq!(
            req,
            Request::Open { id: 7, path: b"a/b".to_vec(), flags: OpenFlags(0x1a), attrs: FileAttrs::default() }
        );
    }

    #[test]
    fn write_slices_data() {
        let body = pkt(&[&[fxp::WRITE], &1u32.to_be_bytes(), b"\0\0\0\x01h", &5u64.to_be_bytes(), b"\0\0\0\x03xyz"]);
        match Request::decode(body).expect("decodes") {
            Request::Write { id: 1, handle, offset: 5, data } => {
                assert_eq!(handle, b"h");
                assert_eq!(&data[..], b"xyz");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn truncated_keeps_id() {
        let body = pkt(&[&[fxp::READ], &9u32.to_be_bytes(), b"\0\0\0\x01h", b"\0\0"]);
        assert_eq!(Request::decode(body), Err((Some(9), DecodeError::Truncated("offset"))));
        assert_eq!(Request::decode(Bytes::from_static(&[fxp::READ, 0])).map_err(|e| e.0), Err(None));
    }

    #[test]
    fn extensions_and_unknown() {
        let mut parts: Vec<u8> = vec![fxp::EXTENDED];
        parts.extend(3u32.to_be_bytes());
        parts.extend(b"\0\0\0\x18posix-rename@openssh.com\0\0\0\x01a\0\0\0\x01b");
        assert_eq!(
            Request::decode(Bytes::from(parts)),
            Ok(Request::Extended { id: 3, request: Extended::PosixRename { from: b"a".to_vec(), to: b"b".to_vec() } })
        );
        let body = pkt(&[&[fxp::EXTENDED], &4u32.to_be_bytes(), b"\0\0\0\x03foo", b"junk"]);
        assert_eq!(
            Request::decode(body),
            Ok(Request::Extended { id: 4, request: Extended::Unknown { name: b"foo".to_vec() } })
        );
        let body = pkt(&[&[99], &5u32.to_be_bytes()]);
        assert_eq!(Request::decode(body), Ok(Request::Unknown { id: Some(5), kind: 99 }));
    }

    #[test]
    fn symlink_order_is_openssh() {
        let body = pkt(&[&[fxp::SYMLINK], &2u32.to_be_bytes(), b"\0\0\0\x06target\0\0\0\x04link"]);
        assert_eq!(
            Request::decode(body),
            Ok(Request::Symlink { id: 2, target: b"target".to_vec(), link: b"link".to_vec() })
        );
    }
}
