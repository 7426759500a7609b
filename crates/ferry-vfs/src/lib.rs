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

/// One user's view of storage, rooted at their virtual `/`.
#[async_trait]
pub trait Vfs: Send + Sync + 'static {
    /// Metadata of `path`, following a final symlink (SFTP STAT, FTP SIZE/MDTM).
    async fn metadata(&self, path: &VPath) -> FsResult<Metadata>;
    /// Metadata of `path` itself, not following a final symlink (SFTP LSTAT).
    async fn symlink_metadata(&self, path: &VPath) -> FsResult<Metadata>;
    /// Every entry of a directory with its (lstat) metadata, `.` and `..` excluded.
    /// Backends hide their own temporary upload files.
    async fn read_dir(&self, path: &VPath) -> FsResult<Vec<DirEntry>>;
    /// Opens a file. With `truncate` (or `create` on a file that does not exist yet) the backend writes to
    /// a temporary file and only replaces `path` when [`FileHandle::close`] succeeds: an upload that is cut
    /// off leaves the previous file intact. Without `truncate`, writes go in place (resume, random access).
    async fn open(&self, path: &VPath, opts: OpenOptions) -> FsResult<Box<dyn FileHandle>>;
    async fn create_dir(&self, path: &VPath, mode: Option<u32>) -> FsResult<()>;
    async fn remove_dir(&self, path: &VPath) -> FsResult<()>;
    async fn remove_file(&self, path: &VPath) -> FsResult<()>;
    /// Renames `from` to `to`. With `overwrite` false an existing `to` is an error
    /// ([`FsError::AlreadyExists`]), as SFTP v3 RENAME requires; with true it is replaced atomically
    /// (posix-rename@openssh.com, FTP RNTO).
    async fn rename(&self, from: &VPath, to: &VPath, overwrite: bool) -> FsResult<()>;
    async fn set_metadata(&self, path: &VPath, attrs: &SetAttrs) -> FsResult<()>;
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
    /// Finishes the file: for an atomic upload, moves the temporary file into place. Dropping a handle
    /// without closing it discards an atomic upload (its temporary file is removed).
    async fn close(self: Box<Self>) -> FsResult<()>;
}
