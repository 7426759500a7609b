//! One upload in progress on the local backend: how it started, and how it is committed or undone.
//!
//! See [`super::uploads`] for the two modes. Every transition happens here: [`Pending::commit`] when
//! the client closes the file after a complete upload, [`Pending::abandon`] when the upload is cut off
//! (connection lost, failed write, TLS data connection ended without close_notify, or a handle simply
//! dropped), and [`Pending::detach`] when the client removes the name it is uploading.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

use cap_std::fs::Dir;

use super::journal::{is_inode, Entry, Kind};
use super::uploads::{Key, Uploads};
use super::util::is_not_found;
use crate::{FsError, FsResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The client removed the name while uploading: nothing is left to commit or undo.
    Detached,
    /// A newer upload of the same name took over: it owns the previous version now, and this one's
    /// data is no longer under the name (the newest upload wins, as the last rename would).
    Superseded,
    Finished,
}

pub(super) struct Pending {
    pub(super) uploads: Arc<Uploads>,
    pub(super) key: Key,
    /// The target's directory, held open so that every step refers to the same directory even if it is
    /// renamed meanwhile, and no step walks a path.
    pub(super) dir: Dir,
    pub(super) name: OsString,
    pub(super) kind: Kind,
    /// The hidden backup (replace) or temporary file (atomic).
    pub(super) aux: OsString,
    /// Device and inode of the file being written.
    pub(super) ino: (u64, u64),
    /// Atomic mode with O_EXCL: the target must still not exist at commit.
    pub(super) exclusive: bool,
    pub(super) entry: Option<Entry>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("name", &self.name).field("kind", &self.kind).finish_non_exhaustive()
    }
}

fn remove_quietly(dir: &Dir, name: &OsStr, what: &str) {
    if let Err(e) = dir.remove_file(name) {
        if !is_not_found(&e) {
            tracing::warn!(file = %String::from_utf8_lossy(name.as_bytes()).escape_debug(), "could not remove {what}: {e}");
        }
    }
}

impl Pending {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        uploads: Arc<Uploads>,
        key: Key,
        dir: Dir,
        name: OsString,
        kind: Kind,
        aux: OsString,
        ino: (u64, u64),
        exclusive: bool,
        entry: Option<Entry>,
    ) -> Arc<Pending> {
        let p = Arc::new(Pending {
            uploads,
            key,
            dir,
            name,
            kind,
            aux,
            ino,
            exclusive,
            entry,
            state: Mutex::new(State::Open),
        });
        p.uploads.register(p.key.clone(), &p);
        p
    }

    /// Takes the state from `Open` to `to`; false if it was not open (already committed, undone or
    /// detached), in which case there is nothing to do.
    fn leave_open(&self, to: State) -> bool {
        let mut s = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *s != State::Open {
            return false;
        }
        *s = to;
        true
    }

    fn forget(&self) {
        self.uploads.unregister(&self.key, self);
        if let Some(e) = &self.entry {
            e.remove();
        }
    }

    /// The upload completed: make it the file under its name. Blocking. On error the previous file is
    /// given back, as if the upload had been cut off.
    pub(super) fn commit(&self) -> FsResult<()> {
        let _steps = self.uploads.steps();
        if !self.leave_open(State::Finished) {
            return Ok(());
        }
        let result = match self.kind {
            Kind::New => Ok(()),
            Kind::Replace => {
                remove_quietly(&self.dir, &self.aux, "the previous version of an uploaded file");
                Ok(())
            }
            Kind::Atomic => self.commit_atomic(),
        };
        if result.is_err() {
            self.undo();
        }
        self.forget();
        result
    }

    fn commit_atomic(&self) -> FsResult<()> {
        if self.exclusive {
            // link(2) fails if the target exists, so an exclusive upload can never replace a file that
            // somebody created while it was in progress. The temporary name is then dropped by undo().
            match self.dir.hard_link(&self.aux, &self.dir, &self.name) {
                Ok(()) => {
                    remove_quietly(&self.dir, &self.aux, "an upload's temporary file");
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(FsError::AlreadyExists),
                // A filesystem without hard links: fall back to check-then-rename (small race accepted).
                Err(_) => match self.dir.symlink_metadata(&self.name) {
                    Ok(_) => return Err(FsError::AlreadyExists),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                },
            }
        }
        // rename(2) replaces the target atomically: readers see either the old file or the new one.
        self.dir.rename(&self.aux, &self.dir, &self.name)?;
        Ok(())
    }

    /// The upload was cut off: give the previous state back. Blocking. Errors are logged: there is
    /// nobody left to answer.
    pub(super) fn abandon(&self) {
        let _steps = self.uploads.steps();
        if !self.leave_open(State::Finished) {
            return;
        }
        self.undo();
        self.forget();
    }

    fn undo(&self) {
        let name = std::path::Path::new(&self.name);
        match self.kind {
            Kind::New => {
                // Only the file this upload created, never one that took its name since.
                if !self.uploads.policy.keep_partial && is_inode(&self.dir, name, self.ino) {
                    remove_quietly(&self.dir, &self.name, "a partial upload");
                }
            }
            Kind::Replace => {
                let ours_or_gone = match self.dir.symlink_metadata(name) {
                    Err(e) if is_not_found(&e) => true,
                    _ => is_inode(&self.dir, name, self.ino),
                };
                if ours_or_gone {
                    // rename(2) puts the previous version back over the partial one in one step.
                    if let Err(e) = self.dir.rename(&self.aux, &self.dir, &self.name) {
                        tracing::warn!(
                            file = %String::from_utf8_lossy(self.name.as_bytes()).escape_debug(),
                            "could not restore the previous version of a file after a cut-off upload: {e}"
                        );
                    }
                } else {
                    // The client put something else under this name meanwhile: that wins.
                    remove_quietly(&self.dir, &self.aux, "the previous version of an uploaded file");
                }
            }
            Kind::Atomic => remove_quietly(&self.dir, &self.aux, "an upload's temporary file"),
        }
    }

    /// Whether this upload is still running and its file is the one under its name.
    pub(super) fn holds_name(&self) -> bool {
        let open = matches!(self.state.lock().map(|s| *s), Ok(State::Open));
        open && self.kind != Kind::Atomic && is_inode(&self.dir, std::path::Path::new(&self.name), self.ino)
    }

    /// A newer upload of the same name takes over this one's undo: returns what this upload would have
    /// restored (its kind and backup name), or `None` if it is no longer running. The caller holds
    /// [`Uploads::steps`] and has journalled the takeover first; this upload's own entry goes.
    pub(super) fn supersede(&self) -> Option<(Kind, OsString)> {
        if !self.leave_open(State::Superseded) {
            return None;
        }
        self.forget();
        Some((self.kind, self.aux.clone()))
    }

    /// The client removes the name being uploaded: drop the hidden backup or temporary file too, so
    /// nothing outlives what the client sees. The caller holds [`Uploads::steps`] and then removes the
    /// name itself. Blocking.
    pub(super) fn detach(&self) {
        if !self.leave_open(State::Detached) {
            return;
        }
        match self.kind {
            Kind::New => {}
            Kind::Replace => remove_quietly(&self.dir, &self.aux, "the previous version of an uploaded file"),
            Kind::Atomic => remove_quietly(&self.dir, &self.aux, "an upload's temporary file"),
        }
        self.forget();
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A handle dropped without close or abort (a session torn down): the upload was cut off. One or
        // two syscalls, acceptable even on an async thread.
        self.abandon();
    }
}
