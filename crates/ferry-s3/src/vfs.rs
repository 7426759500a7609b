//! One user's files in the bucket.

use async_trait::async_trait;
use bytes::Bytes;
use ferry_vfs::{
    DirEntry, DirHandle, FileHandle, FileKind, FsError, FsResult, FsStats, Metadata, OpenOptions, SetAttrs, VPath, Vfs,
};
use opendal::{EntryMode, Operator};
use tokio::sync::Mutex;

use crate::error::fs_error;
use crate::handle::{file_meta, ReadHandle, UploadHandle};
use crate::keys::{entry_name, Root};

/// CopyObject copies at most 5 GiB; a larger file would need UploadPartCopy part by part.
const MAX_COPY: u64 = 5 << 30;
/// A directory rename copies every object: at most this many.
const MAX_DIR_RENAME: usize = 1000;

pub struct S3Vfs {
    pub op: Operator,
    pub raw: std::sync::Arc<crate::raw::RawS3>,
    pub root: Root,
}

/// Part size of a server-side copy of an object over [`MAX_COPY`].
const COPY_PART: u64 = 1 << 30;

fn dir_meta(mtime: Option<i64>) -> Metadata {
    Metadata {
        kind: FileKind::Dir,
        size: 0,
        permissions: Some(0o755),
        uid: None,
        gid: None,
        atime: mtime,
        mtime,
        nlink: Some(1),
    }
}

fn seconds(m: &opendal::Metadata) -> Option<i64> {
    m.last_modified().map(|t| t.into_inner().as_second())
}

/// Attribute changes S3 storage can honour: none but times, which are accepted and not kept (an object's
/// time is its upload's; refusing would fail every client that preserves times, rclone and `put -p`).
pub fn check_settable(attrs: &SetAttrs) -> FsResult<()> {
    if attrs.permissions.is_some() {
        return Err(FsError::Unsupported("permissions: S3 storage has no file modes"));
    }
    if attrs.uid_gid.is_some() {
        return Err(FsError::Unsupported("owners: S3 storage has no file owners"));
    }
    if attrs.size.is_some() {
        return Err(FsError::Unsupported("changing a file's size: S3 objects are written whole"));
    }
    Ok(())
}

enum Found {
    File(Metadata),
    Dir,
    Nothing,
}

impl S3Vfs {
    /// What a path is: an object (a file), a prefix with something under it (a directory), or nothing.
    async fn find(&self, path: &VPath) -> FsResult<Found> {
        if path.is_root() {
            return Ok(Found::Dir);
        }
        let key = self.root.file(path)?;
        match self.op.stat(&key).await {
            Ok(m) if m.is_file() => return Ok(Found::File(file_meta(m.content_length(), seconds(&m)))),
            Ok(_) => {}
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
            Err(e) => return Err(fs_error(e)),
        }
        let dir = self.root.dir(path)?;
        let some = self.op.list_with(&dir).limit(1).await.map_err(fs_error)?;
        Ok(if some.is_empty() { Found::Nothing } else { Found::Dir })
    }

    async fn parent_is_dir(&self, path: &VPath) -> FsResult<()> {
        match self.find(&path.parent()).await? {
            Found::Dir => Ok(()),
            Found::File(_) => Err(FsError::NotADirectory),
            Found::Nothing => Err(FsError::NotFound),
        }
    }

    async fn list(&self, path: &VPath) -> FsResult<Vec<DirEntry>> {
        let dir = self.root.dir(path)?;
        let entries = self.op.list(&dir).await.map_err(fs_error)?;
        let mut out = Vec::with_capacity(entries.len());
        let mut marker = path.is_root();
        for e in &entries {
            let Some(name) = entry_name(&dir, e.path()) else {
                marker |= e.path() == dir;
                continue;
            };
            let m = e.metadata();
            let metadata = match m.mode() {
                EntryMode::DIR => dir_meta(None),
                _ => file_meta(m.content_length(), seconds(m)),
            };
            out.push(DirEntry { name: name.as_bytes().to_vec(), metadata });
        }
        if out.is_empty() && !marker {
            return match self.find(path).await? {
                Found::File(_) => Err(FsError::NotADirectory),
                Found::Nothing => Err(FsError::NotFound),
                Found::Dir => Ok(out),
            };
        }
        Ok(out)
    }
}

struct Listing(Vec<DirEntry>);

#[async_trait]
impl DirHandle for Listing {
    async fn next_batch(&mut self, max: usize) -> FsResult<Vec<DirEntry>> {
        let n = max.max(1).min(self.0.len());
        Ok(self.0.drain(..n).collect())
    }
}

#[async_trait]
impl Vfs for S3Vfs {
    async fn metadata(&self, path: &VPath) -> FsResult<Metadata> {
        match self.find(path).await? {
            Found::File(m) => Ok(m),
            Found::Dir => Ok(dir_meta(None)),
            Found::Nothing => Err(FsError::NotFound),
        }
    }

    async fn symlink_metadata(&self, path: &VPath) -> FsResult<Metadata> {
        self.metadata(path).await
    }

    async fn open_dir(&self, path: &VPath) -> FsResult<Box<dyn DirHandle>> {
        Ok(Box::new(Listing(self.list(path).await?)))
    }

    async fn open(&self, path: &VPath, opts: OpenOptions) -> FsResult<Box<dyn FileHandle>> {
        if opts.write && opts.read {
            return Err(FsError::Unsupported("opening a file for reading and writing at once on S3 storage"));
        }
        if !opts.write {
            return match self.find(path).await? {
                Found::File(m) => Ok(Box::new(ReadHandle {
                    op: self.op.clone(),
                    key: self.root.file(path)?,
                    size: m.size,
                    mtime: m.mtime,
                    window: Mutex::new((0, Bytes::new())),
                })),
                Found::Dir => Err(FsError::IsADirectory),
                Found::Nothing => Err(FsError::NotFound),
            };
        }
        if opts.append {
            return Err(FsError::Unsupported("appending: S3 objects are written whole; upload the whole file"));
        }
        let existing = self.find(path).await?;
        match existing {
            Found::Dir => return Err(FsError::IsADirectory),
            Found::File(_) if opts.exclusive => return Err(FsError::AlreadyExists),
            Found::File(_) if !opts.truncate => {
                return Err(FsError::Unsupported(
                    "writing into an existing file: S3 objects are written whole; upload the whole file again",
                ))
            }
            Found::Nothing if !opts.create => return Err(FsError::NotFound),
            _ => {}
        }
        self.parent_is_dir(path).await?;
        Ok(Box::new(UploadHandle::start(&self.op, self.root.file(path)?).await?))
    }

    async fn create_dir(&self, path: &VPath, _mode: Option<u32>) -> FsResult<()> {
        if !matches!(self.find(path).await?, Found::Nothing) {
            return Err(FsError::AlreadyExists);
        }
        self.parent_is_dir(path).await?;
        self.op.create_dir(&self.root.dir(path)?).await.map_err(fs_error)
    }

    async fn remove_dir(&self, path: &VPath) -> FsResult<()> {
        if path.is_root() {
            return Err(FsError::PermissionDenied);
        }
        let dir = self.root.dir(path)?;
        let under = self.op.list_with(&dir).limit(2).await.map_err(fs_error)?;
        if under.iter().any(|e| e.path() != dir) {
            return Err(FsError::DirectoryNotEmpty);
        }
        if under.is_empty() {
            return match self.find(path).await? {
                Found::File(_) => Err(FsError::NotADirectory),
                _ => Err(FsError::NotFound),
            };
        }
        self.op.delete(&dir).await.map_err(fs_error)
    }

    async fn remove_file(&self, path: &VPath) -> FsResult<()> {
        match self.find(path).await? {
            Found::File(_) => {}
            Found::Dir => return Err(FsError::IsADirectory),
            Found::Nothing => return Err(FsError::NotFound),
        }
        self.keep_parent(path).await?;
        self.op.delete(&self.root.file(path)?).await.map_err(fs_error)
    }

    async fn rename(&self, from: &VPath, to: &VPath, overwrite: bool) -> FsResult<()> {
        let source = self.find(from).await?;
        match (&source, self.find(to).await?) {
            (Found::Nothing, _) => return Err(FsError::NotFound),
            (_, Found::Dir) => return Err(FsError::AlreadyExists),
            (_, Found::File(_)) if !overwrite => return Err(FsError::AlreadyExists),
            _ => {}
        }
        self.parent_is_dir(to).await?;
        match source {
            Found::File(m) => {
                self.keep_parent(from).await?;
                let (a, b) = (self.root.file(from)?, self.root.file(to)?);
                if m.size > MAX_COPY {
                    // CopyObject stops at 5 GiB: UploadPartCopy, 1 GiB at a time, all inside the store.
                    self.raw.copy_in_parts(&a, &b, m.size, COPY_PART).await.map_err(FsError::Io)?;
                } else {
                    self.op.copy(&a, &b).await.map_err(fs_error)?;
                }
                self.op.delete(&a).await.map_err(fs_error)
            }
            Found::Dir => {
                // Every object is copied, then the originals deleted: cut off half-way, nothing is lost
                // (some files are in both places). Bounded, so one command cannot copy a whole tree.
                let (dir, target) = (self.root.dir(from)?, self.root.dir(to)?);
                let objects = self.op.list_with(&dir).recursive(true).await.map_err(fs_error)?;
                if objects.len() > MAX_DIR_RENAME {
                    return Err(FsError::Unsupported(
                        "renaming a directory of more than 1000 files on S3 storage (every object is copied); move its files in smaller groups",
                    ));
                }
                self.keep_parent(from).await?;
                self.op.create_dir(&target).await.map_err(fs_error)?;
                for e in &objects {
                    let Some(rest) = e.path().strip_prefix(dir.as_str()) else { continue };
                    if rest.is_empty() {
                        continue;
                    }
                    let dest = format!("{target}{rest}");
                    let size = e.metadata().content_length();
                    if rest.ends_with('/') {
                        self.op.create_dir(&dest).await.map_err(fs_error)?;
                    } else if size > MAX_COPY {
                        self.raw.copy_in_parts(e.path(), &dest, size, COPY_PART).await.map_err(FsError::Io)?;
                    } else {
                        self.op.copy(e.path(), &dest).await.map_err(fs_error)?;
                    }
                }
                for e in objects.iter().filter(|e| e.path() != dir) {
                    self.op.delete(e.path()).await.map_err(fs_error)?;
                }
                self.op.delete(&dir).await.map_err(fs_error)
            }
            Found::Nothing => Err(FsError::NotFound),
        }
    }

    async fn set_metadata(&self, path: &VPath, attrs: &SetAttrs) -> FsResult<()> {
        check_settable(attrs)?;
        match self.find(path).await? {
            Found::Nothing => Err(FsError::NotFound),
            _ => Ok(()),
        }
    }

    async fn read_link(&self, _path: &VPath) -> FsResult<Vec<u8>> {
        Err(FsError::Unsupported("symbolic links: S3 storage has none"))
    }

    async fn symlink(&self, _target: &[u8], _link: &VPath) -> FsResult<()> {
        Err(FsError::Unsupported("symbolic links: S3 storage has none"))
    }

    async fn hard_link(&self, _existing: &VPath, _link: &VPath) -> FsResult<()> {
        Err(FsError::Unsupported("hard links: S3 storage has none"))
    }

    async fn canonicalize(&self, path: &VPath) -> FsResult<VPath> {
        match self.find(path).await? {
            Found::Nothing => Err(FsError::NotFound),
            _ => Ok(path.clone()),
        }
    }

    async fn stats(&self, _path: &VPath) -> FsResult<FsStats> {
        // A bucket has no size: say "plenty", as SFTPGo and rclone's serve do, so clients do not refuse to
        // upload for want of space.
        let blocks = 1u64 << 40;
        Ok(FsStats {
            block_size: 4096,
            fragment_size: 4096,
            blocks,
            blocks_free: blocks,
            blocks_available: blocks,
            files: 1 << 40,
            files_free: 1 << 40,
            files_available: 1 << 40,
            fs_id: 0,
            flags: 0,
            name_max: 255,
        })
    }
}

impl S3Vfs {
    /// Before the last object under a directory goes, the directory gets its marker, so it stays (a
    /// directory on disk does not vanish when its last file is removed).
    async fn keep_parent(&self, path: &VPath) -> FsResult<()> {
        let parent = path.parent();
        if parent.is_root() {
            return Ok(());
        }
        let dir = self.root.dir(&parent)?;
        let under = self.op.list_with(&dir).limit(2).await.map_err(fs_error)?;
        if under.iter().any(|e| e.path() == dir) || under.len() > 1 {
            return Ok(());
        }
        self.op.create_dir(&dir).await.map_err(fs_error)
    }
}
