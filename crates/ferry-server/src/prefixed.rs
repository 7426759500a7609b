//! The stream a listener hands to a protocol's server after looking at the client's first bytes.
//!
//! Two jobs, one wrapper: *replaying* bytes protocol detection has already read, so the chosen server reads
//! them again as if nothing had happened; and *sniffing* the first bytes without delaying anything, so a
//! single-protocol listener can tell the admin afterwards what a client that failed to speak its protocol was.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How many first bytes sniffing keeps: enough to recognise SSH, TLS, FTP and HTTP.
const SNIFF_LEN: usize = 16;

pub struct ClientStream<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
    seen: Option<Arc<Mutex<Vec<u8>>>>,
}

impl<S> ClientStream<S> {
    /// Reads `prefix` first, then `inner`.
    pub fn replaying(prefix: Vec<u8>, inner: S) -> Self {
        ClientStream { prefix, pos: 0, inner, seen: None }
    }

    /// Reads `inner`, remembering its first bytes in the returned buffer.
    pub fn sniffing(inner: S) -> (Self, Arc<Mutex<Vec<u8>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        (ClientStream { prefix: Vec::new(), pos: 0, inner, seen: Some(seen.clone()) }, seen)
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                // Give the memory back: a long-lived idle session should not keep it.
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(seen)) = (&r, &self.seen) {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() < SNIFF_LEN {
                let new = &buf.filled()[before..];
                let take = new.len().min(SNIFF_LEN - seen.len());
                seen.extend_from_slice(&new[..take]);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn replays_then_reads_on() {
        let inner: &[u8] = b" world";
        let mut s = ClientStream::replaying(b"hello".to_vec(), inner);
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        assert_eq!(out, "hello world");
    }

    #[tokio::test]
    async fn sniffs_only_the_first_bytes() {
        let inner: &[u8] = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\nmore";
        let (mut s, seen) = ClientStream::sniffing(inner);
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        assert_eq!(out, inner);
        assert_eq!(seen.lock().expect("lock").as_slice(), &inner[..SNIFF_LEN]);
    }
}
