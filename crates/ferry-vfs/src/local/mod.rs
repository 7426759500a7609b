//! The local-disk backend: one user's root directory on this machine.
//!
//! The jail holds by construction. The root is opened once as a `cap_std::fs::Dir` and every path is
//! resolved beneath that handle by cap-std (openat2 `RESOLVE_BENEATH` on Linux, a careful manual walk
//! elsewhere), which refuses `..` past the root, absolute symlink targets and symlinks leading outside.
//! No code here ever builds an absolute host path from client input. cap-std reports such an escape as
//! `io::ErrorKind::PermissionDenied`, which becomes [`FsError::PermissionDenied`].
//!
//! Uploads that replace a file (truncate, or create a new one) are atomic: they are written to a hidden
//! `.ferry-upload.*` file next to the target and renamed over it on close, so a cut connection never
//! leaves a half-written file behind. Those temporary names are invisible to clients and refused in
//! every path.

mod canon;
mod handle;
mod open;
mod ops;
mod util;
mod writeback;

use std::io;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use cap_std::fs::Dir;

use crate::{DirEntry, FileHandle, FsError, FsResult, FsStats, Metadata, OpenOptions, SetAttrs, VPath, Vfs};
use util::{blocking, meta_from_cap, rel};

/// A [`Vfs`] over a directory of the local filesystem.
#[derive(Clone)]
pub struct LocalFs {
    /// Shared so that operations can carry it onto the blocking pool.
    root: Arc<Dir>,
}

impl std::fmt::Debug for LocalFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFs").finish_non_exhaustive()
    }
}

impl LocalFs {
    /// Opens `root` as the user's virtual `/`, creating it (and its parents) if missing. This is the
    /// only place that uses ambient authority: everything afterwards goes through the directory handle.
    /// Blocking; call it when a session starts, from `spawn_blocking` if on the runtime.
    pub fn new(root: impl AsRef<Path>) -> io::Result<LocalFs> {
        let root = root.as_ref();
        std::fs::create_dir_all(root)?;
        let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
        Ok(LocalFs { root: Arc::new(dir) })
    }
}

#[async_trait]
impl Vfs for LocalFs {
    async fn metadata(&self, path: &VPath) -> FsResult<Metadata> {
        let (root, rel) = (Arc::clone(&self.root), rel(path)?);
        blocking(move || Ok(meta_from_cap(&root.metadata(rel)?))).await
    }

    async fn symlink_metadata(&self, path: &VPath) -> FsResult<Metadata> {
        let (root, rel) = (Arc::clone(&self.root), rel(path)?);
        blocking(move || Ok(meta_from_cap(&root.symlink_metadata(rel)?))).await
    }

    async fn read_dir(&self, path: &VPath) -> FsResult<Vec<DirEntry>> {
        let (root, rel) = (Arc::clone(&self.root), rel(path)?);
        blocking(move || ops::read_dir(&root, &rel)).await
    }

    async fn open(&self, path: &VPath, opts: OpenOptions) -> FsResult<Box<dyn FileHandle>> {
        let (root, rel) = (Arc::clone(&self.root), rel(path)?);
        let parent = path.parent().to_relative();
        let name = path.file_name().map(<[u8]>::to_vec);
        let file = blocking(move || open::open_blocking(&root, &rel, &parent, name.as_deref(), opts)).await?;
        Ok(Box::new(file))
    }

    async fn create_dir(&self, path: &VPath, mode: Option<u32>) -> FsResult<()> {
        if path.is_root() {
            return Err(FsError::AlreadyExists);
        }
        let (root, rel) = (Arc::clone(&self.root), rel(path)?);
        blocking(move || ops::create_dir(&root, &rel, mode)).await
    }

    async fn remove_dir(&self, path: &VPath) -> FsResult<()> {
        if path.is_root() {
            return Err(FsError::PermissionDenied);
        }
        let (root, rel) = (Arc::clone(&self.root), rel(path)?);
        blocking(move || Ok(root.remove_dir(rel)?)).await
    }

    async fn remove_file(&self, path: &VPath) -> FsResult<()> {
        if path.is_root() {
            return Err(FsError::IsADirectory);
        }
        // unlinkat on the final component: a symlink is removed itself, never its target.
        let (root, rel) = (Arc::clone(&self.root), rel(path)?);
        blocking(move || Ok(root.remove_file(rel)?)).await
    }

    async fn rename(&self, from: &VPath, to: &VPath, overwrite: bool) -> FsResult<()> {
        let (from_rel, to_rel) = (rel(from)?, rel(to)?);
        if from.is_root() || to.is_root() {
            return Err(FsError::PermissionDenied);
        }
        let root = Arc::clone(&self.root);
        blocking(move || ops::rename(&root, &from_rel, &to_rel, overwrite)).await
    }

    async fn set_metadata(&self, path: &VPath, attrs: &SetAttrs) -> FsResult<()> {
        let (root, rel) = (Arc::clone(&self.root), rel(path)?);
        let attrs = attrs.clone();
        blocking(move || ops::set_metadata(&root, &rel, &attrs)).await
    }

    async fn read_link(&self, path: &VPath) -> FsResult<Vec<u8>> {
        let (root, rel) = (Arc::clone(&self.root), rel(path)?);
        blocking(move || ops::read_link(&root, &rel)).await
    }

    async fn symlink(&self, target: &[u8], link: &VPath) -> FsResult<()> {
        if link.is_root() {
            return Err(FsError::AlreadyExists);
        }
        let (root, rel) = (Arc::clone(&self.root), rel(link)?);
        let target = target.to_vec();
        blocking(move || ops::symlink(&root, &target, &rel)).await
    }

    async fn hard_link(&self, existing: &VPath, link: &VPath) -> FsResult<()> {
        let (existing_rel, link_rel) = (rel(existing)?, rel(link)?);
        if link.is_root() {
            return Err(FsError::AlreadyExists);
        }
        if existing.is_root() {
            // Directories cannot be hard-linked.
            return Err(FsError::PermissionDenied);
        }
        // Both names are resolved under the root, so a link can only ever name a file already inside it.
        let root = Arc::clone(&self.root);
        blocking(move || Ok(root.hard_link(existing_rel, &root, link_rel)?)).await
    }

    async fn canonicalize(&self, path: &VPath) -> FsResult<VPath> {
        rel(path)?;
        let (root, path) = (Arc::clone(&self.root), path.clone());
        blocking(move || canon::canonicalize_blocking(&root, &path)).await
    }

    async fn stats(&self, path: &VPath) -> FsResult<FsStats> {
        let (root, rel) = (Arc::clone(&self.root), rel(path)?);
        let parent = path.parent().to_relative();
        blocking(move || ops::stats(&root, &rel, &parent)).await
    }
}
