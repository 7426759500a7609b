//! Conversions between the VFS's protocol-neutral metadata and SFTP ATTRS.

use ferry_vfs::{FileKind, Metadata, SetAttrs};

use crate::proto::FileAttrs;

pub(crate) fn to_attrs(m: &Metadata) -> FileAttrs {
    let type_bits = match m.kind {
        FileKind::File => 0o100000,
        FileKind::Dir => 0o040000,
        FileKind::Symlink => 0o120000,
        FileKind::Other => 0,
    };
    let default_perm = if m.kind == FileKind::Dir { 0o755 } else { 0o644 };
    FileAttrs {
        size: Some(m.size),
        uid_gid: m.uid.zip(m.gid),
        permissions: Some(type_bits | m.permissions.unwrap_or(default_perm) & 0o7777),
        atime_mtime: m.mtime.map(|mt| (clamp_u32(m.atime.unwrap_or(mt)), clamp_u32(mt))),
        extended: Vec::new(),
    }
}

/// SFTP v3 times are 32-bit; dates outside its range are shown at its edges.
fn clamp_u32(t: i64) -> u32 {
    t.clamp(0, i64::from(u32::MAX)) as u32
}

pub(crate) fn to_set_attrs(a: &FileAttrs) -> SetAttrs {
    SetAttrs {
        size: a.size,
        permissions: a.permissions.map(|p| p & 0o7777),
        times: a.atime_mtime.map(|(at, mt)| (i64::from(at), i64::from(mt))),
        uid_gid: a.uid_gid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_attrs() {
        let m = Metadata {
            kind: FileKind::File,
            size: 3,
            permissions: Some(0o600),
            uid: Some(1),
            gid: Some(2),
            atime: Some(10),
            mtime: Some(20),
            nlink: Some(1),
        };
        let a = to_attrs(&m);
        assert_eq!(a.permissions, Some(0o100600));
        assert_eq!(a.atime_mtime, Some((10, 20)));
        assert_eq!(a.uid_gid, Some((1, 2)));
        let s = to_set_attrs(&FileAttrs { permissions: Some(0o100755), ..Default::default() });
        assert_eq!(s.permissions, Some(0o755));
        assert_eq!(clamp_u32(-5), 0);
    }
}
