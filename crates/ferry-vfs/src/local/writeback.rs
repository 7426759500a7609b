//! Writing an upload's data to disk while it arrives, instead of all at once when it is committed.
//!
//! Renaming a new file over an existing one makes ext4 start writeback of the whole new file
//! inside rename(2) (`auto_da_alloc`: so that a crash right after cannot leave an empty file in place of
//! the old one). For a 1 GiB upload that was measured at 0.45 s spent in the rename, after the last byte
//! arrived and before the client gets its "transfer complete". Flushing in the background every few
//! MiB while the upload runs does the same work while the network is still busy, so the commit finds
//! the data on its way to disk already; it also keeps a fast upload from piling up gigabytes of dirty
//! page cache that the kernel would then write out in one burst.

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes written between two background flushes.
const STEP: u64 = 32 * 1024 * 1024;

/// The background-flush state of one upload. At most one flush runs at a time.
#[derive(Default)]
pub(super) struct Writeback {
    /// Highest end offset that a started flush covers.
    flushed_to: AtomicU64,
    running: AtomicBool,
}

impl Writeback {
    /// Called on the blocking pool after a write ending at `end`: starts a background `fdatasync` when
    /// enough new data has been written since the last one and none is running. Best effort: a failed
    /// flush changes nothing (the data stays in the page cache, and a real I/O error shows up again in
    /// the next write or on close).
    pub(super) fn wrote(self: &Arc<Self>, file: &Arc<File>, end: u64) {
        if end < self.flushed_to.load(Ordering::Relaxed).saturating_add(STEP) {
            return;
        }
        // Blocking-pool threads run inside the runtime; outside one (never in the server) skip the flush
        // rather than block the writer.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.flushed_to.fetch_max(end, Ordering::Relaxed);
        let (file, this) = (Arc::clone(file), Arc::clone(self));
        // Its own blocking-pool thread, so that this write returns at once.
        drop(rt.spawn_blocking(move || {
            let _ = rustix::fs::fdatasync(&*file);
            this.running.store(false, Ordering::Release);
        }));
    }
}
