//! One upload in progress on the local backend: how it started, and how it is committed or undone.
//!
//! See [`super::uploads`] for the two modes. Every transition happens here: [`Pending::commit`] when
//! the client closes the file after a complete upload, [`Pending::abandon`] when the upload is cut off
//! (connection lost, failed write, TLS data connection ended without close_notify, or a handle simply
//! dropped), [`Pending::detach`] when the client removes the name it is uploading, and
//! [`Pending::supersede`] when a newer upload of the same name takes over.
//!
//! Renames that put a file under the client's name use `renameat2` flags (exchange, no-replace) on the
//! directory handle, so that a file another session renamed onto the name meanwhile is never clobbered:
//! operations outside uploads do not take [`Uploads::steps`]. Only renames run under that lock; deleting
//! a big file (freeing its blocks can take a while) happens after it is released.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cap_std::fs::Dir;
use rustix::fs::RenameFlags;

use super::journal::{is_inode, Entry, Kind};
use super::uploads::{Key, Uploads};
use super::util::{is_not_found, temp_name};
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

fn shown(name: &OsStr) -> String {
    String::from_utf8_lossy(name.as_bytes()).escape_debug().to_string()
}

fn remove_quietly(dir: &Dir, name: &OsStr, what: &str) {
    if let Err(e) = dir.remove_file(name) {
        if !is_not_found(&e) {
            tracing::warn!(file = %shown(name), "could not remove {what}: {e}");
        }
    }
}

/// `renameat2` on names in one directory.
fn rename_with(dir: &Dir, from: &OsStr, to: &OsStr, flags: RenameFlags) -> io::Result<()> {
    rustix::fs::renameat_with(dir, from, dir, to, flags).map_err(io::Error::from)
}

/// What an undo leaves to do after the lock is released: deleting a file nobody needs any more.
#[must_use]
pub(super) struct Leftover(Option<OsString>);

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

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the state from `Open` to `to`; the previous state otherwise (nothing changes then).
    fn leave_open(&self, to: State) -> Result<(), State> {
        let mut s = self.state();
        if *s != State::Open {
            return Err(*s);
        }
        *s = to;
        Ok(())
    }

    fn unregister(&self) {
        self.uploads.unregister(&self.key, self);
    }

    fn forget_entry(&self) {
        if let Some(e) = &self.entry {
            e.remove();
        }
    }

    fn delete(&self, leftover: Leftover) {
        if let Some(name) = leftover.0 {
            remove_quietly(&self.dir, &name, "a file left by an upload");
        }
    }

    /// The upload completed: make it the file under its name. Blocking. On error the previous file is
    /// given back, as if the upload had been cut off.
    pub(super) fn commit(&self) -> FsResult<()> {
        let steps = self.uploads.steps();
        match self.leave_open(State::Finished) {
            Ok(()) => {}
            Err(State::Superseded) => {
                return Err(FsError::Io(io::Error::other(
                    "a newer upload of this file started before this one completed, and replaced it",
                )))
            }
            Err(_) => return Ok(()),
        }
        self.unregister();
        let result = match self.kind {
            Kind::New => Ok(Leftover(None)),
            // The old version is no longer needed; deleted once the lock is released.
            Kind::Replace => Ok(Leftover(Some(self.aux.clone()))),
            Kind::Atomic => self.commit_atomic(),
        };
        let (result, leftover) = match result {
            Ok(l) => (Ok(()), l),
            Err(e) => match self.undo() {
                Ok(l) => (Err(e), l),
                Err(()) => {
                    drop(steps);
                    return Err(e);
                }
            },
        };
        drop(steps);
        self.delete(leftover);
        self.forget_entry();
        result
    }

    fn commit_atomic(&self) -> FsResult<Leftover> {
        if self.exclusive {
            // No-replace: an exclusive upload never replaces a file that somebody created meanwhile.
            return match rename_with(&self.dir, &self.aux, &self.name, RenameFlags::NOREPLACE) {
                Ok(()) => Ok(Leftover(None)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(FsError::AlreadyExists),
                Err(e) => Err(e.into()),
            };
        }
        // rename(2) replaces the target atomically: readers see either the old file or the new one.
        self.dir.rename(&self.aux, &self.dir, &self.name)?;
        Ok(Leftover(None))
    }

    /// The upload was cut off: give the previous state back. Blocking. Errors are logged: there is
    /// nobody left to answer. An undo that fails keeps its journal entry, so the next start retries it.
    pub(super) fn abandon(&self) {
        let steps = self.uploads.steps();
        if self.leave_open(State::Finished).is_err() {
            return;
        }
        self.unregister();
        let undone = self.undo();
        drop(steps);
        match undone {
            Ok(leftover) => {
                self.delete(leftover);
                self.forget_entry();
            }
            Err(()) => tracing::warn!(
                file = %shown(&self.name),
                "a cut-off upload could not be undone now; the next start of the server will retry"
            ),
        }
    }

    /// Puts the previous state back. The caller holds [`Uploads::steps`].
    fn undo(&self) -> Result<Leftover, ()> {
        let fail = |what: &str, e: io::Error| {
            tracing::warn!(file = %shown(&self.name), "upload undo: could not {what}: {e}");
        };
        match self.kind {
            Kind::New => {
                if self.uploads.policy.keep_partial {
                    return Ok(Leftover(None));
                }
                // Move the name aside first, then look: only the file this upload created goes, never one
                // that another session put under the name since.
                let aside = temp_name(self.name.as_bytes());
                match rename_with(&self.dir, &self.name, &aside, RenameFlags::NOREPLACE) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Leftover(None)),
                    Err(e) => {
                        fail("move the partial file aside", e);
                        return Err(());
                    }
                }
                if is_inode(&self.dir, Path::new(&aside), self.ino) {
                    return Ok(Leftover(Some(aside)));
                }
                if let Err(e) = rename_with(&self.dir, &aside, &self.name, RenameFlags::NOREPLACE) {
                    fail("put back a file that replaced the partial one", e);
                }
                Ok(Leftover(None))
            }
            Kind::Replace => {
                // Swap the previous version and whatever is under the name, in one step.
                match rename_with(&self.dir, &self.aux, &self.name, RenameFlags::EXCHANGE) {
                    Ok(()) => {
                        if is_inode(&self.dir, Path::new(&self.aux), self.ino) {
                            // The partial file is now the hidden one.
                            return Ok(Leftover(Some(self.aux.clone())));
                        }
                        // Another session put its own file under the name meanwhile: that one wins.
                        if let Err(e) = rename_with(&self.dir, &self.aux, &self.name, RenameFlags::EXCHANGE) {
                            fail("give the name back to a newer file", e);
                            return Err(());
                        }
                        Ok(Leftover(Some(self.aux.clone())))
                    }
                    // The client removed or renamed the partial file: the previous version fills the gap.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        match rename_with(&self.dir, &self.aux, &self.name, RenameFlags::NOREPLACE) {
                            Ok(()) => Ok(Leftover(None)),
                            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Leftover(Some(self.aux.clone()))),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Leftover(None)),
                            Err(e) => {
                                fail("restore the previous version", e);
                                Err(())
                            }
                        }
                    }
                    // A filesystem without RENAME_EXCHANGE: check, then rename over (a small race accepted).
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                        if is_inode(&self.dir, Path::new(&self.name), self.ino) {
                            self.dir.rename(&self.aux, &self.dir, &self.name).map(|()| Leftover(None)).map_err(|e| {
                                fail("restore the previous version", e);
                            })
                        } else {
                            Ok(Leftover(Some(self.aux.clone())))
                        }
                    }
                    Err(e) => {
                        fail("restore the previous version", e);
                        Err(())
                    }
                }
            }
            Kind::Atomic => Ok(Leftover(Some(self.aux.clone()))),
        }
    }

    /// Whether this upload is still running and its file is the one under its name.
    pub(super) fn holds_name(&self) -> bool {
        *self.state() == State::Open
            && self.kind != Kind::Atomic
            && is_inode(&self.dir, Path::new(&self.name), self.ino)
    }

    /// A newer upload of the same name takes over this one's undo: returns what this upload would have
    /// restored (its kind and backup name), or `None` if it is no longer running. The caller holds
    /// [`Uploads::steps`] and has journalled the takeover first; this upload's own entry goes. Its
    /// CLOSE will fail: its data is no longer under the name.
    pub(super) fn supersede(&self) -> Option<(Kind, OsString)> {
        self.leave_open(State::Superseded).ok()?;
        self.unregister();
        self.forget_entry();
        Some((self.kind, self.aux.clone()))
    }

    /// The client removes the name being uploaded: the hidden backup or temporary file goes too, so
    /// nothing outlives what the client sees. The caller holds [`Uploads::steps`], removes the name
    /// itself, then deletes the returned leftover once the lock is released.
    pub(super) fn detach(&self) -> Leftover {
        if self.leave_open(State::Detached).is_err() {
            return Leftover(None);
        }
        self.unregister();
        self.forget_entry();
        match self.kind {
            Kind::New => Leftover(None),
            Kind::Replace | Kind::Atomic => Leftover(Some(self.aux.clone())),
        }
    }

    /// Deletes what [`Pending::detach`] left; call without the lock.
    pub(super) fn finish_detach(&self, leftover: Leftover) {
        self.delete(leftover);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // The last handle went without close or abort (a session torn down): the upload was cut off.
        // `LocalFile`'s drop normally hands this to the blocking pool first; here it is only the fallback.
        self.abandon();
    }
}
