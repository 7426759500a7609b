//! How the local backend writes uploads, and the uploads in progress in this process.
//!
//! Two modes, chosen by the admin (`[uploads] mode`):
//!
//! - [`UploadMode::Standard`] (the default): an upload is visible under its own name from the OPEN that
//!   creates or truncates it, as on OpenSSH, so clients that stat, list or re-open the file they are
//!   writing (sshfs and every FUSE or POSIX-style client) work. Nothing is lost when it is cut off:
//!   - a new file is written in place; cut off, it is removed (or kept for resume with `keep_partial`);
//!   - a file that replaces another first moves the old one aside to a hidden backup name, then writes
//!     the new one in place; complete, the backup is deleted; cut off, the backup is renamed back over
//!     the partial file, so the previous version returns byte for byte.
//! - [`UploadMode::Atomic`]: the upload goes to a hidden temporary file that is renamed over the target
//!   when it completes, so nobody ever sees a partial file under the real name (drop folders whose
//!   downstream jobs pick up every file that appears). Clients that stat or re-open a file while writing
//!   it (sshfs) do not suit this mode.
//!
//! Every pending upload is recorded in a small journal file (see [`super::journal`]) so that one cut
//! off by a crash or `kill -9` of the server is finished the same way at the next start. In memory, a
//! registry of pending uploads lets a REMOVE of a name being uploaded also drop its hidden backup or
//! temporary file, so that no hidden file outlives what the client sees.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use super::journal::Journal;
use super::pending::Pending;

/// Where an upload's bytes go until it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadMode {
    /// Visible under its name from the first byte; cut-off uploads are undone.
    #[default]
    Standard,
    /// Hidden until complete, then renamed into place.
    Atomic,
}

/// The admin's choices for uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadPolicy {
    pub mode: UploadMode,
    /// Standard mode: keep a cut-off *new* file for the client to resume, instead of removing it.
    /// A cut-off replacement always gives the previous file back.
    pub keep_partial: bool,
    /// Bits removed from the mode of every file and directory a client creates (`[uploads] umask`).
    pub umask: u32,
}

/// Group and others may read new files and enter new directories, not write them.
pub const DEFAULT_UMASK: u32 = 0o022;

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy { mode: UploadMode::Standard, keep_partial: false, umask: DEFAULT_UMASK }
    }
}

/// Identifies a name in a directory, whatever path it was reached by: the directory's device and inode
/// and the name in it.
pub(super) type Key = (u64, u64, Vec<u8>);

/// Shared by every [`super::LocalFs`] of the process: the policy, the journal and the pending uploads.
#[derive(Default)]
pub struct Uploads {
    pub(super) policy: UploadPolicy,
    pub(super) journal: Option<Journal>,
    pending: Mutex<HashMap<Key, Weak<Pending>>>,
    /// Held while an upload changes its directory (start, commit, undo, removal), so that two uploads of
    /// one name (a client that reconnects and retries before the server has noticed the first one was
    /// cut off) never interleave their renames. Each hold is a few syscalls. Never drop a `Pending`
    /// while holding it: its drop takes it too.
    steps: Mutex<()>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Uploads {
    /// Uploads under `policy`, journalled in `journal_dir` (created if missing) when one is given.
    pub fn new(policy: UploadPolicy, journal_dir: Option<PathBuf>) -> std::io::Result<Arc<Uploads>> {
        let journal = journal_dir.map(Journal::open).transpose()?;
        Ok(Arc::new(Uploads { policy, journal, pending: Mutex::default(), steps: Mutex::default() }))
    }

    pub fn policy(&self) -> UploadPolicy {
        self.policy
    }

    /// Finishes every upload a previous run of the server left pending (crash, `kill -9`, power cut):
    /// restores replaced files, removes partial new files (unless `keep_partial`) and temporary files.
    /// Returns one line per upload, for the log. Blocking; call it before serving.
    pub fn recover(&self) -> Vec<String> {
        match &self.journal {
            Some(j) => j.recover(self.policy),
            None => Vec::new(),
        }
    }

    pub(super) fn steps(&self) -> std::sync::MutexGuard<'_, ()> {
        self.steps.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn register(&self, key: Key, p: &Arc<Pending>) {
        if let Ok(mut map) = self.pending.lock() {
            map.insert(key, Arc::downgrade(p));
        }
    }

    /// Forgets `p`, unless a newer upload of the same name has taken its place in the registry.
    pub(super) fn unregister(&self, key: &Key, p: &Pending) {
        if let Ok(mut map) = self.pending.lock() {
            if map.get(key).is_some_and(|w| std::ptr::eq(w.as_ptr(), p)) {
                map.remove(key);
            }
        }
    }

    /// The upload pending under `name`, if any is (cheap when none is: one map lookup by name first).
    pub(super) fn lookup(&self, key: &Key) -> Option<Arc<Pending>> {
        let map = self.pending.lock().ok()?;
        map.get(key).and_then(Weak::upgrade)
    }

    /// Whether any upload of this name is pending anywhere, so that the common case skips the directory
    /// lookup that an exact [`Uploads::lookup`] needs.
    pub(super) fn any_named(&self, name: &[u8]) -> bool {
        match self.pending.lock() {
            Ok(map) => !map.is_empty() && map.keys().any(|(_, _, n)| n == name),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OpenOptions, VPath, Vfs};

    #[tokio::test]
    async fn finished_uploads_leave_the_registry() {
        // One entry per upload in progress: one left behind per finished upload would grow for ever.
        let dir = std::env::temp_dir().join(format!("ferry-uploads-registry-{}", std::process::id()));
        let uploads = Uploads::new(UploadPolicy::default(), None).expect("uploads");
        let fs = super::super::LocalFs::with_uploads(&dir, uploads.clone()).expect("fs");
        let put = OpenOptions { write: true, create: true, truncate: true, ..Default::default() };
        let path = |n: &str| VPath::resolve(&VPath::root(), n.as_bytes());
        for name in ["closed", "replaced", "replaced"] {
            let h = fs.open(&path(name), put).await.expect("open");
            h.write_at(0, bytes::Bytes::from_static(b"x")).await.expect("write");
            h.close().await.expect("close");
        }
        let h = fs.open(&path("aborted"), put).await.expect("open");
        assert_eq!(uploads.pending.lock().expect("map").len(), 1, "registered while running");
        h.abort().await;
        assert!(uploads.pending.lock().expect("map").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
