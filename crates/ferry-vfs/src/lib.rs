//! Ferry's virtual filesystem.
//!
//! Every protocol (SFTP, FTPS) talks to storage through the [`Vfs`] trait and nothing else. Paths reach a
//! backend as [`VPath`]s: already normalised, absolute inside the user's virtual root, free of `.` and `..`.
//! Backends must still keep users inside their root by construction (the local backend resolves every path
//! under a directory handle, so symlinks pointing outside cannot be followed out of it).
//!
//! The trait is shaped so that an object-store backend fits later: writes through a handle may be
//! sequential-only (such a backend answers [`FsError::Unsupported`] to out-of-order writes), and rename,
//! links and permissions are operations a backend may refuse with [`FsError::Unsupported`].
#![forbid(unsafe_code)]

pub mod activity;
mod error;
pub mod listing;
mod path;
mod types;

pub mod local;

pub use error::{FsError, FsResult};
pub use path::VPath;
pub use types::{DirEntry, FileKind, FsStats, Metadata, OpenOptions, SetAttrs};

use async_trait::async_trait;
use bytes::Bytes;

/// Opens each user's storage. The server holds one, and every protocol gets a user's [`Vfs`] from it, so
/// the backend (local disk today, object storage later) is chosen in one place.
pub trait Storage: Send + Sync + 'static {
    /// The storage of `user`, whose root is `home` (a directory on local disk; object storage keeps each
    /// user under a key prefix named after the user). Blocking: call it from `spawn_blocking`.
    fn open_home(&self, user: &str, home: &std::path::Path) -> std::io::Result<std::sync::Arc<dyn Vfs>>;

    /// Bytes and regular files of `user`, for quotas. Blocking, and it walks the whole tree: the core
    /// calls it once per user and keeps the count up to date itself.
    fn usage(&self, user: &str, home: &std::path::Path) -> std::io::Result<Usage>;
}

/// What a user's files take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub files: u64,
}

/// One user's view of storage, rooted at their virtual `/`.
#[async_trait]
pub trait Vfs: Send + Sync + 'static {
    /// Metadata of `path`, following a final symlink (SFTP STAT, FTP SIZE/MDTM).
    async fn metadata(&self, path: &VPath) -> FsResult<Metadata>;
    /// Metadata of `path` itself, not following a final symlink (SFTP LSTAT).
    async fn symlink_metadata(&self, path: &VPath) -> FsResult<Metadata>;
    /// Opens a directory for listing, a batch at a time (SFTP OPENDIR/READDIR), so that a huge directory
    /// is never held in memory whole.
    async fn open_dir(&self, path: &VPath) -> FsResult<Box<dyn DirHandle>>;
    /// Every entry of a directory with its (lstat) metadata, sorted by name, `.` and `..` excluded.
    /// Backends hide their own temporary upload files.
    async fn read_dir(&self, path: &VPath) -> FsResult<Vec<DirEntry>> {
        let mut dir = self.open_dir(path).await?;
        let mut out = Vec::new();
        loop {
            let batch = dir.next_batch(1024).await?;
            if batch.is_empty() {
                break;
            }
            out.extend(batch);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
    /// Opens a file. With `truncate` (or `create` on a file that does not exist yet) the open starts an
    /// upload: it replaces or creates `path` only when [`FileHandle::close`] succeeds, and an upload that
    /// is cut off ([`FileHandle::abort`], or a dropped handle) leaves the previous file intact. Whether
    /// the name shows the new data meanwhile depends on the backend's upload mode. Without `truncate`,
    /// writes go in place (resume, random access).
    async fn open(&self, path: &VPath, opts: OpenOptions) -> FsResult<Box<dyn FileHandle>>;
    async fn create_dir(&self, path: &VPath, mode: Option<u32>) -> FsResult<()>;
    async fn remove_dir(&self, path: &VPath) -> FsResult<()>;
    async fn remove_file(&self, path: &VPath) -> FsResult<()>;
    /// Renames `from` to `to`. With `overwrite` false an existing `to` is an error
    /// ([`FsError::AlreadyExists`]), as SFTP v3 RENAME requires; with true it is replaced atomically
    /// (posix-rename@openssh.com, FTP RNTO).
    async fn rename(&self, from: &VPath, to: &VPath, overwrite: bool) -> FsResult<()>;
    async fn set_metadata(&self, path: &VPath, attrs: &SetAttrs) -> FsResult<()>;
    /// Like [`Vfs::set_metadata`], but a final symlink is changed itself, not followed
    /// (lsetstat@openssh.com, `sftp`'s `chmod -h`). Backends without symlinks keep this default.
    async fn set_link_metadata(&self, path: &VPath, attrs: &SetAttrs) -> FsResult<()> {
        self.set_metadata(path, attrs).await
    }
    /// Target of a symlink, as stored (bytes, may be relative).
    async fn read_link(&self, path: &VPath) -> FsResult<Vec<u8>>;
    /// Creates a symlink at `link` pointing to `target`. The target is stored as given; following it can
    /// never leave the root because every resolution happens under the root handle.
    async fn symlink(&self, target: &[u8], link: &VPath) -> FsResult<()>;
    async fn hard_link(&self, existing: &VPath, link: &VPath) -> FsResult<()>;
    /// Resolves symlinks in `path` within the root, giving the canonical virtual path (SFTP REALPATH).
    /// A missing final component is allowed (clients realpath files they are about to create).
    async fn canonicalize(&self, path: &VPath) -> FsResult<VPath>;
    /// Space on the filesystem holding `path` (statvfs@openssh.com).
    async fn stats(&self, path: &VPath) -> FsResult<FsStats>;
}

/// A directory being listed.
#[async_trait]
pub trait DirHandle: Send + Sync {
    /// Up to `max` more entries with their (lstat) metadata, in no particular order; empty at the end.
    async fn next_batch(&mut self, max: usize) -> FsResult<Vec<DirEntry>>;
}

/// An open file. Reads and writes carry their own offset, so requests on one handle do not depend on a
/// shared cursor.
#[async_trait]
pub trait FileHandle: Send + Sync {
    /// Up to `len` bytes at `offset`; an empty result means end of file.
    async fn read_at(&self, offset: u64, len: u32) -> FsResult<Bytes>;
    /// Takes the data by value (a cheap reference-counted slice of the request) so a backend can hand it
    /// to a blocking thread or an upload part without copying.
    async fn write_at(&self, offset: u64, data: Bytes) -> FsResult<()>;
    async fn metadata(&self) -> FsResult<Metadata>;
    async fn set_metadata(&self, attrs: &SetAttrs) -> FsResult<()>;
    async fn sync(&self) -> FsResult<()>;
    /// Finishes the file: an upload becomes the file under its name (see the backend's upload modes).
    /// On error the upload is undone and the previous file, if any, stays.
    async fn close(self: Box<Self>) -> FsResult<()>;
    /// Gives up on the file: an upload that was cut off (connection lost, a failed write, a TLS data
    /// connection ended without close_notify) is undone, so a partial file never replaces a good one.
    /// Dropping a handle does the same, less promptly.
    async fn abort(self: Box<Self>) {
        drop(self);
    }
}
