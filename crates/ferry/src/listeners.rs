//! What each listener serves, and its accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_config::{limits, ListenerSpec, Protocol};
use ferry_ftp::{FtpMode, FtpService};
use ferry_sftp::SshService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::CliError;

/// The one protocol family a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Sftp,
    Ftp(FtpMode),
}

impl ListenerKind {
    /// Maps a listener's protocol list to what serves it. `ftps,ftp` (or `ftp` alone) is an explicit-FTPS
    /// listener that also accepts logins without TLS.
    pub fn of(spec: &ListenerSpec) -> Result<ListenerKind, CliError> {
        use Protocol::*;
        match spec.protocols.as_slice() {
            [Sftp] => Ok(ListenerKind::Sftp),
            [Ftps] => Ok(ListenerKind::Ftp(FtpMode::Explicit)),
            [FtpsImplicit] => Ok(ListenerKind::Ftp(FtpMode::Implicit)),
            [Ftp] | [Ftps, Ftp] => Ok(ListenerKind::Ftp(FtpMode::Plain)),
            _ => Err(CliError::usage(
                format!("listener {spec}: serving several protocols on one port (protocol detection) is not built yet"),
                "give each protocol its own address, e.g. --listen sftp=0.0.0.0:2222 --listen ftps=0.0.0.0:2121",
            )),
        }
    }
}

/// The services connections are handed to.
pub struct Services {
    pub ssh: Arc<SshService>,
    pub ftp: Option<Arc<FtpService>>,
}

/// Accepts connections on one listener until the task is aborted.
pub async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    kind: ListenerKind,
    services: Arc<Services>,
    connections: Arc<Semaphore>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(listener = %addr, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, "hint: refusing connection: {} connections already open", limits::MAX_CONNECTIONS);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(addr);
        let services = services.clone();
        tokio::spawn(async move {
            match kind {
                ListenerKind::Sftp => services.ssh.clone().serve_connection(stream, peer).await,
                ListenerKind::Ftp(mode) => {
                    if let Some(ftp) = &services.ftp {
                        ftp.clone().serve_connection(stream, peer, local, mode).await;
                    }
                }
            }
            drop(permit);
        });
    }
}
