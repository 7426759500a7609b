//! sshd's rule for private key files, applied to every key Ferry reads (TLS key and SSH host keys): a
//! key file that belongs to the user Ferry runs as must not be open to group or others. A key owned by
//! someone else (root's key shared with Ferry's group, as Debian's `ssl-cert` does) is that owner's
//! business, as in sshd.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::TlsError;

/// Refuses `path` when it belongs to this process's user and group or others have any access to it.
pub fn check_private_key_file(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| TlsError::new(format!("cannot read {}: {e}", path.display())))?;
    permission_problem(path, meta.uid(), meta.mode()).map_or(Ok(()), Err)
}

/// The problem with a key file of owner `uid` and mode `mode`, if any (pure, for tests).
pub(crate) fn permission_problem(path: &Path, uid: u32, mode: u32) -> Option<TlsError> {
    if uid != rustix::process::getuid().as_raw() || mode & 0o077 == 0 {
        return None;
    }
    Some(
        TlsError::new(format!(
            "UNPROTECTED PRIVATE KEY FILE: permissions {:04o} for {} are too open; a private key must not be \
             accessible by group or others, so it is refused (as sshd does)",
            mode & 0o7777,
            path.display()
        ))
        .with_hint(format!("chmod 600 {}", path.display())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_rule() {
        let me = rustix::process::getuid().as_raw();
        let p = Path::new("/k");
        assert!(permission_problem(p, me, 0o100600).is_none());
        assert!(permission_problem(p, me, 0o100400).is_none());
        let e = permission_problem(p, me, 0o100640).expect("group-readable");
        assert!(e.message.contains("UNPROTECTED PRIVATE KEY FILE") && e.message.contains("0640"), "{e}");
        assert_eq!(e.hint.as_deref(), Some("chmod 600 /k"));
        assert!(permission_problem(p, me, 0o100604).is_some(), "readable by others");
        assert!(permission_problem(p, me, 0o100620).is_some(), "writable by group");
        assert!(permission_problem(p, me.wrapping_add(1), 0o100640).is_none(), "another owner's key");
    }

    #[test]
    fn on_disk() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("ferry-keyfile-{}", std::process::id()));
        std::fs::write(&path, "k").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(check_private_key_file(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(check_private_key_file(&path).is_ok());
        let _ = std::fs::remove_file(&path);
        assert!(check_private_key_file(&path).is_err(), "a missing file");
    }
}
