//! Open files of the local backend.

use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::pending::Pending;
use super::util::{apply_to_file, blocking, meta_from_std};
use super::writeback::Writeback;
use crate::{FileHandle, FsError, FsResult, Metadata, SetAttrs};
use async_trait::async_trait;
use bytes::Bytes;

/// Largest read served in one call. The trait allows short reads, and capping keeps a client that asks
/// for 4 GiB at once from making the server allocate it.
const MAX_READ: usize = 4 * 1024 * 1024;

/// An open file. Offsets travel with every request (pread/pwrite), so concurrent requests on one handle
/// do not share a cursor.
pub(super) struct LocalFile {
    pub(super) file: Arc<std::fs::File>,
    pub(super) readable: bool,
    pub(super) writable: bool,
    /// O_APPEND: every write goes to the current end of file, whatever offset the client sent.
    pub(super) append: bool,
    /// Set for an upload (see [`super::uploads`]): close commits it, abort or drop undoes it.
    pub(super) upload: Option<Arc<Pending>>,
    /// Set for an upload: its data is flushed in the background as it arrives.
    pub(super) writeback: Option<Arc<Writeback>>,
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        // Dropped without close or abort: a cut-off upload. Undoing it takes a few syscalls and the lock
        // of uploads in progress, so it goes to the blocking pool rather than an async worker.
        if let Some(upload) = self.upload.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(move || upload.abandon())),
                Err(_) => upload.abandon(),
            }
        }
    }
}

impl LocalFile {
    pub(super) fn new(
        file: std::fs::File,
        readable: bool,
        writable: bool,
        append: bool,
        upload: Option<Arc<Pending>>,
    ) -> LocalFile {
        let writeback = upload.is_some().then(Arc::default);
        LocalFile { file: Arc::new(file), readable, writable, append, upload, writeback }
    }
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

    async fn close(mut self: Box<Self>) -> FsResult<()> {
        let (file, upload) = (Arc::clone(&self.file), self.upload.take());
        drop(self);
        blocking(move || {
            // close(2) can block on network filesystems, so it happens here too. Requests still running
            // on other clones of the Arc keep the descriptor open until they finish; that does not affect
            // the commit below.
            drop(file);
            match upload {
                Some(upload) => upload.commit(),
                None => Ok(()),
            }
        })
        .await
    }

    async fn abort(mut self: Box<Self>) {
        let (file, upload) = (Arc::clone(&self.file), self.upload.take());
        drop(self);
        let _ = blocking(move || {
            drop(file);
            if let Some(upload) = upload {
                upload.abandon();
            }
            Ok(())
        })
        .await;
    }
}
