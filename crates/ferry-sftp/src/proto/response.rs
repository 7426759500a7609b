use bytes::{BufMut, Bytes, BytesMut};

use super::attrs::FileAttrs;
use super::wire::put_string;
use super::{fxp, StatusCode, EXTENSIONS, PROTOCOL_VERSION};

/// One reply to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Version,
    Status {
        id: u32,
        code: StatusCode,
        message: String,
    },
    Handle {
        id: u32,
        handle: Vec<u8>,
    },
    Data {
        id: u32,
        data: Bytes,
    },
    /// (filename, longname, attrs) triples.
    Name {
        id: u32,
        entries: Vec<(Vec<u8>, Vec<u8>, FileAttrs)>,
    },
    Attrs {
        id: u32,
        attrs: FileAttrs,
    },
    ExtendedReply {
        id: u32,
        data: Bytes,
    },
}

/// statvfs@openssh.com reply fields, in wire order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatvfsReply {
    pub bsize: u64,
    pub frsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub favail: u64,
    pub fsid: u64,
    pub flag: u64,
    pub namemax: u64,
}

impl StatvfsReply {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(88);
        for v in [
            self.bsize,
            self.frsize,
            self.blocks,
            self.bfree,
            self.bavail,
            self.files,
            self.ffree,
            self.favail,
            self.fsid,
            self.flag,
            self.namemax,
        ] {
            out.put_u64(v);
        }
        out.freeze()
    }
}

impl Response {
    pub fn status(id: u32, code: StatusCode, message: impl Into<String>) -> Response {
        Response::Status { id, code, message: message.into() }
    }

    pub fn ok(id: u32) -> Response {
        Response::status(id, StatusCode::Ok, "Success")
    }

    /// limits@openssh.com: max packet, max read, max write, max open handles.
    pub fn limits(id: u32, packet: u64, read: u64, write: u64, handles: u64) -> Response {
        let mut out = BytesMut::with_capacity(32);
        for v in [packet, read, write, handles] {
            out.put_u64(v);
        }
        Response::ExtendedReply { id, data: out.freeze() }
    }

    /// The size of the encoded reply, to account for memory before it is built.
    pub fn encoded_len_hint(&self) -> usize {
        match self {
            Response::Data { data, .. } => 13 + data.len(),
            Response::Name { entries, .. } => 9 + entries.iter().map(|(f, l, _)| f.len() + l.len() + 40).sum::<usize>(),
            _ => 64,
        }
    }

    /// Appends the whole packet, length prefix included, to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0); // length, patched below
        match self {
            Response::Version => {
                out.put_u8(fxp::VERSION);
                out.put_u32(PROTOCOL_VERSION);
                for (name, version) in EXTENSIONS {
                    put_string(out, name.as_bytes());
                    put_string(out, version.as_bytes());
                }
            }
            Response::Status { id, code, message } => {
                out.put_u8(fxp::STATUS);
                out.put_u32(*id);
                out.put_u32(*code as u32);
                put_string(out, message.as_bytes());
                put_string(out, b"en");
            }
            Response::Handle { id, handle } => {
                out.put_u8(fxp::HANDLE);
                out.put_u32(*id);
                put_string(out, handle);
            }
            Response::Data { id, data } => {
                out.put_u8(fxp::DATA);
                out.put_u32(*id);
                put_string(out, data);
            }
            Response::Name { id, entries } => {
                out.put_u8(fxp::NAME);
                out.put_u32(*id);
                out.put_u32(entries.len() as u32);
                for (name, long, attrs) in entries {
                    put_string(out, name);
                    put_string(out, long);
                    attrs.encode(out);
                }
            }
            Response::Attrs { id, attrs } => {
                out.put_u8(fxp::ATTRS);
                out.put_u32(*id);
                attrs.encode(out);
            }
            Response::ExtendedReply { id, data } => {
                out.put_u8(fxp::EXTENDED_REPLY);
                out.put_u32(*id);
                out.put_slice(data);
            }
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bytes() {
        let b = Response::status(5, StatusCode::NoSuchFile, "No such file").encode();
        let mut want = Vec::new();
        want.extend(31u32.to_be_bytes());
        want.push(fxp::STATUS);
        want.extend(5u32.to_be_bytes());
        want.extend(2u32.to_be_bytes());
        want.extend(b"\0\0\0\x0cNo such file\0\0\0\x02en");
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn data_and_version_lengths_are_consistent() {
        for r in [
            Response::Data { id: 1, data: Bytes::from_static(b"hello") },
            Response::Version,
            Response::Name { id: 2, entries: vec![(b"a".to_vec(), b"-rw a".to_vec(), FileAttrs::default())] },
            Response::limits(3, 1, 2, 3, 4),
        ] {
            let b = r.encode();
            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            assert_eq!(len + 4, b.len(), "{r:?}");
        }
    }
}
