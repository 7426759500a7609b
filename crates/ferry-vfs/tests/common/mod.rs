//! Helpers shared by the local backend's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use std::sync::Arc;

use ferry_vfs::local::{LocalFs, UploadMode, UploadPolicy, Uploads};
use ferry_vfs::{FileHandle, FsError, OpenOptions, VPath, Vfs};

/// A scratch directory removed on drop. Layout: `<base>/root` is the jail, `<base>/outside` holds a
/// secret the jail must never reach.
pub struct Scratch {
    pub base: PathBuf,
    pub root: PathBuf,
    pub outside: PathBuf,
    /// The upload journal's directory (`<base>/journal`).
    pub journal: PathBuf,
    pub uploads: Arc<Uploads>,
    pub fs: LocalFs,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A scratch root with the default upload policy (standard mode), journalled.
pub fn scratch() -> Scratch {
    scratch_with(UploadPolicy::default())
}

pub fn atomic() -> UploadPolicy {
    UploadPolicy { mode: UploadMode::Atomic, ..Default::default() }
}

pub fn scratch_with(policy: UploadPolicy) -> Scratch {
    let base =
        std::env::temp_dir().join(format!("ferry-vfs-test-{}-{:016x}", std::process::id(), rand::random::<u64>()));
    let root = base.join("root");
    let outside = base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"top secret").unwrap();
    let journal = base.join("journal");
    let uploads = Uploads::new(policy, Some(journal.clone())).unwrap();
    // LocalFs creates the root itself.
    let fs = LocalFs::with_uploads(&root, uploads.clone()).unwrap();
    Scratch { base, root, outside, journal, uploads, fs }
}

pub fn vp(p: &str) -> VPath {
    VPath::resolve(&VPath::root(), p.as_bytes())
}

pub fn vpb(p: &[u8]) -> VPath {
    VPath::resolve(&VPath::root(), p)
}

pub fn read_opts() -> OpenOptions {
    OpenOptions { read: true, ..Default::default() }
}

/// What `put` sends: write, create, truncate.
pub fn put_opts() -> OpenOptions {
    OpenOptions { write: true, create: true, truncate: true, ..Default::default() }
}

pub async fn read_all(fs: &LocalFs, path: &VPath) -> Result<Vec<u8>, FsError> {
    let h = fs.open(path, read_opts()).await?;
    let mut out = Vec::new();
    loop {
        let chunk = h.read_at(out.len() as u64, 7).await?;
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    h.close().await?;
    Ok(out)
}

pub async fn put(fs: &LocalFs, path: &VPath, data: &[u8]) -> Result<(), FsError> {
    let h = fs.open(path, put_opts()).await?;
    h.write_at(0, bytes::Bytes::copy_from_slice(data)).await?;
    h.close().await
}

/// Names in a real directory that look like temporary uploads.
pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".ferry-upload."))
        .collect()
}

pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Gives up on a handle, as a protocol does when a connection is cut.
pub async fn abandon(h: Box<dyn FileHandle>) {
    h.abort().await;
}

/// Entries left in the upload journal.
pub fn journal_entries(s: &Scratch) -> usize {
    std::fs::read_dir(&s.journal).map(|d| d.count()).unwrap_or(0)
}

/// Every name in a real directory, hidden ones included, sorted.
pub fn all_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}
