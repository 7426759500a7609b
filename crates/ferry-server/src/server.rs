//! The server's life: accept on every listener until the shutdown future resolves, then stop accepting
//! and give running transfers the grace period to finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_sftp::Activity;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::gate::Gate;
use crate::listeners::{accept_loop, ListenerKind, Services};

/// A bound listener and what it serves.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
    kind: ListenerKind,
}

impl Listener {
    /// Fails only when the socket cannot tell its own address.
    pub fn new(listener: TcpListener, kind: ListenerKind) -> std::io::Result<Listener> {
        let addr = listener.local_addr()?;
        Ok(Listener { listener, addr, kind })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn kind(&self) -> ListenerKind {
        self.kind
    }
}

/// Serves every listener until `shutdown` resolves; then accepts no more connections and waits up to
/// `grace` for the transfers still running (counted by `services.activity`) before it returns. Sessions
/// are not closed here: they end when the caller drops the runtime.
pub async fn run(
    listeners: Vec<Listener>,
    services: Arc<Services>,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut accepts = JoinSet::new();
    for l in listeners {
        accepts.spawn(accept_loop(l.listener, l.addr, l.kind, services.clone(), gate.clone()));
    }
    shutdown.await;
    // Every listening socket is closed before the drain begins.
    accepts.shutdown().await;
    drain(&services.activity, grace).await;
}

/// Waits up to `grace` for the open transfers, saying so in the log.
async fn drain(activity: &Activity, grace: Duration) {
    let open = activity.open_files();
    if open > 0 {
        tracing::info!(
            "shutting down: no new connections; waiting up to {}s for {open} open transfer(s)",
            grace.as_secs()
        );
        if tokio::time::timeout(grace, activity.idle()).await.is_err() {
            tracing::warn!("grace period over: closing {} transfer(s) still running", activity.open_files());
        }
    } else {
        tracing::info!("shutting down: no transfer running");
    }
}
