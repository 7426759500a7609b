use bytes::{BufMut, BytesMut};

use super::wire::{put_string, DecodeError, Reader};

const SIZE: u32 = 0x1;
const UIDGID: u32 = 0x2;
const PERMISSIONS: u32 = 0x4;
const ACMODTIME: u32 = 0x8;
const EXTENDED: u32 = 0x8000_0000;

/// SFTP v3 ATTRS. Each field is present or not, as its flag bit says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileAttrs {
    pub size: Option<u64>,
    pub uid_gid: Option<(u32, u32)>,
    /// Full st_mode: file type bits and permission bits.
    pub permissions: Option<u32>,
    pub atime_mtime: Option<(u32, u32)>,
    /// Extended attribute pairs: decoded so the packet stays in sync, otherwise ignored.
    pub extended: Vec<(Vec<u8>, Vec<u8>)>,
}

impl FileAttrs {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let flags = r.u32("attrs flags")?;
        let mut a = FileAttrs::default();
        if flags & SIZE != 0 {
            a.size = Some(r.u64("attrs size")?);
        }
        if flags & UIDGID != 0 {
            a.uid_gid = Some((r.u32("attrs uid")?, r.u32("attrs gid")?));
        }
        if flags & PERMISSIONS != 0 {
            a.permissions = Some(r.u32("attrs permissions")?);
        }
        if flags & ACMODTIME != 0 {
            a.atime_mtime = Some((r.u32("attrs atime")?, r.u32("attrs mtime")?));
        }
        if flags & EXTENDED != 0 {
            let count = r.u32("attrs extended count")?;
            for _ in 0..count {
                // Each pair takes at least 8 bytes, so a huge count runs out of packet long before it
                // could make us allocate much.
                let k = r.string("attrs extended type")?;
                let v = r.string("attrs extended data")?;
                a.extended.push((k, v));
            }
        }
        Ok(a)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        let mut flags = 0;
        if self.size.is_some() {
            flags |= SIZE;
        }
        if self.uid_gid.is_some() {
            flags |= UIDGID;
        }
        if self.permissions.is_some() {
            flags |= PERMISSIONS;
        }
        if self.atime_mtime.is_some() {
            flags |= ACMODTIME;
        }
        if !self.extended.is_empty() {
            flags |= EXTENDED;
        }
        out.put_u32(flags);
        if let Some(size) = self.size {
            out.put_u64(size);
        }
        if let Some((uid, gid)) = self.uid_gid {
            out.put_u32(uid);
            out.put_u32(gid);
        }
        if let Some(p) = self.permissions {
            out.put_u32(p);
        }
        if let Some((at, mt)) = self.atime_mtime {
            out.put_u32(at);
            out.put_u32(mt);
        }
        if !self.extended.is_empty() {
            out.put_u32(self.extended.len() as u32);
            for (k, v) in &self.extended {
                put_string(out, k);
                put_string(out, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn round_trip() {
        let a = FileAttrs {
            size: Some(1 << 40),
            uid_gid: Some((1000, 100)),
            permissions: Some(0o100644),
            atime_mtime: Some((1, 2)),
            extended: vec![(b"k".to_vec(), b"v".to_vec())],
        };
        let mut out = BytesMut::new();
        a.encode(&mut out);
        let b = FileAttrs::decode(&mut Reader::new(out.freeze())).expect("decodes");
        assert_eq!(a, b);
    }

    #[test]
    fn empty_and_truncated() {
        let a = FileAttrs::decode(&mut Reader::new(Bytes::from_static(b"\0\0\0\0"))).expect("empty");
        assert_eq!(a, FileAttrs::default());
        let e = FileAttrs::decode(&mut Reader::new(Bytes::from_static(b"\0\0\0\x01\0\0")));
        assert_eq!(e, Err(DecodeError::Truncated("attrs size")));
    }
}
