//! `Vfs::canonicalize` for the local backend: symlink resolution in virtual terms.
//!
//! The result is for display (SFTP REALPATH, the FTP working directory). It follows the chroot view of
//! the tree: an absolute link target is taken relative to the user's root and `..` stops at the root.
//! A link whose real target lies outside the root therefore resolves to *some* path inside it; actual
//! opens never rely on this, they always go through cap-std, which refuses such links.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use cap_std::fs::Dir;

use super::util::is_not_found;
use crate::{FsError, FsResult, VPath};

/// As Linux's MAXSYMLINKS: past this many links in one resolution the path is taken to be a loop.
const MAX_LINKS: usize = 40;

fn relative(components: &[Vec<u8>]) -> PathBuf {
    if components.is_empty() {
        return PathBuf::from(".");
    }
    PathBuf::from(OsStr::from_bytes(&components.join(&b'/')))
}

/// Whether any component that still counts is left to resolve.
fn has_more(pending: &VecDeque<Vec<u8>>) -> bool {
    pending.iter().any(|c| !c.is_empty() && c.as_slice() != b".")
}

pub(super) fn canonicalize_blocking(root: &Dir, path: &VPath) -> FsResult<VPath> {
    // `resolved` holds real, non-link components only, so lstat of their join never walks a symlink.
    let mut resolved: Vec<Vec<u8>> = Vec::new();
    let mut pending: VecDeque<Vec<u8>> = path.components().map(<[u8]>::to_vec).collect();
    let mut links = 0;
    while let Some(comp) = pending.pop_front() {
        match comp.as_slice() {
            b"" | b"." => continue,
            b".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        resolved.push(comp);
        let rel = relative(&resolved);
        match root.symlink_metadata(&rel) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(FsError::InvalidPath);
                }
                let target = root.read_link_contents(&rel)?.into_os_string().into_vec();
                resolved.pop();
                if target.starts_with(b"/") {
                    resolved.clear();
                }
                // The target's components are resolved next, before what followed the link.
                for c in target.split(|b| *b == b'/').rev() {
                    pending.push_front(c.to_vec());
                }
            }
            Ok(m) => {
                if !m.is_dir() && has_more(&pending) {
                    return Err(FsError::NotADirectory);
                }
            }
            // Clients realpath names they are about to create, so only the last component may be missing.
            Err(e) if is_not_found(&e) && !has_more(&pending) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = Vec::new();
    for c in &resolved {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    Ok(VPath::resolve(&VPath::root(), &out))
}
