//! The one gate every file operation of every protocol passes on its way to storage: it checks the user's
//! permission [`Rules`] (the same answer whichever protocol asks, with a log line for each denial) and
//! records what changed (delete, rename, mkdir, rmdir, symlink) on the event stream.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_vfs::{DirHandle, FileHandle, FsError, FsResult, FsStats, Metadata, OpenOptions, SetAttrs, VPath, Vfs};

use crate::event::{Event, Events, Who};
use crate::permissions::{Perm, PermSet, Rules};
use crate::quota::Quota;
use crate::throttle::{Throttle, ThrottledFile};

/// A user's storage as the protocols see it.
pub struct GatedVfs {
    inner: Arc<dyn Vfs>,
    who: Who,
    events: Arc<Events>,
    rules: Rules,
    /// The session's bandwidth limits, shared by all its files.
    up: Option<Arc<Throttle>>,
    down: Option<Arc<Throttle>>,
    /// The user's quota, shared by all their sessions.
    quota: Option<Quota>,
}

impl GatedVfs {
    pub fn new(inner: Arc<dyn Vfs>, who: Who, events: Arc<Events>, rules: Rules) -> GatedVfs {
        GatedVfs { inner, who, events, rules, up: None, down: None, quota: None }
    }

    /// Counts what the session writes and removes against the user's quota.
    pub fn with_quota(mut self, quota: Option<Quota>) -> GatedVfs {
        self.quota = quota;
        self
    }

    /// The size of the regular file at `path`, if there is one (for the quota's count).
    async fn file_size(&self, path: &VPath, follow: bool) -> Option<u64> {
        let meta = if follow { self.inner.metadata(path).await } else { self.inner.symlink_metadata(path).await };
        meta.ok().filter(|m| m.kind == ferry_vfs::FileKind::File).map(|m| m.size)
    }

    /// Limits the session's uploads and downloads to these rates (bytes per second).
    pub fn with_rates(mut self, up: Option<u64>, down: Option<u64>) -> GatedVfs {
        self.up = up.map(|r| Arc::new(Throttle::new(r)));
        self.down = down.map(|r| Arc::new(Throttle::new(r)));
        self
    }

    /// Allows `perm` at `path` or refuses it, with one log line.
    fn check(&self, perm: Perm, path: &VPath) -> FsResult<()> {
        check(&self.rules.at(path), perm, path, &self.who, &self.events)
    }

    /// What changing `attrs` at `path` needs (SETSTAT and lsetstat alike).
    fn check_attrs(&self, path: &VPath, attrs: &SetAttrs) -> FsResult<()> {
        let set = self.rules.at(path);
        attr_perms(attrs).into_iter().try_for_each(|perm| check(&set, perm, path, &self.who, &self.events))
    }

    /// What an open for writing needs: `upload` for a new file, `overwrite` for an existing one. Costs
    /// a stat only for users who may not do both.
    async fn check_write(&self, path: &VPath) -> FsResult<()> {
        let set = self.rules.at(path);
        if set.allows(Perm::Upload) && set.allows(Perm::Overwrite) {
            return Ok(());
        }
        let exists = match self.inner.symlink_metadata(path).await {
            Ok(_) => true,
            Err(FsError::NotFound) => false,
            Err(e) => return Err(e),
        };
        check(&set, if exists { Perm::Overwrite } else { Perm::Upload }, path, &self.who, &self.events)
    }

    /// Emits `event(who)` when `r` succeeded.
    fn after<T>(&self, r: FsResult<T>, event: impl FnOnce(Who) -> Event) -> FsResult<T> {
        if r.is_ok() {
            self.events.emit(event(self.who.clone()));
        }
        r
    }
}

fn shown(p: &VPath) -> String {
    p.display().to_string()
}

fn check(set: &PermSet, perm: Perm, path: &VPath, who: &Who, events: &Events) -> FsResult<()> {
    if set.allows(perm) {
        return Ok(());
    }
    events.emit(Event::Denied { who: who.clone(), perm: perm.name(), path: shown(path) });
    Err(FsError::PermissionDenied)
}

/// What changing `attrs` needs.
fn attr_perms(attrs: &SetAttrs) -> Vec<Perm> {
    let mut v = Vec::new();
    if attrs.size.is_some() {
        v.push(Perm::Overwrite);
    }
    if attrs.permissions.is_some() || attrs.uid_gid.is_some() {
        v.push(Perm::Chmod);
    }
    if attrs.times.is_some() {
        v.push(Perm::Times);
    }
    v
}

/// An open file behind the gate: attribute changes through the handle need the same permissions as
/// through the path.
struct GatedFile {
    inner: Box<dyn FileHandle>,
    path: VPath,
    set: PermSet,
    who: Who,
    events: Arc<Events>,
}

#[async_trait]
impl FileHandle for GatedFile {
    async fn read_at(&self, offset: u64, len: u32) -> FsResult<Bytes> {
        self.inner.read_at(offset, len).await
    }
    async fn write_at(&self, offset: u64, data: Bytes) -> FsResult<()> {
        self.inner.write_at(offset, data).await
    }
    async fn metadata(&self) -> FsResult<Metadata> {
        self.inner.metadata().await
    }
    async fn set_metadata(&self, attrs: &SetAttrs) -> FsResult<()> {
        // The handle's own upload may always be truncated: that is writing.
        for perm in attr_perms(attrs).into_iter().filter(|p| *p != Perm::Overwrite) {
            check(&self.set, perm, &self.path, &self.who, &self.events)?;
        }
        self.inner.set_metadata(attrs).await
    }
    async fn sync(&self) -> FsResult<()> {
        self.inner.sync().await
    }
    async fn close(self: Box<Self>) -> FsResult<()> {
        self.inner.close().await
    }
    async fn abort(self: Box<Self>) {
        self.inner.abort().await
    }
}

#[async_trait]
impl Vfs for GatedVfs {
    async fn metadata(&self, path: &VPath) -> FsResult<Metadata> {
        self.inner.metadata(path).await
    }

    async fn symlink_metadata(&self, path: &VPath) -> FsResult<Metadata> {
        self.inner.symlink_metadata(path).await
    }

    async fn open_dir(&self, path: &VPath) -> FsResult<Box<dyn DirHandle>> {
        self.check(Perm::List, path)?;
        self.inner.open_dir(path).await
    }

    async fn read_dir(&self, path: &VPath) -> FsResult<Vec<ferry_vfs::DirEntry>> {
        self.check(Perm::List, path)?;
        self.inner.read_dir(path).await
    }

    async fn open(&self, path: &VPath, opts: OpenOptions) -> FsResult<Box<dyn FileHandle>> {
        let writes = opts.write || opts.append || opts.create || opts.truncate;
        if opts.read || !writes {
            self.check(Perm::Download, path)?;
        }
        if writes && !self.rules.is_empty() {
            self.check_write(path).await?;
        }
        let before = match (&self.quota, writes) {
            (Some(_), true) => self.file_size(path, true).await,
            _ => None,
        };
        let truncate = opts.truncate;
        let mut inner = self.inner.open(path, opts).await?;
        if let (Some(quota), true) = (&self.quota, writes) {
            inner = Box::new(quota.file(inner, before, truncate)?);
        }
        let file: Box<dyn FileHandle> = if self.rules.is_empty() {
            inner
        } else {
            Box::new(GatedFile {
                inner,
                path: path.clone(),
                set: self.rules.at(path),
                who: self.who.clone(),
                events: self.events.clone(),
            })
        };
        if self.up.is_none() && self.down.is_none() {
            return Ok(file);
        }
        Ok(Box::new(ThrottledFile { inner: file, up: self.up.clone(), down: self.down.clone() }))
    }

    async fn create_dir(&self, path: &VPath, mode: Option<u32>) -> FsResult<()> {
        self.check(Perm::Mkdir, path)?;
        let r = self.inner.create_dir(path, mode).await;
        self.after(r, |who| Event::Mkdir { who, path: shown(path) })
    }

    async fn remove_dir(&self, path: &VPath) -> FsResult<()> {
        self.check(Perm::Rmdir, path)?;
        let r = self.inner.remove_dir(path).await;
        self.after(r, |who| Event::Rmdir { who, path: shown(path) })
    }

    async fn remove_file(&self, path: &VPath) -> FsResult<()> {
        self.check(Perm::Delete, path)?;
        let size = match &self.quota {
            Some(_) => self.file_size(path, false).await,
            None => None,
        };
        let r = self.inner.remove_file(path).await;
        if let (Some(q), Some(size), Ok(())) = (&self.quota, size, &r) {
            q.tracker.changed(Some(size), None);
        }
        self.after(r, |who| Event::Delete { who, path: shown(path) })
    }

    async fn rename(&self, from: &VPath, to: &VPath, overwrite: bool) -> FsResult<()> {
        self.check(Perm::Rename, from)?;
        self.check(Perm::Rename, to)?;
        // A rename over a file removes that file.
        let replaced = match &self.quota {
            Some(_) if from != to => self.file_size(to, false).await,
            _ => None,
        };
        let r = self.inner.rename(from, to, overwrite).await;
        if let (Some(q), Some(size), Ok(())) = (&self.quota, replaced, &r) {
            q.tracker.changed(Some(size), None);
        }
        self.after(r, |who| Event::Rename { who, from: shown(from), to: shown(to) })
    }

    async fn set_metadata(&self, path: &VPath, attrs: &SetAttrs) -> FsResult<()> {
        self.check_attrs(path, attrs)?;
        self.inner.set_metadata(path, attrs).await
    }

    async fn set_link_metadata(&self, path: &VPath, attrs: &SetAttrs) -> FsResult<()> {
        self.check_attrs(path, attrs)?;
        self.inner.set_link_metadata(path, attrs).await
    }

    async fn read_link(&self, path: &VPath) -> FsResult<Vec<u8>> {
        self.check(Perm::List, path)?;
        self.inner.read_link(path).await
    }

    async fn symlink(&self, target: &[u8], link: &VPath) -> FsResult<()> {
        self.check(Perm::Symlink, link)?;
        let r = self.inner.symlink(target, link).await;
        self.after(r, |who| Event::Symlink {
            who,
            target: String::from_utf8_lossy(target).into_owned(),
            link: shown(link),
        })
    }

    async fn hard_link(&self, existing: &VPath, link: &VPath) -> FsResult<()> {
        self.check(Perm::Symlink, link)?;
        self.check(Perm::Download, existing)?;
        self.inner.hard_link(existing, link).await
    }

    async fn canonicalize(&self, path: &VPath) -> FsResult<VPath> {
        self.inner.canonicalize(path).await
    }

    async fn stats(&self, path: &VPath) -> FsResult<FsStats> {
        self.inner.stats(path).await
    }
}
