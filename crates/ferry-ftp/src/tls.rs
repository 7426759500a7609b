//! TLS handshakes for the control connection (after AUTH TLS, or first thing on an implicit listener) and
//! for data connections (server side of the handshake even in active mode, as RFC 4217 says), and the
//! check that a data connection resumed the control connection's TLS session.
//!
//! Binding data to control: right after the control handshake starts, the connection gets resumption
//! data `ferry-ctl-<random>` (rustls puts it, integrity-protected, into every ticket and session-cache
//! entry it issues). A data connection passes when it resumed a session carrying that id: TLS 1.3 reports
//! it through `received_resumption_data()`. rustls does not report it for TLS 1.2 resumption, so for TLS
//! 1.2 the data connection's session cache and ticketer are wrapped to see the session value that was
//! resumed, and the id is looked for inside it.
//!
//! Tickets on data connections: none on uploads. The client of an upload never reads from the data
//! connection, so tickets sent there stay unread in its socket, and closing a socket with unread data
//! sends a TCP RST, which can cost the server the last bytes of the upload (curl issue #6149). Downloads
//! and listings get one ticket, which carries the control id too: clients that use each ticket once
//! (Java's JSSE) get a fresh one for the next transfer.

use std::io;
use std::sync::{Arc, Mutex};

use rand::RngCore;
use rustls::server::{ProducesTickets, StoresServerSessions};
use rustls::{HandshakeKind, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::limits::TLS_HANDSHAKE_TIMEOUT;
use crate::reuse::Sessions;
use crate::stream::{tls_transport, TlsTransport};

const ID_PREFIX: &[u8] = b"ferry-ctl-";
const ID_LEN: usize = 10 + 32;

/// The resumption id of one control connection.
pub(crate) fn new_resumption_id() -> Vec<u8> {
    let mut r = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut r);
    let mut id = ID_PREFIX.to_vec();
    for b in r {
        id.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    id
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("no TLS handshake within {}s", TLS_HANDSHAKE_TIMEOUT.as_secs()))
}

/// Server side of the control connection's handshake.
pub(crate) async fn accept_control<S>(config: Arc<ServerConfig>, stream: S, id: &[u8]) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let accept = TlsAcceptor::from(config).accept_with(stream, |conn| conn.set_resumption_data(id));
    tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await.map_err(|_| timed_out())?
}

/// Why a data connection's TLS was refused.
#[derive(Debug)]
pub(crate) enum DataTlsError {
    Handshake(io::Error),
    /// The handshake did not resume the control connection's session.
    NotResumed,
}

/// TLS parameters for the data connections of one control connection.
#[derive(Clone)]
pub(crate) struct DataTls {
    pub(crate) config: Arc<ServerConfig>,
    /// The control connection's resumption id.
    pub(crate) id: Vec<u8>,
    /// Set when data connections must resume a control session (see `crate::reuse`).
    pub(crate) require_reuse: Option<Arc<Sessions>>,
}

/// Server side of a data connection's handshake, checking session reuse when required.
pub(crate) async fn accept_data(
    tls: DataTls,
    tcp: TcpStream,
    upload: bool,
) -> Result<TlsStream<TlsTransport>, DataTlsError> {
    let base = tls.config;
    let mut config = (*base).clone();
    config.send_tls13_tickets = if upload { 0 } else { 1 };
    let seen = Arc::new(Seen::default());
    if tls.require_reuse.is_some() {
        config.session_storage = Arc::new(RecordingStore { inner: base.session_storage.clone(), seen: seen.clone() });
        config.ticketer = Arc::new(RecordingTicketer { inner: base.ticketer.clone(), seen: seen.clone() });
    }
    let id = tls.id;
    let accept =
        TlsAcceptor::from(Arc::new(config)).accept_with(tls_transport(tcp), |conn| conn.set_resumption_data(&id));
    let mut stream = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept)
        .await
        .map_err(|_| DataTlsError::Handshake(timed_out()))?
        .map_err(DataTlsError::Handshake)?;
    stream.get_mut().0.get_mut().quickack = false;
    if let Some(sessions) = tls.require_reuse {
        match resumed_id(stream.get_ref().1, &seen) {
            Some(resumed) if sessions.may_use(&id, &resumed) => {}
            _ => return Err(DataTlsError::NotResumed),
        }
    }
    Ok(stream)
}

/// The resumption id of the session this connection resumed, if it resumed one of ours.
fn resumed_id(conn: &rustls::ServerConnection, seen: &Seen) -> Option<Vec<u8>> {
    if let Some(data) = conn.received_resumption_data() {
        return Some(data.to_vec());
    }
    // TLS 1.2: rustls does not report the resumption data, but the session value it looked up is the one it
    // resumed, and the id is in it verbatim.
    if conn.handshake_kind() != Some(HandshakeKind::Resumed) {
        return None;
    }
    let value = seen.0.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
    find_id(&value)
}

/// `ferry-ctl-` and the 32 hex digits after it.
fn find_id(value: &[u8]) -> Option<Vec<u8>> {
    let start = value.windows(ID_PREFIX.len()).position(|w| w == ID_PREFIX)?;
    let id = value.get(start..start + ID_LEN)?;
    id[ID_PREFIX.len()..].iter().all(u8::is_ascii_hexdigit).then(|| id.to_vec())
}

/// The last session value a handshake looked up (TLS 1.2 resumption).
#[derive(Debug, Default)]
struct Seen(Mutex<Option<Vec<u8>>>);

impl Seen {
    fn record(&self, v: &Option<Vec<u8>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = v.clone();
    }
}

#[derive(Debug)]
struct RecordingStore {
    inner: Arc<dyn StoresServerSessions>,
    seen: Arc<Seen>,
}

impl StoresServerSessions for RecordingStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.inner.get(key);
        self.seen.record(&v);
        v
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.inner.take(key);
        self.seen.record(&v);
        v
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

#[derive(Debug)]
struct RecordingTicketer {
    inner: Arc<dyn ProducesTickets>,
    seen: Arc<Seen>,
}

impl ProducesTickets for RecordingTicketer {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.inner.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let v = self.inner.decrypt(cipher);
        self.seen.record(&v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_marked() {
        let a = new_resumption_id();
        let b = new_resumption_id();
        assert_ne!(a, b);
        assert!(a.starts_with(b"ferry-ctl-") && a.len() == ID_LEN);
        let mut value = b"\x00\x2a".to_vec();
        value.extend_from_slice(&a);
        value.extend_from_slice(b"\x01\x02");
        assert_eq!(find_id(&value), Some(a));
        assert_eq!(find_id(b"ferry-ctl-xyz"), None);
        assert_eq!(find_id(b"ferry-ctl-0123456789abcdef0123456789abcdeg"), None);
    }
}
