//! Transfers in progress across every session and protocol, so that a stopping server can wait for them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts open files across all sessions, so a stopping server can wait for running transfers.
#[derive(Default)]
pub struct Activity {
    open_files: AtomicUsize,
    changed: Notify,
}

impl Activity {
    pub fn open_files(&self) -> usize {
        self.open_files.load(Ordering::Acquire)
    }

    /// Resolves when no file is open anywhere.
    pub async fn idle(&self) {
        loop {
            let notified = self.changed.notified();
            if self.open_files() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Held while a file is open; dropping it marks the transfer finished.
pub struct FileGuard(Arc<Activity>);

impl FileGuard {
    pub fn new(a: &Arc<Activity>) -> Self {
        a.open_files.fetch_add(1, Ordering::AcqRel);
        FileGuard(a.clone())
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        self.0.open_files.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}
