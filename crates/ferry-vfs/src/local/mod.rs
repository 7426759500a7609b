//! The local-disk backend: one user's root directory on this machine.
//!
//! The jail holds by construction. The root is opened once as a `cap_std::fs::Dir` and every path is
//! resolved beneath that handle by cap-std (openat2 `RESOLVE_BENEATH` on Linux, a careful manual walk
//! elsewhere), which refuses `..` past the root, absolute symlink targets and symlinks leading outside.
//! No code here ever builds an absolute host path from client input.
//!
//! Symlinks follow the chroot view of the tree, as OpenSSH's `ChrootDirectory` does: a target is stored
//! exactly as the client gave it, and an absolute target is taken relative to the user's root. When
//! cap-std refuses a path because a link in it is absolute (or climbs above the root), the path is
//! resolved in those terms ([`canon`]) and the operation retried on the result, which again goes through
//! cap-std. A path that cap-std refuses for any other reason is refused.
//!
//! Uploads follow the admin's [`UploadPolicy`] (see [`uploads`]); their hidden `.ferry-upload.*` files
//! are invisible to clients and refused in every path.

mod canon;
mod dir;
mod handle;
pub(crate) mod home;
mod journal;
mod open;
mod ops;
mod pending;
mod uploads;
mod util;
mod writeback;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use cap_std::fs::Dir;

pub use uploads::{UploadMode, UploadPolicy, Uploads, DEFAULT_UMASK};

use crate::{DirHandle, FileHandle, FsError, FsResult, FsStats, Metadata, OpenOptions, SetAttrs, VPath, Vfs};
use util::{blocking, meta_from_cap, rel};

/// Local-disk storage: each user's root is a directory, uploads follow the shared [`Uploads`] settings.
#[derive(Debug, Clone, Default)]
pub struct LocalStorage(pub Arc<Uploads>);

impl crate::Storage for LocalStorage {
    fn open_home(&self, _user: &str, home: &Path) -> io::Result<Arc<dyn Vfs>> {
        Ok(Arc::new(LocalFs::with_uploads(home, Arc::clone(&self.0))?))
    }

    fn usage(&self, _user: &str, home: &Path) -> io::Result<crate::Usage> {
        disk_usage(home)
    }
}

/// Bytes and regular files under `root`, without following symlinks (a link to elsewhere is not the
/// user's data) and without the hidden files of uploads in progress.
pub fn disk_usage(root: &Path) -> io::Result<crate::Usage> {
    let mut usage = crate::Usage::default();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().as_encoded_bytes().starts_with(util::TEMP_PREFIX) {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.is_file() {
                usage.bytes += meta.len();
                usage.files += 1;
            }
        }
    }
    Ok(usage)
}

/// What every operation of one user's filesystem needs, shared so it can travel to the blocking pool.
pub(crate) struct Inner {
    pub(crate) root: Dir,
    /// The root's absolute path, for the upload journal.
    pub(crate) home: PathBuf,
    pub(crate) uploads: Arc<Uploads>,
}

/// A [`Vfs`] over a directory of the local filesystem.
#[derive(Clone)]
pub struct LocalFs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFs").field("home", &self.inner.home).finish_non_exhaustive()
    }
}

impl LocalFs {
    /// Opens `root` as the user's virtual `/` with the default upload policy and no journal (tests, tools).
    /// Blocking.
    pub fn new(root: impl AsRef<Path>) -> io::Result<LocalFs> {
        LocalFs::with_uploads(root, Arc::default())
    }

    /// Opens `root` as the user's virtual `/`, creating it (and its parents) if missing, with the server's
    /// shared upload settings. This is the only place that uses ambient authority, and it follows no
    /// symlink in any component of the path (see [`home`]): everything afterwards goes through the
    /// directory handle. Blocking; call it when a session starts, from `spawn_blocking`.
    pub fn with_uploads(root: impl AsRef<Path>, uploads: Arc<Uploads>) -> io::Result<LocalFs> {
        let home = std::path::absolute(root.as_ref())?;
        let dir = home::open_home(&home, true)?;
        Ok(LocalFs { inner: Arc::new(Inner { root: dir, home, uploads }) })
    }

    /// Runs a blocking operation on `path`; when cap-std refuses the path because of a symlink it will
    /// not follow (absolute, or climbing above the root), retries on the path resolved in chroot terms.
    /// `follow`: the operation follows a final symlink (stat, open) rather than acting on the link itself.
    async fn on_path<T, F>(&self, path: &VPath, follow: bool, op: F) -> FsResult<T>
    where
        F: Fn(&Inner, &VPath) -> FsResult<T> + Send + 'static,
        T: Send + 'static,
    {
        rel(path)?;
        let (inner, path) = (Arc::clone(&self.inner), path.clone());
        blocking(move || match op(&inner, &path) {
            Err(FsError::PermissionDenied) => match resolved(&inner, &path, follow)? {
                Some(real) => op(&inner, &real),
                None => Err(FsError::PermissionDenied),
            },
            other => other,
        })
        .await
    }
}

/// `path` with its symlinks resolved in chroot terms (all of them, or all but a final one), or `None`
/// when that changes nothing, so a retry would fail the same way.
fn resolved(inner: &Inner, path: &VPath, follow: bool) -> FsResult<Option<VPath>> {
    let real = match (follow, path.file_name()) {
        (false, Some(name)) => canon::canonicalize_blocking(&inner.root, &path.parent())?.join(name),
        _ => canon::canonicalize_blocking(&inner.root, path)?,
    };
    rel(&real)?;
    Ok((real != *path).then_some(real))
}

/// Runs `op` on `path` (not following a final link), and once more on the path resolved in chroot terms
/// if cap-std refused it; for the second path of rename and link, whose first is handled by `on_path`.
fn with_resolved<T>(inner: &Inner, path: &VPath, op: impl Fn(&VPath) -> FsResult<T>) -> FsResult<T> {
    match op(path) {
        Err(FsError::PermissionDenied) => match resolved(inner, path, false)? {
            Some(real) => op(&real),
            None => Err(FsError::PermissionDenied),
        },
        other => other,
    }
}

#[async_trait]
impl Vfs for LocalFs {
    async fn metadata(&self, path: &VPath) -> FsResult<Metadata> {
        self.on_path(path, true, |fs, p| Ok(meta_from_cap(&fs.root.metadata(p.to_relative())?))).await
    }

    async fn symlink_metadata(&self, path: &VPath) -> FsResult<Metadata> {
        self.on_path(path, false, |fs, p| Ok(meta_from_cap(&fs.root.symlink_metadata(p.to_relative())?))).await
    }

    async fn open_dir(&self, path: &VPath) -> FsResult<Box<dyn DirHandle>> {
        let dir = self.on_path(path, true, |fs, p| dir::open(&fs.root, &p.to_relative())).await?;
        Ok(Box::new(dir))
    }

    async fn open(&self, path: &VPath, opts: OpenOptions) -> FsResult<Box<dyn FileHandle>> {
        let file = self.on_path(path, true, move |fs, p| open::open_blocking(fs, p, opts)).await?;
        Ok(Box::new(file))
    }

    async fn create_dir(&self, path: &VPath, mode: Option<u32>) -> FsResult<()> {
        if path.is_root() {
            return Err(FsError::AlreadyExists);
        }
        self.on_path(path, false, move |fs, p| {
            ops::create_dir(&fs.root, &p.to_relative(), mode, fs.uploads.policy.umask)
        })
        .await
    }

    async fn remove_dir(&self, path: &VPath) -> FsResult<()> {
        if path.is_root() {
            return Err(FsError::PermissionDenied);
        }
        self.on_path(path, false, |fs, p| Ok(fs.root.remove_dir(p.to_relative())?)).await
    }

    async fn remove_file(&self, path: &VPath) -> FsResult<()> {
        if path.is_root() {
            return Err(FsError::IsADirectory);
        }
        // unlinkat on the final component: a symlink is removed itself, never its target. A name being
        // uploaded takes its hidden backup or temporary file with it.
        self.on_path(path, false, ops::remove_file).await
    }

    async fn rename(&self, from: &VPath, to: &VPath, overwrite: bool) -> FsResult<()> {
        if from.is_root() || to.is_root() {
            return Err(FsError::PermissionDenied);
        }
        rel(from)?;
        let from = from.clone();
        self.on_path(to, false, move |fs, t| {
            with_resolved(fs, &from, |f| ops::rename(&fs.root, &f.to_relative(), &t.to_relative(), overwrite))
        })
        .await
    }

    async fn set_metadata(&self, path: &VPath, attrs: &SetAttrs) -> FsResult<()> {
        let attrs = attrs.clone();
        self.on_path(path, true, move |fs, p| ops::set_metadata(&fs.root, &p.to_relative(), &attrs)).await
    }

    async fn set_link_metadata(&self, path: &VPath, attrs: &SetAttrs) -> FsResult<()> {
        if path.is_root() {
            return self.set_metadata(path, attrs).await;
        }
        let attrs = attrs.clone();
        self.on_path(path, false, move |fs, p| ops::set_link_metadata(&fs.root, &p.to_relative(), &attrs)).await
    }

    async fn read_link(&self, path: &VPath) -> FsResult<Vec<u8>> {
        self.on_path(path, false, |fs, p| ops::read_link(&fs.root, &p.to_relative())).await
    }

    async fn symlink(&self, target: &[u8], link: &VPath) -> FsResult<()> {
        if link.is_root() {
            return Err(FsError::AlreadyExists);
        }
        let target = target.to_vec();
        self.on_path(link, false, move |fs, p| ops::symlink(&fs.root, &target, &p.to_relative())).await
    }

    async fn hard_link(&self, existing: &VPath, link: &VPath) -> FsResult<()> {
        if link.is_root() {
            return Err(FsError::AlreadyExists);
        }
        if existing.is_root() {
            // Directories cannot be hard-linked.
            return Err(FsError::PermissionDenied);
        }
        rel(existing)?;
        // Both names are resolved under the root, so a link can only ever name a file already inside it.
        let existing = existing.clone();
        self.on_path(link, false, move |fs, l| {
            with_resolved(fs, &existing, |e| Ok(fs.root.hard_link(e.to_relative(), &fs.root, l.to_relative())?))
        })
        .await
    }

    async fn canonicalize(&self, path: &VPath) -> FsResult<VPath> {
        rel(path)?;
        let (inner, path) = (Arc::clone(&self.inner), path.clone());
        blocking(move || canon::canonicalize_blocking(&inner.root, &path)).await
    }

    async fn stats(&self, path: &VPath) -> FsResult<FsStats> {
        self.on_path(path, true, |fs, p| ops::stats(&fs.root, &p.to_relative(), &p.parent().to_relative())).await
    }
}
