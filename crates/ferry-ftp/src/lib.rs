//! Ferry's FTP and FTPS (explicit AUTH TLS, implicit, and plain FTP when an admin opts in).
//!
//! [`proto`] is the protocol without I/O: line splitting, the command parser, replies, the login phase,
//! listings and address formats. The rest drives it on tokio: [`session`] runs one control connection,
//! [`data`] opens data connections (passive with a shared port allocator in [`ports`], or active), [`tls`]
//! does the TLS handshakes and the session-reuse check, [`pump`] moves file bytes, and [`transfer`] runs a
//! transfer while still listening for ABOR on the control connection.
#![forbid(unsafe_code)]

mod auth;
mod data;
mod fs_cmds;
pub mod limits;
mod ports;
pub mod proto;
mod pump;
mod reuse;
mod session;
mod stream;
mod tls;
mod transfer;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferry_auth::Admission;
use ferry_core::proxy::TrustedProxies;
use ferry_core::Core;
use ferry_tls::TlsStore;
use ferry_vfs::activity::Activity;
use tokio::io::{AsyncRead, AsyncWrite};

pub use proto::FtpMode;

/// How FTP sessions behave; one value for the whole server.
#[derive(Debug, Clone)]
pub struct FtpSettings {
    /// Inclusive range for PASV/EPSV listeners.
    pub passive_ports: (u16, u16),
    /// Address to announce in PASV replies (behind NAT); `None`: the control connection's local address.
    pub passive_address: Option<IpAddr>,
    /// Data connections must resume the control connection's TLS session (vsftpd's `require_ssl_reuse`).
    pub require_session_reuse: bool,
    /// Idle control connections are closed with 421 after this long.
    pub idle_timeout: Duration,
    pub failed_login_delay: Duration,
    /// After this many failed logins: 421 and close.
    pub max_login_attempts: u32,
    /// Load balancers whose passive data connections start with a PROXY header naming the client.
    pub trusted_proxies: TrustedProxies,
}

impl Default for FtpSettings {
    fn default() -> FtpSettings {
        FtpSettings {
            passive_ports: (50000, 51000),
            passive_address: None,
            require_session_reuse: false,
            idle_timeout: Duration::from_secs(900),
            failed_login_delay: Duration::from_millis(1500),
            max_login_attempts: 3,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// Shared by every FTP connection of the server.
pub struct FtpService {
    settings: FtpSettings,
    core: Arc<Core>,
    tls: Arc<TlsStore>,
    activity: Arc<Activity>,
    ports: Arc<ports::PassivePorts>,
    sessions: Arc<reuse::Sessions>,
}

impl FtpService {
    pub fn new(settings: FtpSettings, core: Arc<Core>, tls: Arc<TlsStore>, activity: Arc<Activity>) -> Self {
        let ports = Arc::new(ports::PassivePorts::new(settings.passive_ports));
        FtpService { settings, core, tls, activity, ports, sessions: Arc::default() }
    }

    /// Serves one control connection to its end. `local` is the address the client connected to; data
    /// connections are bound to its IP, and the client's data connections must come from `peer`'s IP.
    /// `admission` carries the login deadline (counted from accept; it covers implicit FTPS's TLS
    /// handshake) and the connection's place among unauthenticated ones, released at login.
    pub async fn serve_connection<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        local: SocketAddr,
        mode: FtpMode,
        admission: Admission,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        session::run(self, stream, peer, local, mode, false, admission).await
    }

    /// Like [`FtpService::serve_connection`] for a client that has already been sent [`GREETING`] (by a
    /// listener that waited to see which protocol the client speaks).
    pub async fn serve_greeted<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        local: SocketAddr,
        mode: FtpMode,
        admission: Admission,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        session::run(self, stream, peer, local, mode, true, admission).await
    }
}

/// The text of the `220` greeting.
pub const GREETING_TEXT: &str = "Ferry FTP server ready";
/// The greeting as sent on the wire.
pub const GREETING: &[u8] = b"220 Ferry FTP server ready\r\n";
