//! Open files on S3: downloads read ahead in large ranged GETs; uploads stream as a multipart upload with
//! a bounded number of parts in flight, and the object appears only when the upload completes.

use bytes::Bytes;
use ferry_vfs::{FileHandle, FileKind, FsError, FsResult, Metadata, SetAttrs};
use opendal::Operator;
use tokio::sync::Mutex;

use crate::error::fs_error;

/// One ranged GET fetches this much; SFTP clients read 32-256 KiB at a time, mostly in order.
pub const READ_AHEAD: u64 = 8 << 20;
/// Upload part size and how many parts may be on their way at once: memory per upload is at most
/// `PART_SIZE * (PARTS_IN_FLIGHT + 1)` (the parts being sent and the one being filled): 24 MiB.
pub const PART_SIZE: usize = 8 << 20;
pub const PARTS_IN_FLIGHT: usize = 2;

pub fn file_meta(size: u64, mtime: Option<i64>) -> Metadata {
    Metadata {
        kind: FileKind::File,
        size,
        permissions: Some(0o644),
        uid: None,
        gid: None,
        atime: mtime,
        mtime,
        nlink: Some(1),
    }
}

pub struct ReadHandle {
    pub op: Operator,
    pub key: String,
    pub size: u64,
    pub mtime: Option<i64>,
    /// The last range fetched: (its offset, its bytes).
    pub window: Mutex<(u64, Bytes)>,
}

#[async_trait::async_trait]
impl FileHandle for ReadHandle {
    async fn read_at(&self, offset: u64, len: u32) -> FsResult<Bytes> {
        if offset >= self.size || len == 0 {
            return Ok(Bytes::new());
        }
        let want_end = (offset + u64::from(len)).min(self.size);
        let mut window = self.window.lock().await;
        let (start, ref data) = *window;
        let end = start + data.len() as u64;
        if offset < start || want_end > end {
            let fetch_end = (offset + READ_AHEAD.max(u64::from(len))).min(self.size);
            let got = self.op.read_with(&self.key).range(offset..fetch_end).await.map_err(fs_error)?;
            *window = (offset, got.to_bytes());
        }
        let (start, ref data) = *window;
        let from = (offset - start) as usize;
        let to = ((want_end - start) as usize).min(data.len());
        Ok(data.slice(from.min(to)..to))
    }

    async fn write_at(&self, _offset: u64, _data: Bytes) -> FsResult<()> {
        Err(FsError::PermissionDenied)
    }

    async fn metadata(&self) -> FsResult<Metadata> {
        Ok(file_meta(self.size, self.mtime))
    }

    async fn set_metadata(&self, attrs: &SetAttrs) -> FsResult<()> {
        crate::vfs::check_settable(attrs)
    }

    async fn sync(&self) -> FsResult<()> {
        Ok(())
    }

    async fn close(self: Box<Self>) -> FsResult<()> {
        Ok(())
    }
}

pub struct UploadHandle {
    pub key: String,
    /// `None` once closed or aborted.
    pub state: Mutex<Option<Upload>>,
}

pub struct Upload {
    pub writer: opendal::Writer,
    /// Where the next write must start: an object is written from start to end.
    pub next: u64,
}

impl UploadHandle {
    pub async fn start(op: &Operator, key: String) -> FsResult<UploadHandle> {
        let writer = op.writer_with(&key).chunk(PART_SIZE).concurrent(PARTS_IN_FLIGHT).await.map_err(fs_error)?;
        Ok(UploadHandle { key, state: Mutex::new(Some(Upload { writer, next: 0 })) })
    }
}

#[async_trait::async_trait]
impl FileHandle for UploadHandle {
    async fn read_at(&self, _offset: u64, _len: u32) -> FsResult<Bytes> {
        Err(FsError::Unsupported("reading a file while it is being uploaded to S3 storage"))
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> FsResult<()> {
        let mut state = self.state.lock().await;
        let Some(up) = state.as_mut() else { return Err(FsError::InvalidPath) };
        if offset != up.next {
            // An object is written once, start to end: resuming or patching an upload would corrupt it.
            return Err(FsError::Unsupported(
                "writing at another place than the end: S3 storage takes an upload from start to end (resume and random writes are not possible)",
            ));
        }
        let n = data.len() as u64;
        if let Err(e) = up.writer.write(data).await {
            // The upload is lost; the previous object, if any, stays.
            if let Some(mut up) = state.take() {
                let _ = up.writer.abort().await;
            }
            return Err(fs_error(e));
        }
        up.next += n;
        Ok(())
    }

    async fn metadata(&self) -> FsResult<Metadata> {
        let state = self.state.lock().await;
        Ok(file_meta(state.as_ref().map(|u| u.next).unwrap_or(0), None))
    }

    async fn set_metadata(&self, attrs: &SetAttrs) -> FsResult<()> {
        crate::vfs::check_settable(attrs)
    }

    async fn sync(&self) -> FsResult<()> {
        Ok(())
    }

    async fn close(self: Box<Self>) -> FsResult<()> {
        let Some(mut up) = self.state.lock().await.take() else { return Ok(()) };
        match up.writer.close().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = up.writer.abort().await;
                tracing::warn!(key = %self.key, "completing an S3 upload failed: {e}");
                Err(fs_error(e))
            }
        }
    }

    async fn abort(self: Box<Self>) {
        if let Some(mut up) = self.state.lock().await.take() {
            if let Err(e) = up.writer.abort().await {
                tracing::warn!(key = %self.key, "aborting an S3 upload failed (its parts stay until the bucket's lifecycle rule removes them): {e}");
            }
        }
    }
}

impl Drop for UploadHandle {
    fn drop(&mut self) {
        // Dropped without close or abort (a connection that vanished): abort in the background, so no
        // parts are left behind and no object appears.
        if let Some(mut up) = self.state.get_mut().take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = up.writer.abort().await;
                });
            }
        }
    }
}
