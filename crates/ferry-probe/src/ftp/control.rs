//! An FTP control connection over any stream (plain TCP, or TLS after AUTH TLS / implicit).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::reply::{parse_reply, Reply, ReplyError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FtpError {
    /// No (complete) reply in time.
    Timeout,
    /// The server closed the connection.
    Closed,
    Io(String),
    /// The server sent something that is not an FTP reply.
    Invalid(String),
}

impl std::fmt::Display for FtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FtpError::Timeout => f.write_str("no reply from the server (timed out)"),
            FtpError::Closed => f.write_str("the server closed the connection"),
            FtpError::Io(e) => f.write_str(e),
            FtpError::Invalid(e) => f.write_str(e),
        }
    }
}

pub struct Control<S> {
    stream: S,
    buf: Vec<u8>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Control<S> {
    /// `buf`: bytes already read from `stream` (a greeting, or part of it).
    pub fn new(stream: S, buf: Vec<u8>, timeout: Duration) -> Control<S> {
        Control { stream, buf, timeout }
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Reads one reply (all lines of a multi-line one).
    pub async fn reply(&mut self) -> Result<Reply, FtpError> {
        self.reply_within(self.timeout).await
    }

    pub async fn reply_within(&mut self, wait: Duration) -> Result<Reply, FtpError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = vec![0u8; 8192];
        loop {
            match parse_reply(&self.buf) {
                Ok((reply, used)) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Err(ReplyError::Invalid(e)) => return Err(FtpError::Invalid(e)),
                Err(ReplyError::Incomplete) => {}
            }
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(FtpError::Timeout),
                Ok(Ok(0)) => return Err(FtpError::Closed),
                Ok(Ok(n)) => n,
                // A TLS peer that closes without close_notify reads as UnexpectedEof.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FtpError::Closed),
                Ok(Err(e)) => return Err(FtpError::Io(format!("the control connection broke: {e}"))),
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn send(&mut self, line: &str) -> Result<(), FtpError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let write = async {
            self.stream.write_all(&bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Err(_) => Err(FtpError::Timeout),
            Ok(Err(e)) => Err(FtpError::Io(format!("cannot send to the server: {e}"))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends one command and reads its reply.
    pub async fn cmd(&mut self, line: &str) -> Result<Reply, FtpError> {
        self.send(line).await?;
        self.reply().await
    }

    /// Says goodbye without waiting long: the probe is done either way.
    pub async fn quit(mut self) {
        if self.send("QUIT").await.is_ok() {
            let _ = self.reply_within(Duration::from_millis(500)).await;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), self.stream.shutdown()).await;
    }
}

impl Control<TcpStream> {
    /// After a `234` to AUTH TLS: the TLS handshake on the control connection.
    pub async fn start_tls(
        self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Control<TlsStream<TcpStream>>, String> {
        if !self.buf.is_empty() {
            // Bytes after the 234 but before the handshake would be read as if they came through
            // TLS (the STARTTLS command-injection flaw); a correct server never sends them.
            return Err("the server sent data after its 234 reply, before the TLS handshake".into());
        }
        let timeout = self.timeout;
        let tls = match tokio::time::timeout(timeout, TlsConnector::from(config).connect(name, self.stream)).await {
            Err(_) => return Err("the TLS handshake timed out".into()),
            Ok(Err(e)) => return Err(format!("the TLS handshake failed: {}", tls_error_words(&e))),
            Ok(Ok(s)) => s,
        };
        Ok(Control { stream: tls, buf: Vec::new(), timeout })
    }
}

/// A TLS handshake error in words, with the likely cause for the common ones.
pub fn tls_error_words(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::AlertReceived(alert)) => {
            let name = format!("{alert:?}");
            match alert {
                rustls::AlertDescription::HandshakeFailure | rustls::AlertDescription::ProtocolVersion => format!(
                    "the server refused the handshake ({name}): no TLS version or cipher in common; the server may \
                     offer only TLS 1.0/1.1 or old ciphers"
                ),
                _ => format!("the server refused the handshake ({name})"),
            }
        }
        Some(rustls::Error::PeerIncompatible(why)) => {
            format!(
                "no TLS version or cipher in common ({why:?}); the server may offer only TLS 1.0/1.1 or old ciphers"
            )
        }
        Some(other) => other.to_string(),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
        None => e.to_string(),
    }
}
