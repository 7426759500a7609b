//! Bandwidth limits per session (`ferry user set --upload-rate/--download-rate`): every read and write of
//! the session's files takes its bytes' share of time from one clock per direction, so pipelined SFTP
//! requests and FTPS data connections alike add up to the rate.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_vfs::{FileHandle, FsResult, Metadata, SetAttrs};
use tokio::time::Instant;

/// Credit a session that was idle may spend at once: short, so the rate holds over any second.
const BURST: Duration = Duration::from_millis(100);

/// One direction's rate: bytes per second.
#[derive(Debug)]
pub struct Throttle {
    rate: u64,
    /// When the bytes taken so far have been paid for.
    paid: Mutex<Instant>,
}

impl Throttle {
    pub fn new(rate: u64) -> Throttle {
        Throttle { rate: rate.max(1), paid: Mutex::new(Instant::now()) }
    }

    /// Waits until `bytes` may go.
    pub async fn take(&self, bytes: usize) {
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        let start = {
            let mut paid = self.paid.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = (*paid).max(now.checked_sub(BURST).unwrap_or(now));
            *paid = start + cost;
            start + cost
        };
        let wake = start.checked_sub(BURST).unwrap_or(start);
        if wake > Instant::now() {
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A file whose reads and writes go at most at the session's rates.
pub(crate) struct ThrottledFile {
    pub(crate) inner: Box<dyn FileHandle>,
    pub(crate) up: Option<std::sync::Arc<Throttle>>,
    pub(crate) down: Option<std::sync::Arc<Throttle>>,
}

#[async_trait]
impl FileHandle for ThrottledFile {
    async fn read_at(&self, offset: u64, len: u32) -> FsResult<Bytes> {
        let data = self.inner.read_at(offset, len).await?;
        if let Some(t) = &self.down {
            t.take(data.len()).await;
        }
        Ok(data)
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> FsResult<()> {
        if let Some(t) = &self.up {
            t.take(data.len()).await;
        }
        self.inner.write_at(offset, data).await
    }

    async fn metadata(&self) -> FsResult<Metadata> {
        self.inner.metadata().await
    }

    async fn set_metadata(&self, attrs: &SetAttrs) -> FsResult<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_rate_holds_over_many_takes() {
        let t = Throttle::new(1_000_000);
        let start = Instant::now();
        for _ in 0..20 {
            t.take(100_000).await;
        }
        let took = start.elapsed();
        // 2 MB at 1 MB/s: 2 s, less the burst credit.
        assert!(took >= Duration::from_millis(1800) && took <= Duration::from_millis(2000), "{took:?}");
    }
}
