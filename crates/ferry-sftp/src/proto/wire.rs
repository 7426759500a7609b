//! Primitive SSH wire types: big-endian integers and length-prefixed strings.

use bytes::{BufMut, Bytes, BytesMut};

/// A packet did not decode. The session answers SSH_FX_BAD_MESSAGE when it can still tell the request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The packet ended before a field it must hold.
    Truncated(&'static str),
    /// A string's announced length runs past the end of the packet.
    BadLength(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated(field) => write!(f, "packet ends before its {field} field"),
            DecodeError::BadLength(field) => write!(f, "the {field} field is longer than the packet"),
        }
    }
}

/// Reads fields from a packet body. Keeps the `Bytes` it reads from so that large fields (WRITE data)
/// are sliced, not copied.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated(field))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let s = self.buf.get(self.pos..self.pos + 4).ok_or(DecodeError::Truncated(field))?;
        self.pos += 4;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let hi = self.u32(field)? as u64;
        let lo = self.u32(field)? as u64;
        Ok(hi << 32 | lo)
    }

    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u32(field)? as usize;
        let end = self.pos.checked_add(len).ok_or(DecodeError::BadLength(field))?;
        if end > self.buf.len() {
            return Err(DecodeError::BadLength(field));
        }
        let out = self.buf.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    /// A string as raw bytes: SFTP v3 file names are opaque bytes, often but not always UTF-8.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<Vec<u8>, DecodeError> {
        Ok(self.bytes(field)?.to_vec())
    }

    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos.min(self.buf.len())..);
        self.pos = self.buf.len();
        out
    }
}

pub(crate) fn put_string(out: &mut BytesMut, s: &[u8]) {
    out.put_u32(s.len() as u32);
    out.put_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let mut r = Reader::new(Bytes::from_static(b"\x01\0\0\0\x02\0\0\0\x03abc\0\0\0\x09ab"));
        assert_eq!(r.u8("t"), Ok(1));
        assert_eq!(r.u32("n"), Ok(2));
        assert_eq!(r.bytes("s").as_deref(), Ok(&b"abc"[..]));
        assert_eq!(r.bytes("s2"), Err(DecodeError::BadLength("s2")));
    }

    #[test]
    fn huge_length_does_not_overflow() {
        let mut r = Reader::new(Bytes::from_static(b"\xff\xff\xff\xff"));
        assert_eq!(r.bytes("s"), Err(DecodeError::BadLength("s")));
        let mut r = Reader::new(Bytes::from_static(b"\0\0"));
        assert_eq!(r.u64("o"), Err(DecodeError::Truncated("o")));
    }
}
