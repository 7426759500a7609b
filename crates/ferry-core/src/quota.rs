//! Quotas per user: bytes and regular files. The tree is walked once, at the user's first login with a
//! quota since the server started; from then on the gate keeps the count as files are written, removed
//! and replaced, for every session of the user whatever the protocol. An upload reserves what it writes
//! as it goes, so a write that would pass the limit fails at once ("quota exceeded", FTP 552) and the
//! upload is undone as any failed upload is: the previous file stays.

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
            written: Mutex::new(Written { extent: start, reserved: 0 }),
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
    written: Mutex<Written>,
}

/// How far a file under a quota has been written, and what it has reserved for that.
#[derive(Debug)]
struct Written {
    /// The furthest byte written (or the size at open, when appending or resuming).
    extent: u64,
    /// Bytes reserved so far.
    reserved: u64,
}

impl QuotaFile {
    fn written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

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
        {
            // One lock for both: pipelined writes must not reserve the same bytes twice, and a write the
            // quota refuses must not move the extent (a smaller write that fits is still allowed, and the
            // count at close is what was written).
            let mut w = self.written();
            let extent = w.extent.max(end);
            let want = self.needs(extent);
            if want > w.reserved {
                self.quota.tracker.reserve_bytes(self.quota.limits, want - w.reserved)?;
                w.reserved = want;
            }
            w.extent = extent;
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
        let (reserved, extent) = {
            let mut w = self.written();
            (std::mem::take(&mut w.reserved), w.extent)
        };
        self.quota.tracker.release(reserved, self.new_file);
        self.new_file = false;
        if r.is_ok() {
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
        let reserved = std::mem::take(&mut self.written().reserved);
        self.quota.tracker.release(reserved, self.new_file);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A file that only remembers whether it was aborted.
    #[derive(Default)]
    struct Upload(Arc<AtomicBool>);

    #[async_trait]
    impl FileHandle for Upload {
        async fn read_at(&self, _: u64, _: u32) -> FsResult<Bytes> {
            Ok(Bytes::new())
        }
        async fn write_at(&self, _: u64, _: Bytes) -> FsResult<()> {
            Ok(())
        }
        async fn metadata(&self) -> FsResult<Metadata> {
            Err(FsError::Unsupported("metadata"))
        }
        async fn set_metadata(&self, _: &SetAttrs) -> FsResult<()> {
            Ok(())
        }
        async fn sync(&self) -> FsResult<()> {
            Ok(())
        }
        async fn close(self: Box<Self>) -> FsResult<()> {
            Ok(())
        }
        async fn abort(self: Box<Self>) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// The `(bytes, files)` changes the database got.
    type Sent = Arc<Mutex<Vec<(i64, i64)>>>;

    /// A quota of `bytes` and `files` over `used`, whose changes are also listed (as the database gets
    /// them).
    fn quota(used: (u64, u64), bytes: u64, files: u64) -> (Quota, Sent) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let sink_sent = sent.clone();
        let sink: Sink = Box::new(move |b, f| sink_sent.lock().expect("sink").push((b, f)));
        let tracker = Arc::new(Tracker::with_sink(Usage { bytes: used.0, files: used.1 }, sink));
        (Quota { limits: Limits { bytes: Some(bytes), files: Some(files) }, tracker }, sent)
    }

    fn data(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    fn sent(s: &Sent) -> Vec<(i64, i64)> {
        s.lock().expect("sink").clone()
    }

    #[tokio::test]
    async fn a_new_file_counts_its_furthest_byte_once_complete() {
        let (q, changes) = quota((0, 0), 20, 5);
        assert_eq!(q.tracker.used(), Usage { bytes: 0, files: 0 }, "the sink's tracker starts from the count");
        let f = Box::new(q.file(Box::new(Upload::default()), None, true).expect("open"));
        f.write_at(10, data(3)).await.expect("a write past a hole");
        f.write_at(0, data(5)).await.expect("filling the hole needs nothing more");
        assert!(matches!(f.write_at(13, data(8)).await, Err(FsError::QuotaExceeded)), "21 bytes");
        f.write_at(13, data(7)).await.expect("20 bytes: exactly the limit");
        f.close().await.expect("close");
        assert_eq!(q.tracker.used(), Usage { bytes: 20, files: 1 });
        assert_eq!(sent(&changes), vec![(20, 1)]);
        let other = Box::new(q.file(Box::new(Upload::default()), None, true).expect("a second file"));
        assert!(matches!(other.write_at(0, data(1)).await, Err(FsError::QuotaExceeded)), "the reservation was settled");
    }

    #[tokio::test]
    async fn a_resume_needs_only_what_it_adds_and_a_replacement_its_whole_size() {
        let (q, changes) = quota((10, 1), 15, 5);
        // REST 8 + STOR on a 10-byte file: bytes 8..14 make the file 14, 4 more than it was.
        let resume = Box::new(q.file(Box::new(Upload::default()), Some(10), false).expect("open"));
        resume.write_at(8, data(6)).await.expect("4 more bytes");
        resume.close().await.expect("close");
        assert_eq!(q.tracker.used(), Usage { bytes: 14, files: 1 });
        // The previous version stays, and counted, until the replacement completes.
        let replace = Box::new(q.file(Box::new(Upload::default()), Some(14), true).expect("open"));
        assert!(matches!(replace.write_at(0, data(2)).await, Err(FsError::QuotaExceeded)), "14 + 2 > 15");
        replace.write_at(0, data(1)).await.expect("14 + 1");
        replace.close().await.expect("close");
        assert_eq!(q.tracker.used(), Usage { bytes: 1, files: 1 });
        assert_eq!(sent(&changes), vec![(4, 0), (-13, 0)]);
    }

    #[tokio::test]
    async fn an_aborted_or_dropped_upload_gives_its_room_back_and_counts_nothing() {
        let (q, changes) = quota((0, 0), 10, 1);
        let aborted = Arc::new(AtomicBool::new(false));
        let first = Box::new(q.file(Box::new(Upload(aborted.clone())), None, true).expect("open"));
        first.write_at(0, data(8)).await.expect("8 bytes");
        assert!(matches!(q.file(Box::new(Upload::default()), None, true), Err(FsError::QuotaExceeded)), "1 file");
        first.abort().await;
        assert!(aborted.load(Ordering::Relaxed), "the upload underneath was undone");
        let second = Box::new(q.file(Box::new(Upload::default()), None, true).expect("the file's room is back"));
        second.write_at(0, data(10)).await.expect("and all the bytes");
        drop(second);
        let third = Box::new(q.file(Box::new(Upload::default()), None, true).expect("after a drop too"));
        third.write_at(0, data(10)).await.expect("10 bytes");
        assert_eq!(q.tracker.used(), Usage { bytes: 0, files: 0 });
        assert!(sent(&changes).is_empty(), "nothing reached the database: {:?}", sent(&changes));
    }

    #[test]
    fn only_real_changes_reach_the_database_and_other_nodes_counts_replace_ours() {
        let (q, changes) = quota((5, 1), 100, 10);
        q.tracker.changed(Some(5), Some(5));
        q.tracker.changed(None, Some(0));
        q.tracker.changed(Some(3), None);
        assert_eq!(sent(&changes), vec![(0, 1), (-3, -1)]);
        q.tracker.set_used(Usage { bytes: 70, files: 4 });
        assert_eq!(q.tracker.used(), Usage { bytes: 70, files: 4 });
    }

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
