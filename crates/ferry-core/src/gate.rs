//! The one gate every file operation of every protocol passes on its way to storage. It records what
//! changed (delete, rename, mkdir, rmdir, symlink) on the event stream, whichever protocol asked; the
//! per-user permission rules plug in here.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_vfs::{DirHandle, FileHandle, FsResult, FsStats, Metadata, OpenOptions, SetAttrs, VPath, Vfs};

use crate::event::{Event, Events, Who};

/// A user's storage as the protocols see it.
pub struct GatedVfs {
    inner: Arc<dyn Vfs>,
    who: Who,
    events: Arc<Events>,
}

impl GatedVfs {
    pub fn new(inner: Arc<dyn Vfs>, who: Who, events: Arc<Events>) -> GatedVfs {
        GatedVfs { inner, who, events }
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

#[async_trait]
impl Vfs for GatedVfs {
    async fn metadata(&self, path: &VPath) -> FsResult<Metadata> {
        self.inner.metadata(path).await
    }

    async fn symlink_metadata(&self, path: &VPath) -> FsResult<Metadata> {
        self.inner.symlink_metadata(path).await
    }

    async fn open_dir(&self, path: &VPath) -> FsResult<Box<dyn DirHandle>> {
        self.inner.open_dir(path).await
    }

    async fn read_dir(&self, path: &VPath) -> FsResult<Vec<ferry_vfs::DirEntry>> {
        self.inner.read_dir(path).await
    }

    async fn open(&self, path: &VPath, opts: OpenOptions) -> FsResult<Box<dyn FileHandle>> {
        self.inner.open(path, opts).await
    }

    async fn create_dir(&self, path: &VPath, mode: Option<u32>) -> FsResult<()> {
        let r = self.inner.create_dir(path, mode).await;
        self.after(r, |who| Event::Mkdir { who, path: shown(path) })
    }

    async fn remove_dir(&self, path: &VPath) -> FsResult<()> {
        let r = self.inner.remove_dir(path).await;
        self.after(r, |who| Event::Rmdir { who, path: shown(path) })
    }

    async fn remove_file(&self, path: &VPath) -> FsResult<()> {
        let r = self.inner.remove_file(path).await;
        self.after(r, |who| Event::Delete { who, path: shown(path) })
    }

    async fn rename(&self, from: &VPath, to: &VPath, overwrite: bool) -> FsResult<()> {
        let r = self.inner.rename(from, to, overwrite).await;
        self.after(r, |who| Event::Rename { who, from: shown(from), to: shown(to) })
    }

    async fn set_metadata(&self, path: &VPath, attrs: &SetAttrs) -> FsResult<()> {
        self.inner.set_metadata(path, attrs).await
    }

    async fn read_link(&self, path: &VPath) -> FsResult<Vec<u8>> {
        self.inner.read_link(path).await
    }

    async fn symlink(&self, target: &[u8], link: &VPath) -> FsResult<()> {
        let r = self.inner.symlink(target, link).await;
        self.after(r, |who| Event::Symlink {
            who,
            target: String::from_utf8_lossy(target).into_owned(),
            link: shown(link),
        })
    }

    async fn hard_link(&self, existing: &VPath, link: &VPath) -> FsResult<()> {
        self.inner.hard_link(existing, link).await
    }

    async fn canonicalize(&self, path: &VPath) -> FsResult<VPath> {
        self.inner.canonicalize(path).await
    }

    async fn stats(&self, path: &VPath) -> FsResult<FsStats> {
        self.inner.stats(path).await
    }
}
