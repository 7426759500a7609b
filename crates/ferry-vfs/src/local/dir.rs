//! Listing a directory a batch at a time, so that a huge directory never sits in memory whole: the
//! handle keeps only the kernel's directory stream, as OpenSSH's sftp-server does.

use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cap_std::fs::{Dir, ReadDir};

use super::util::{blocking, is_not_found, is_temp_name, meta_from_cap};
use crate::{DirEntry, DirHandle, FsError, FsResult};

/// An open directory of the local backend.
pub(super) struct LocalDir {
    /// `None` once the end was reached. Behind a mutex so a batch can be read on the blocking pool.
    stream: Arc<Mutex<Option<ReadDir>>>,
}

pub(super) fn open(root: &Dir, rel: &Path) -> FsResult<LocalDir> {
    let stream = root.read_dir(rel)?;
    Ok(LocalDir { stream: Arc::new(Mutex::new(Some(stream))) })
}

fn next_batch_blocking(slot: &mut Option<ReadDir>, max: usize) -> FsResult<Vec<DirEntry>> {
    let mut out = Vec::new();
    let Some(stream) = slot.as_mut() else {
        return Ok(out);
    };
    while out.len() < max {
        let Some(entry) = stream.next() else {
            *slot = None;
            break;
        };
        let entry = entry?;
        let name = entry.file_name().into_vec();
        if is_temp_name(&name) {
            continue;
        }
        // The entry's own metadata (lstat): a link is listed as a link, as `ls -l` does.
        let metadata = match entry.metadata() {
            Ok(m) => meta_from_cap(&m),
            // Removed between readdir and lstat: it is simply no longer there.
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        out.push(DirEntry { name, metadata });
    }
    Ok(out)
}

#[async_trait]
impl DirHandle for LocalDir {
    async fn next_batch(&mut self, max: usize) -> FsResult<Vec<DirEntry>> {
        let stream = Arc::clone(&self.stream);
        blocking(move || {
            let mut slot =
                stream.lock().map_err(|_| FsError::Io(std::io::Error::other("directory stream poisoned")))?;
            next_batch_blocking(&mut slot, max.max(1))
        })
        .await
    }
}
