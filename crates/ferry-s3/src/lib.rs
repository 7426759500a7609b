//! Ferry's S3-compatible object storage: one bucket, each user's files under `prefix` + NAME + `/`.
//!
//! What S3 can do maps onto the [`ferry_vfs::Vfs`] every protocol uses: directories are key prefixes
//! (with an empty `dir/` marker object while they have nothing else), uploads are multipart uploads that
//! become the object only when complete (so a cut-off upload never replaces a good file), downloads are
//! ranged GETs with read-ahead, renaming a file is a server-side copy then a delete. What S3 cannot do
//! (writes at random offsets, appends, resumed uploads, links, permissions) is refused with a sentence.
#![forbid(unsafe_code)]

mod error;
mod handle;
mod keys;
mod raw;
mod vfs;

use std::io;
use std::path::Path;
use std::sync::Arc;

use ferry_vfs::{Storage, Usage, Vfs};
use opendal::Operator;

pub use handle::{PARTS_IN_FLIGHT, PART_SIZE, READ_AHEAD};
pub use keys::Root;

pub use ferry_config::S3Config as S3Settings;

/// The bucket, shared by every user's [`Vfs`].
pub struct S3Storage {
    op: Operator,
    settings: S3Settings,
    raw: Arc<raw::RawS3>,
}

impl S3Storage {
    /// Configures the client; nothing is sent yet (see [`S3Storage::check`]).
    pub fn new(settings: S3Settings) -> io::Result<S3Storage> {
        opendal::install_default();
        let key = settings.access_key_id.clone().or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok());
        let secret = settings.secret_access_key.clone().or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok());
        let (Some(key), Some(secret)) = (key, secret) else {
            return Err(io::Error::other(
                "no S3 credentials: set access_key_id and secret_access_key in [storage], or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ));
        };
        let builder = opendal::services::S3::default()
            .endpoint(&settings.endpoint)
            .region(&settings.region)
            .bucket(&settings.bucket)
            .root("/")
            .access_key_id(&key)
            .secret_access_key(&secret)
            .disable_config_load()
            .disable_ec2_metadata();
        let op = Operator::new(builder).map_err(|e| io::Error::other(format!("S3 storage: {e}")))?;
        let raw = Arc::new(raw::RawS3::new(&settings.endpoint, &settings.bucket, &settings.region, key, secret));
        Ok(S3Storage { op, settings, raw })
    }

    /// One request to the bucket, so a wrong endpoint, bucket or key is said at start.
    pub async fn check(&self) -> io::Result<()> {
        let p = self.settings.prefix.trim_start_matches('/');
        let dir = match p {
            "" => "/".to_string(),
            p if p.ends_with('/') => p.to_string(),
            p => format!("{p}/"),
        };
        self.op.list_with(&dir).limit(1).await.map(|_| ()).map_err(|e| {
            io::Error::other(format!("S3 bucket {:?} at {}: {e}", self.settings.bucket, self.settings.endpoint))
        })
    }

    /// Aborts the incomplete multipart uploads under the prefix that are older than `age` (parts a killed
    /// node left behind); how many.
    pub async fn sweep_incomplete_uploads(&self, age: std::time::Duration) -> io::Result<usize> {
        let p = self.settings.prefix.trim_start_matches('/');
        self.raw.sweep(p, age).await
    }

    /// Copies object `from` (`size` bytes) to `to` with UploadPartCopy, `part` bytes a part (a rename of a
    /// file over 5 GiB uses 1 GiB parts).
    pub async fn copy_in_parts(&self, from: &str, to: &str, size: u64, part: u64) -> io::Result<()> {
        self.raw.copy_in_parts(from, to, size, part).await
    }

    /// Writes a whole object (for tests and tools).
    pub async fn put(&self, key: &str, data: Vec<u8>) -> io::Result<()> {
        self.op.write(key, data).await.map(|_| ()).map_err(|e| io::Error::other(e.to_string()))
    }

    /// Reads a whole object (for tests and tools).
    pub async fn get(&self, key: &str) -> io::Result<Vec<u8>> {
        self.op.read(key).await.map(|b| b.to_vec()).map_err(|e| io::Error::other(e.to_string()))
    }

    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }
}

impl Storage for S3Storage {
    fn open_home(&self, user: &str, _home: &Path) -> io::Result<Arc<dyn Vfs>> {
        Ok(Arc::new(vfs::S3Vfs {
            op: self.op.clone(),
            raw: self.raw.clone(),
            root: Root::new(&self.settings.prefix, user),
        }))
    }

    fn usage(&self, user: &str, _home: &Path) -> io::Result<Usage> {
        let root = Root::new(&self.settings.prefix, user);
        let op = self.op.clone();
        let walk = async move {
            let entries = op.list_with(root.prefix()).recursive(true).await?;
            let mut usage = Usage::default();
            for e in entries {
                if e.metadata().is_file() && !e.path().ends_with('/') {
                    usage.bytes += e.metadata().content_length();
                    usage.files += 1;
                }
            }
            Ok::<_, opendal::Error>(usage)
        };
        // Called on the blocking pool (see the trait), where waiting on the runtime is allowed.
        let rt = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        rt.block_on(walk).map_err(|e| io::Error::other(format!("S3 storage: listing {user}'s files: {e}")))
    }
}
