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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes written between two background flushes.
const STEP: u64 = 32 * 1024 * 1024;

/// Background flushes running at once in the whole process. Each one holds a blocking-pool thread for
/// as long as the disk takes; with thousands of uploads at once, uncapped flushes could take the threads
/// that every other file operation needs. Past the cap a flush is simply skipped (it is only a head
/// start for the kernel's own writeback).
const MAX_FLUSHES: usize = 4;
static FLUSHES: FlushSlots = FlushSlots::new(MAX_FLUSHES);

/// A counting limit that never waits: `try_take` either gets a slot or says no.
struct FlushSlots {
    max: usize,
    taken: AtomicUsize,
}

/// A taken slot, given back on drop.
struct Slot(&'static FlushSlots);

impl FlushSlots {
    const fn new(max: usize) -> Self {
        FlushSlots { max, taken: AtomicUsize::new(0) }
    }

    fn try_take(&'static self) -> Option<Slot> {
        let mut now = self.taken.load(Ordering::Relaxed);
        loop {
            if now >= self.max {
                return None;
            }
            match self.taken.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Slot(self)),
                Err(actual) => now = actual,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

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
        let Some(slot) = FLUSHES.try_take() else {
            self.running.store(false, Ordering::Release);
            return;
        };
        self.flushed_to.fetch_max(end, Ordering::Relaxed);
        let (file, this) = (Arc::clone(file), Arc::clone(self));
        // Its own blocking-pool thread, so that this write returns at once.
        drop(rt.spawn_blocking(move || {
            let _ = rustix::fs::fdatasync(&*file);
            this.running.store(false, Ordering::Release);
            drop(slot);
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_slots_stop_at_the_cap_and_come_back() {
        static SLOTS: FlushSlots = FlushSlots::new(2);
        let a = SLOTS.try_take();
        let b = SLOTS.try_take();
        assert!(a.is_some() && b.is_some());
        assert!(SLOTS.try_take().is_none(), "a third flush must be skipped");
        drop(a);
        assert!(SLOTS.try_take().is_some(), "a finished flush frees its slot");
    }
}
