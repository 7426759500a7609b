//! Quotas per user: bytes and regular files. The tree is walked once, at the user's first login with a
//! quota since the server started; from then on the gate keeps the count as files are written, removed
//! and replaced, for every session of the user whatever the protocol. An upload reserves what it writes
//! as it goes, so a write that would pass the limit fails at once ("quota exceeded", FTP 552) and the
//! upload is undone as any failed upload is: the previous file stays.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_vfs::{FileHandle, FsError, FsResult, Metadata, SetAttrs, Usage};

/// A user's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub bytes: Option<u64>,
    pub files: Option<u64>,
}

/// Where changes to a user's count also go: the user database, so every node of a cluster counts the
/// same (bytes, files) changes.
pub type Sink = Box<dyn Fn(i64, i64) + Send + Sync>;

/// What a user's files take, shared by all their sessions.
#[derive(Default)]
pub struct Tracker {
    state: Mutex<State>,
    sink: Option<Sink>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker").field("state", &self.state).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    used: Usage,
    /// Bytes that uploads in progress have written beyond what their files took before.
    reserved_bytes: u64,
    /// New files being uploaded.
    reserved_files: u64,
}

impl Tracker {
    pub fn new(used: Usage) -> Tracker {
        Tracker { state: Mutex::new(State { used, ..State::default() }), sink: None }
    }

    /// Like [`Tracker::new`], with every change also handed to `sink`.
    pub fn with_sink(used: Usage, sink: Sink) -> Tracker {
        Tracker { state: Mutex::new(State { used, ..State::default() }), sink: Some(sink) }
    }

    /// The count as the user database has it now (changes made through other nodes included).
    /// Reservations of uploads in progress here are kept.
    pub fn set_used(&self, used: Usage) {
        self.state().used = used;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn used(&self) -> Usage {
        self.state().used
    }

    /// A new file is about to be created: refused when the file count is at the limit.
    fn reserve_file(&self, limits: Limits) -> FsResult<()> {
        let mut st = self.state();
        if let Some(max) = limits.files {
            if st.used.files + st.reserved_files >= max {
                return Err(FsError::QuotaExceeded);
            }
        }
        st.reserved_files += 1;
        Ok(())
    }

    /// `more` bytes on top of what is reserved: refused when they would pass the limit.
    fn reserve_bytes(&self, limits: Limits, more: u64) -> FsResult<()> {
        let mut st = self.state();
        if let Some(max) = limits.bytes {
            if st.used.bytes + st.reserved_bytes + more > max {
                return Err(FsError::QuotaExceeded);
            }
        }
        st.reserved_bytes += more;
        Ok(())
    }

    fn release(&self, bytes: u64, file: bool) {
        let mut st = self.state();
        st.reserved_bytes = st.reserved_bytes.saturating_sub(bytes);
        if file {
            st.reserved_files = st.reserved_files.saturating_sub(1);
        }
    }

    /// A file's size changed from `before` to `after` (`None`: it did not exist / no longer exists).
    pub(crate) fn changed(&self, before: Option<u64>, after: Option<u64>) {
        let files: i64 = match (before, after) {
            (None, Some(_)) => 1,
            (Some(_), None) => -1,
            _ => 0,
        };
        {
            let mut st = self.state();
            st.used.bytes = (st.used.bytes + after.unwrap_or(0)).saturating_sub(before.unwrap_or(0));
            st.used.files = st.used.files.saturating_add_signed(files);
        }
        if let Some(sink) = &self.sink {
            let bytes = after.unwrap_or(0) as i64 - before.unwrap_or(0) as i64;
            if bytes != 0 || files != 0 {
                sink(bytes, files);
            }
        }
    }
}

/// A user's quota as the gate applies it.
#[derive(Debug, Clone)]
pub struct Quota {
    pub limits: Limits,
    pub tracker: Arc<Tracker>,
}

impl Quota {
    /// Wraps a file opened for writing. `before`: its size if it existed; `truncate`: the upload starts
    /// from empty (the previous version stays on disk, and counted, until the upload completes).
    pub(crate) fn file(&self, inner: Box<dyn FileHandle>, before: Option<u64>, truncate: bool) -> FsResult<QuotaFile> {
        let new_file = before.is_none();
        if new_file {
            self.tracker.reserve_file(self.limits)?;
        }
        let start = if truncate { 0 } else { before.unwrap_or(0) };
        Ok(QuotaFile {
            inner: Some(inner),
            quota: self.clone(),
            before,
            truncate,
            new_file,
            extent: AtomicU64::new(start),
            reserved: AtomicU64::new(0),
        })
    }
}

/// A file being written under a quota.
pub(crate) struct QuotaFile {
    inner: Option<Box<dyn FileHandle>>,
    quota: Quota,
    before: Option<u64>,
    truncate: bool,
    new_file: bool,
    /// The furthest byte written (or the size at open, when appending or resuming).
    extent: AtomicU64,
    /// Bytes reserved so far.
    reserved: AtomicU64,
}

impl QuotaFile {
    fn inner(&self) -> FsResult<&dyn FileHandle> {
        self.inner.as_deref().ok_or(FsError::Unsupported("a closed file"))
    }

    /// What the file will count for once complete, beyond what its previous version counts.
    fn needs(&self, extent: u64) -> u64 {
        if self.truncate || self.new_file {
            extent
        } else {
            extent.saturating_sub(self.before.unwrap_or(0))
        }
    }
}

#[async_trait]
impl FileHandle for QuotaFile {
    async fn read_at(&self, offset: u64, len: u32) -> FsResult<Bytes> {
        self.inner()?.read_at(offset, len).await
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> FsResult<()> {
        let end = offset.saturating_add(data.len() as u64);
        let extent = self.extent.fetch_max(end, Ordering::AcqRel).max(end);
        let want = self.needs(extent);
        let have = self.reserved.load(Ordering::Acquire);
        if want > have {
            self.quota.tracker.reserve_bytes(self.quota.limits, want - have)?;
            self.reserved.fetch_add(want - have, Ordering::AcqRel);
        }
        self.inner()?.write_at(offset, data).await
    }

    async fn metadata(&self) -> FsResult<Metadata> {
        self.inner()?.metadata().await
    }

    async fn set_metadata(&self, attrs: &SetAttrs) -> FsResult<()> {
        self.inner()?.set_metadata(attrs).await
    }

    async fn sync(&self) -> FsResult<()> {
        self.inner()?.sync().await
    }

    async fn close(mut self: Box<Self>) -> FsResult<()> {
        let inner = self.inner.take().ok_or(FsError::Unsupported("a closed file"))?;
        let r = inner.close().await;
        let reserved = self.reserved.swap(0, Ordering::AcqRel);
        self.quota.tracker.release(reserved, self.new_file);
        self.new_file = false;
        if r.is_ok() {
            let extent = self.extent.load(Ordering::Acquire);
            let after = if self.truncate { extent } else { extent.max(self.before.unwrap_or(0)) };
            self.quota.tracker.changed(self.before, Some(after));
        }
        r
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(inner) = self.inner.take() {
            inner.abort().await;
        }
    }
}

impl Drop for QuotaFile {
    fn drop(&mut self) {
        // Aborted or dropped: the upload is undone, and so is its reservation.
        let reserved = self.reserved.swap(0, Ordering::AcqRel);
        self.quota.tracker.release(reserved, self.new_file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_and_changes() {
        let t = Tracker::new(Usage { bytes: 100, files: 2 });
        let limits = Limits { bytes: Some(150), files: Some(3) };
        t.reserve_bytes(limits, 50).expect("exactly the limit");
        assert_eq!(t.reserve_bytes(limits, 1).err().map(|e| e.to_string()), Some(FsError::QuotaExceeded.to_string()));
        t.release(50, false);
        t.reserve_file(limits).expect("the third file");
        assert!(t.reserve_file(limits).is_err(), "a fourth would pass the file limit");
        t.release(0, true);
        t.changed(None, Some(30));
        assert_eq!(t.used(), Usage { bytes: 130, files: 3 });
        t.changed(Some(30), None);
        t.changed(Some(100), Some(10));
        assert_eq!(t.used(), Usage { bytes: 10, files: 2 });
    }
}
