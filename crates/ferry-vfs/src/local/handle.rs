//! Open files of the local backend, and the temporary file behind an atomic upload.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cap_std::fs::Dir;

use super::util::{apply_to_file, blocking, is_not_found, meta_from_std};
use super::writeback::Writeback;
use crate::{FileHandle, FsError, FsResult, Metadata, SetAttrs};

/// Largest read served in one call. The trait allows short reads, and capping keeps a client that asks
/// for 4 GiB at once from making the server allocate it.
const MAX_READ: usize = 4 * 1024 * 1024;

/// An upload being written to a temporary file next to its target.
///
/// Dropping it without a successful [`PendingUpload::commit`] removes the temporary file: that is what
/// keeps the previous version of the target intact when a connection is cut mid-upload.
pub(super) struct PendingUpload {
    /// The target's parent directory, held open so that the final rename lands in the same directory even
    /// if that directory is renamed meanwhile (and so that both names are resolved without any path walk).
    pub(super) dir: Dir,
    pub(super) temp: OsString,
    pub(super) target: OsString,
    /// O_EXCL was asked: the target must still not exist when the upload is committed.
    pub(super) exclusive: bool,
    pub(super) committed: bool,
}

impl PendingUpload {
    /// Moves the temporary file into place. Consumes `self`: on any error the temporary file is removed by
    /// Drop and the target is left as it was.
    fn commit(mut self) -> FsResult<()> {
        if self.exclusive {
            // link(2) fails if the target exists, so an exclusive upload can never replace a file that
            // somebody created while it was in progress. After the link the temporary name is just a second
            // name for the same inode; leaving `committed` false makes Drop unlink it.
            match self.dir.hard_link(&self.temp, &self.dir, &self.target) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(FsError::AlreadyExists),
                // A filesystem without hard links: fall back to check-then-rename (small race accepted).
                Err(_) => match self.dir.symlink_metadata(&self.target) {
                    Ok(_) => return Err(FsError::AlreadyExists),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                },
            }
        }
        // rename(2) replaces the target atomically: readers see either the old file or the new one.
        self.dir.rename(&self.temp, &self.dir, &self.target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Blocking here is acceptable: this is one unlink, and it runs when a handle is dropped without
        // close (a cut connection) or when committing failed.
        if let Err(e) = self.dir.remove_file(&self.temp) {
            if !is_not_found(&e) {
                tracing::warn!(error = %e, "could not remove an abandoned upload's temporary file");
            }
        }
    }
}

/// An open file. Offsets travel with every request (pread/pwrite), so concurrent requests on one handle
/// do not share a cursor.
pub(super) struct LocalFile {
    pub(super) file: Arc<std::fs::File>,
    pub(super) readable: bool,
    pub(super) writable: bool,
    /// O_APPEND: every write goes to the current end of file, whatever offset the client sent.
    pub(super) append: bool,
    /// Set for an atomic upload: `file` is the temporary file and close moves it into place.
    pub(super) upload: Option<PendingUpload>,
    /// Set for an atomic upload: its data is flushed in the background as it arrives.
    pub(super) writeback: Option<Arc<Writeback>>,
}

#[async_trait]
impl FileHandle for LocalFile {
    async fn read_at(&self, offset: u64, len: u32) -> FsResult<Bytes> {
        if !self.readable {
            return Err(FsError::PermissionDenied);
        }
        let len = (len as usize).min(MAX_READ);
        // No file extends past i64::MAX (off_t); pread would say EINVAL, but for a reader it is EOF.
        if len == 0 || offset > i64::MAX as u64 {
            return Ok(Bytes::new());
        }
        let file = Arc::clone(&self.file);
        blocking(move || {
            // Read into the Vec's spare capacity: a `&mut [u8]` for std's pread would have to be
            // zero-filled first, which was measured at about 7% of a download's server CPU.
            let mut buf = Vec::with_capacity(len);
            // pread may return fewer bytes than asked without being at end of file; only 0 means EOF.
            while buf.len() < len {
                let at = offset + buf.len() as u64; // cannot overflow: offset <= i64::MAX, len <= 4 MiB
                match rustix::io::pread(&*file, rustix::buffer::spare_capacity(&mut buf), at) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(io::Error::from(e).into()),
                }
            }
            if buf.is_empty() {
                return Ok(Bytes::new());
            }
            // Vec::with_capacity may round up, and pread fills whatever capacity there is.
            buf.truncate(len);
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> FsResult<()> {
        if !self.writable {
            return Err(FsError::PermissionDenied);
        }
        if data.is_empty() {
            return Ok(());
        }
        let file = Arc::clone(&self.file);
        let append = self.append;
        let writeback = self.writeback.clone();
        blocking(move || {
            if append {
                // The descriptor has O_APPEND: write(2) atomically seeks to the end first.
                (&*file).write_all(&data)?;
            } else {
                file.write_all_at(&data, offset)?;
            }
            if let Some(wb) = writeback {
                wb.wrote(&file, offset.saturating_add(data.len() as u64));
            }
            Ok(())
        })
        .await
    }

    async fn metadata(&self) -> FsResult<Metadata> {
        let file = Arc::clone(&self.file);
        blocking(move || Ok(meta_from_std(&file.metadata()?))).await
    }

    async fn set_metadata(&self, attrs: &SetAttrs) -> FsResult<()> {
        if attrs.size.is_some() && !self.writable {
            // ftruncate on a read-only descriptor fails with EINVAL; say what it means.
            return Err(FsError::PermissionDenied);
        }
        let file = Arc::clone(&self.file);
        let attrs = attrs.clone();
        blocking(move || apply_to_file(&file, &attrs)).await
    }

    async fn sync(&self) -> FsResult<()> {
        let file = Arc::clone(&self.file);
        blocking(move || Ok(file.sync_all()?)).await
    }

    async fn close(self: Box<Self>) -> FsResult<()> {
        let LocalFile { file, upload, .. } = *self;
        blocking(move || {
            // close(2) can block on network filesystems, so it happens here too. Requests still running
            // on other clones of the Arc keep the descriptor open until they finish; that does not affect
            // the rename below.
            drop(file);
            match upload {
                Some(upload) => upload.commit(),
                None => Ok(()),
            }
        })
        .await
    }
}
