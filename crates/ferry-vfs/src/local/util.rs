//! Small helpers shared by the local backend: path checks, running blocking work, metadata conversion.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{FileKind, FsError, FsResult, Metadata, VPath};

/// Name prefix of the temporary files that atomic uploads write to. Such names are hidden from listings
/// and refused in every path, so a client can neither see nor tamper with an upload in progress.
pub(super) const TEMP_PREFIX: &[u8] = b".ferry-upload.";

/// Mode bits a client may set: read, write and execute for owner, group and others. Never setuid,
/// setgid or sticky: over SFTP or FTP a remote user could otherwise plant a set-id binary that any local
/// account could run (with the server's identity, root included).
pub(super) const CLIENT_MODE_BITS: u32 = 0o777;

/// Longest file name most Unix filesystems accept (NAME_MAX).
const NAME_MAX: usize = 255;

pub(super) fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// The path relative to the root directory handle, refusing any path that names a temporary upload file.
pub(super) fn rel(path: &VPath) -> FsResult<PathBuf> {
    if path.components().any(is_temp_name) {
        return Err(FsError::InvalidPath);
    }
    Ok(path.to_relative())
}

/// A fresh temporary name for an upload to `target`. The original name is kept at the end only so that an
/// administrator looking at the directory understands what the file is; it is cut short so that the whole
/// name still fits in NAME_MAX.
pub(super) fn temp_name(target: &[u8]) -> OsString {
    let mut name = format!(".ferry-upload.{:016x}.", rand::random::<u64>()).into_bytes();
    let room = NAME_MAX.saturating_sub(name.len());
    name.extend_from_slice(&target[..target.len().min(room)]);
    OsString::from_vec(name)
}

/// Runs filesystem work on tokio's blocking pool: every syscall may block (slow disks, NFS), and the async
/// workers serve every other session meanwhile.
pub(super) async fn blocking<T, F>(f: F) -> FsResult<T>
where
    F: FnOnce() -> FsResult<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        // Only a panic inside `f` (or a runtime shutting down) gets here.
        Err(e) => Err(FsError::Io(io::Error::other(format!("filesystem task failed: {e}")))),
    }
}

/// True when an error is "no such file", whatever layer produced it.
pub(super) fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn kind_of(is_dir: bool, is_file: bool, is_symlink: bool) -> FileKind {
    if is_symlink {
        FileKind::Symlink
    } else if is_dir {
        FileKind::Dir
    } else if is_file {
        FileKind::File
    } else {
        FileKind::Other
    }
}

/// Converts cap-std metadata (from path operations under the root).
pub(super) fn meta_from_cap(m: &cap_std::fs::Metadata) -> Metadata {
    use cap_std::fs::MetadataExt;
    let ft = m.file_type();
    Metadata {
        kind: kind_of(ft.is_dir(), ft.is_file(), ft.is_symlink()),
        size: m.len(),
        permissions: Some(m.mode() & 0o7777),
        uid: Some(m.uid()),
        gid: Some(m.gid()),
        atime: Some(m.atime()),
        mtime: Some(m.mtime()),
        nlink: Some(m.nlink()),
    }
}

/// Converts std metadata (from fstat on an open handle).
pub(super) fn meta_from_std(m: &std::fs::Metadata) -> Metadata {
    use std::os::unix::fs::MetadataExt;
    let ft = m.file_type();
    Metadata {
        kind: kind_of(ft.is_dir(), ft.is_file(), ft.is_symlink()),
        size: m.len(),
        permissions: Some(m.mode() & 0o7777),
        uid: Some(m.uid()),
        gid: Some(m.gid()),
        atime: Some(m.atime()),
        mtime: Some(m.mtime()),
        nlink: Some(m.nlink()),
    }
}

/// Seconds since the epoch (possibly negative) as a SystemTime.
fn system_time(secs: i64) -> FsResult<SystemTime> {
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    };
    t.ok_or_else(|| FsError::Io(io::Error::new(io::ErrorKind::InvalidInput, "time out of range")))
}

/// Ownership cannot really be changed (the server runs as one user); a request that names the current
/// owner is accepted as a no-op so that clients preserving attributes (`put -p`) do not fail.
pub(super) fn check_owner(uid_gid: Option<(u32, u32)>, current: &Metadata) -> FsResult<()> {
    match uid_gid {
        Some((uid, gid)) if Some(uid) != current.uid || Some(gid) != current.gid => Err(FsError::PermissionDenied),
        _ => Ok(()),
    }
}

/// Sets access and modification times through an open descriptor (futimens).
pub(super) fn set_file_times(file: &std::fs::File, (atime, mtime): (i64, i64)) -> FsResult<()> {
    let times = std::fs::FileTimes::new().set_accessed(system_time(atime)?).set_modified(system_time(mtime)?);
    file.set_times(times)?;
    Ok(())
}

/// Applies attributes through an open descriptor; ownership is checked first so that a refused request
/// changes nothing.
pub(super) fn apply_to_file(file: &std::fs::File, attrs: &crate::SetAttrs) -> FsResult<()> {
    use std::os::unix::fs::PermissionsExt;
    if attrs.uid_gid.is_some() {
        check_owner(attrs.uid_gid, &meta_from_std(&file.metadata()?))?;
    }
    if let Some(size) = attrs.size {
        file.set_len(size)?;
    }
    if let Some(mode) = attrs.permissions {
        file.set_permissions(std::fs::Permissions::from_mode(mode & CLIENT_MODE_BITS))?;
    }
    if let Some(times) = attrs.times {
        set_file_times(file, times)?;
    }
    Ok(())
}
