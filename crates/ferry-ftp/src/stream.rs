//! The two kinds of byte stream a session uses, each plain or under TLS: the control connection (any
//! stream the server hands us) and data connections (TCP).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::limits::TLS_READ_BUFFER;

/// Implements AsyncRead/AsyncWrite for a two-variant enum by forwarding to the variant.
macro_rules! forward_io {
    ($ty:ident $(<$g:ident>)?, $a:ident, $b:ident $(, where $($bound:tt)+)?) => {
        impl$(<$g>)? AsyncRead for $ty$(<$g>)? $(where $($bound)+)? {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::$a(s) => Pin::new(s).poll_read(cx, buf),
                    $ty::$b(s) => Pin::new(&mut **s).poll_read(cx, buf),
                }
            }
        }

        impl$(<$g>)? AsyncWrite for $ty$(<$g>)? $(where $($bound)+)? {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $ty::$a(s) => Pin::new(s).poll_write(cx, buf),
                    $ty::$b(s) => Pin::new(&mut **s).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $ty::$a(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                    $ty::$b(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $ty::$a(s) => s.is_write_vectored(),
                    $ty::$b(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::$a(s) => Pin::new(s).poll_flush(cx),
                    $ty::$b(s) => Pin::new(&mut **s).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::$a(s) => Pin::new(s).poll_shutdown(cx),
                    $ty::$b(s) => Pin::new(&mut **s).poll_shutdown(cx),
                }
            }
        }
    };
}

/// The control connection. TLS state is boxed: it is large, and a plain session should not pay for it.
pub(crate) enum Control<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
}

forward_io!(Control<S>, Plain, Tls, where S: AsyncRead + AsyncWrite + Unpin);

/// The TCP side of a TLS data connection, read through a large buffer: rustls reads at most 4 KiB at a
/// time from its transport, which would cost a system call per 4 KiB of an upload; through this buffer
/// the kernel is asked for up to [`TLS_READ_BUFFER`] at once.
pub(crate) type TlsTransport = BufReader<HandshakeTcp>;

pub(crate) fn tls_transport(tcp: TcpStream) -> TlsTransport {
    BufReader::with_capacity(TLS_READ_BUFFER, HandshakeTcp { tcp, quickack: true })
}

/// A data connection's TCP stream that acknowledges what it reads at once while the TLS handshake runs.
///
/// GnuTLS clients (lftp) send TLS 1.3's ChangeCipherSpec and Finished in two writes without TCP_NODELAY,
/// so Nagle holds the Finished until the CCS is acknowledged, and Linux, having just sent the server's
/// flight, delays that ACK by 40 ms: 40 ms on every transfer. Setting TCP_QUICKACK after each read sends
/// a pending ACK immediately. Turned off once the handshake is done.
pub(crate) struct HandshakeTcp {
    tcp: TcpStream,
    pub(crate) quickack: bool,
}

impl AsyncRead for HandshakeTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if this.quickack && matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // Best effort: without it the handshake is only slower.
            let _ = rustix::net::sockopt::set_tcp_quickack(&this.tcp, true);
        }
        r
    }
}

impl AsyncWrite for HandshakeTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// A data connection.
pub(crate) enum DataConn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TlsTransport>>),
}

forward_io!(DataConn, Plain, Tls);

impl DataConn {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, DataConn::Tls(_))
    }
}
