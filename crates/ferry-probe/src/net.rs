//! Sockets with deadlines, and a stream wrapper that keeps the first bytes a server sent (to say
//! what answered when a TLS handshake fails).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::classify::{classify_connect, ConnectFailure};

/// How long the greeting attempt waits for a server to speak first. SSH and FTP servers greet at
/// once; a multi-protocol port may wait ~150 ms for a ClientHello before it greets.
pub const GREETING_WAIT: Duration = Duration::from_millis(1500);
/// The most bytes kept of a server's first answer.
const RECORDED_BYTES: usize = 512;
/// One read's buffer.
const READ_CHUNK: usize = 16 * 1024;

pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectFailure> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(ConnectFailure::TimedOut),
        Ok(Err(e)) => Err(classify_connect(&e)),
        Ok(Ok(s)) => {
            // Small request/reply exchanges: do not let Nagle delay them.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// How a read loop ended.
#[derive(Debug)]
pub enum ReadEnd {
    /// `enough` said yes.
    Enough,
    /// The peer closed.
    Eof,
    /// The deadline passed.
    Timeout,
    Reset,
    Error(io::Error),
}

/// Reads into `buf` until `enough(buf)` is true, the peer closes, or `deadline` passes.
pub async fn read_until<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
    mut enough: impl FnMut(&[u8]) -> bool,
) -> ReadEnd {
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        if enough(buf) {
            return ReadEnd::Enough;
        }
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => return ReadEnd::Timeout,
            Ok(Ok(0)) => return ReadEnd::Eof,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => return ReadEnd::Reset,
            Ok(Err(e)) => return ReadEnd::Error(e),
        }
    }
}

/// A stream that keeps a copy of the first bytes read through it.
pub struct Recorder<S> {
    inner: S,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl<S> Recorder<S> {
    pub fn new(inner: S) -> (Recorder<S>, Arc<Mutex<Vec<u8>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        (Recorder { inner, seen: seen.clone() }, seen)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorder<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let new = &buf.filled()[before..];
            if let Ok(mut seen) = self.seen.lock() {
                let room = RECORDED_BYTES.saturating_sub(seen.len());
                seen.extend_from_slice(&new[..new.len().min(room)]);
            }
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorder<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A copy of what a [`Recorder`] saw.
pub fn seen(rec: &Arc<Mutex<Vec<u8>>>) -> Vec<u8> {
    rec.lock().map(|v| v.clone()).unwrap_or_default()
}
