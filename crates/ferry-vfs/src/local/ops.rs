//! Path operations of the local backend, as plain blocking functions (the async wrappers in `mod.rs`
//! run them on the blocking pool). Every path is relative to the root directory handle and resolved by
//! cap-std, which refuses `..`, absolute symlinks and symlinks that lead out of the root.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use std::path::Path;

use cap_std::fs::{Dir, DirBuilder, DirBuilderExt as _, OpenOptionsExt as _, Permissions, PermissionsExt as _};

use super::util::{check_owner, is_not_found, meta_from_cap, set_file_times, CLIENT_MODE_BITS, TEMP_PREFIX};
use crate::{FsError, FsResult, FsStats, SetAttrs, VPath};

/// Mode of a new directory when the client gives none (the process umask still applies).
const DEFAULT_DIR_MODE: u32 = 0o755;

/// Removes a file (or a symlink itself). A name being uploaded (see [`super::uploads`]) takes its hidden
/// backup or temporary file with it, so that nothing outlives what the client sees: an abandoned upload
/// that a client cleans up by removing its name (rclone does) leaves the directory truly empty.
pub(super) fn remove_file(fs: &super::Inner, path: &VPath) -> FsResult<()> {
    let rel = path.to_relative();
    let name = path.file_name().unwrap_or_default();
    if !fs.uploads.any_named(name) {
        fs.root.remove_file(&rel)?;
        return Ok(());
    }
    let dir = fs.root.open_dir(path.parent().to_relative())?;
    let key = {
        use cap_std::fs::MetadataExt as _;
        let m = dir.dir_metadata()?;
        (m.dev(), m.ino(), name.to_vec())
    };
    // Declared before the lock: if this is the last reference, its drop must not run under the lock.
    let pending = fs.uploads.lookup(&key);
    let steps = fs.uploads.steps();
    let leftover = pending.as_ref().map(|p| p.detach());
    let removed = dir.remove_file(OsStr::from_bytes(name));
    drop(steps);
    if let (Some(p), Some(l)) = (&pending, leftover) {
        p.finish_detach(l);
    }
    match removed {
        // An atomic upload had not put anything under the name yet: removing the upload is all there was.
        Err(e) if is_not_found(&e) && pending.is_some() => Ok(()),
        other => Ok(other?),
    }
}

pub(super) fn create_dir(root: &Dir, rel: &Path, mode: Option<u32>, umask: u32) -> FsResult<()> {
    let mut builder = DirBuilder::new();
    builder.mode(mode.unwrap_or(DEFAULT_DIR_MODE) & CLIENT_MODE_BITS & !umask);
    root.create_dir_with(rel, &builder)?;
    Ok(())
}

pub(super) fn rename(root: &Dir, from: &Path, to: &Path, overwrite: bool) -> FsResult<()> {
    if overwrite {
        root.rename(from, root, to)?;
        return Ok(());
    }
    // Without overwrite an existing `to` must survive. There is no renameat2(RENAME_NOREPLACE) without
    // unsafe code, so for a regular file use link + unlink: link(2) fails if `to` exists, atomically.
    if root.symlink_metadata(from)?.is_file() {
        match root.hard_link(from, root, to) {
            Ok(()) => {
                if let Err(e) = root.remove_file(from) {
                    // Undo, so that a failed rename does not leave the file under two names.
                    let _ = root.remove_file(to);
                    return Err(e.into());
                }
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(FsError::AlreadyExists),
            // No hard links here (some filesystems, another mount): fall back to check-then-rename.
            Err(_) => {}
        }
    }
    // Directories, symlinks and the fallback: check, then rename. The window between the two is the one
    // race accepted here.
    match root.symlink_metadata(to) {
        Ok(_) => return Err(FsError::AlreadyExists),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    root.rename(from, root, to)?;
    Ok(())
}

/// Opens `rel` (following links inside the root) only to set its times: futimens through a descriptor
/// is the one way std offers. Directories are opened the same way: `Dir::open_dir` would give an O_PATH
/// descriptor on Linux, which futimens refuses (EBADF), while a plain O_RDONLY open of a directory works.
fn open_for_times(root: &Dir, rel: &Path) -> io::Result<std::fs::File> {
    let mut o = cap_std::fs::OpenOptions::new();
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    o.read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    match root.open_with(rel, &o) {
        Ok(f) => Ok(f.into_std()),
        // The owner may set times on a file it cannot read (mode 0o200): try a write-only descriptor.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            o.read(false).write(true);
            Ok(root.open_with(rel, &o)?.into_std())
        }
        Err(e) => Err(e),
    }
}

pub(super) fn set_metadata(root: &Dir, rel: &Path, attrs: &SetAttrs) -> FsResult<()> {
    // Follows a final symlink, as SETSTAT (chmod, truncate, utimes) does.
    let current = match root.metadata(rel) {
        Ok(m) => m,
        Err(e) if is_not_found(&e) => return set_dangling_link_times(root, rel, attrs, e),
        Err(e) => return Err(e.into()),
    };
    // Refuse an ownership change before anything else is modified.
    check_owner(attrs.uid_gid, &meta_from_cap(&current))?;
    if let Some(size) = attrs.size {
        if current.is_dir() {
            return Err(FsError::IsADirectory);
        }
        if !current.is_file() {
            return Err(FsError::PermissionDenied);
        }
        let mut o = cap_std::fs::OpenOptions::new();
        o.write(true);
        root.open_with(rel, &o)?.set_len(size)?;
    }
    if let Some(mode) = attrs.permissions {
        root.set_permissions(rel, Permissions::from_mode(mode & CLIENT_MODE_BITS))?;
    }
    if let Some(times) = attrs.times {
        let file = open_for_times(root, rel)?;
        set_file_times(&file, times)?;
    }
    Ok(())
}

/// Times set on a symlink whose target does not exist (yet) go to the link itself; anything else on a
/// missing path fails with `missing`.
///
/// sshfs turns the kernel's "set this symlink's times" (rsync -a, `touch -h`) into a path SETSTAT, which
/// follows the link. rsync creates a link before the file it points to, so following would fail the copy
/// (rsync exit 23) whenever the link's time differs from the source's. There is no target to follow here,
/// so setting the link's own times is the only meaning the request can have.
fn set_dangling_link_times(root: &Dir, rel: &Path, attrs: &SetAttrs, missing: io::Error) -> FsResult<()> {
    let only_times = attrs.size.is_none() && attrs.permissions.is_none() && attrs.uid_gid.is_none();
    let is_link = root.symlink_metadata(rel).is_ok_and(|m| m.file_type().is_symlink());
    match attrs.times {
        Some(times) if only_times && is_link => set_link_times(root, rel, times),
        _ => Err(missing.into()),
    }
}

/// SETSTAT without following a final symlink (lsetstat@openssh.com). Anything but a symlink is changed as
/// by [`set_metadata`]. A symlink's own times and owner can be set; it has no size, and Linux keeps no
/// permissions on it, so those are refused before anything is changed.
pub(super) fn set_link_metadata(root: &Dir, rel: &Path, attrs: &SetAttrs) -> FsResult<()> {
    let current = root.symlink_metadata(rel)?;
    if !current.file_type().is_symlink() {
        return set_metadata(root, rel, attrs);
    }
    check_owner(attrs.uid_gid, &meta_from_cap(&current))?;
    if attrs.size.is_some() {
        return Err(FsError::Unsupported("a symlink has no size to change"));
    }
    if attrs.permissions.is_some() {
        return Err(FsError::Unsupported("a symlink's permissions cannot be changed"));
    }
    match attrs.times {
        Some(times) => set_link_times(root, rel, times),
        None => Ok(()),
    }
}

/// Sets the times of `rel` itself, never following it.
fn set_link_times(root: &Dir, rel: &Path, (atime, mtime): (i64, i64)) -> FsResult<()> {
    let Some(name) = rel.file_name() else {
        return Err(FsError::InvalidPath);
    };
    let parent = match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => root.open_dir(p)?,
        _ => root.try_clone()?,
    };
    let at = |secs: i64| rustix::fs::Timespec { tv_sec: secs, tv_nsec: 0 };
    let times = rustix::fs::Timestamps { last_access: at(atime), last_modification: at(mtime) };
    // The name is one component and is not followed, so this cannot reach outside `parent`.
    rustix::fs::utimensat(&parent, name, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)?;
    Ok(())
}

pub(super) fn read_link(root: &Dir, rel: &Path) -> FsResult<Vec<u8>> {
    // `read_link_contents` returns the target as stored, absolute or not; `read_link` would refuse
    // absolute targets, and reading a link's text never follows it.
    match root.read_link_contents(rel) {
        Ok(target) => Ok(target.into_os_string().into_vec()),
        // readlink(2) says EINVAL when the path is not a symlink.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(FsError::InvalidPath),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn symlink(root: &Dir, target: &[u8], link: &Path) -> FsResult<()> {
    // The target is stored as given (it may be absolute, or point outside: following it is refused
    // later), except that it may not name a temporary upload file, which would let a client read
    // another upload in progress through the link.
    if target.is_empty() || target.contains(&0) || target.split(|b| *b == b'/').any(|c| c.starts_with(TEMP_PREFIX)) {
        return Err(FsError::InvalidPath);
    }
    root.symlink_contents(OsStr::from_bytes(target), link)?;
    Ok(())
}

pub(super) fn stats(root: &Dir, rel: &Path, parent: &Path) -> FsResult<FsStats> {
    // statvfs of the filesystem holding the path: a mount below the root may differ from the root's.
    // fstatvfs accepts the O_PATH descriptors cap-std opens directories with.
    let dir = if root.metadata(rel)?.is_dir() { root.open_dir(rel)? } else { root.open_dir(parent)? };
    let s = rustix::fs::fstatvfs(&dir).map_err(io::Error::from)?;
    Ok(FsStats {
        block_size: s.f_bsize,
        fragment_size: s.f_frsize,
        blocks: s.f_blocks,
        blocks_free: s.f_bfree,
        blocks_available: s.f_bavail,
        files: s.f_files,
        files_free: s.f_ffree,
        files_available: s.f_favail,
        fs_id: s.f_fsid,
        flags: s.f_flag.bits(),
        name_max: s.f_namemax,
    })
}
