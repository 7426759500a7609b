//! A logged-in session: who, from where, over which protocol, and their storage behind the gate. Its
//! transfers and its end are events like everything else.

use std::sync::Arc;
use std::time::Instant;

use ferry_vfs::{VPath, Vfs};

use crate::event::{Event, Events, Who};

/// Where a connection comes from and what it speaks, as the protocol adapter knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client's address and port, as shown in log lines.
    pub addr: String,
    /// The client's address, for account rules.
    pub ip: std::net::IpAddr,
    /// `sftp`, `ftps` or `ftp`.
    pub protocol: &'static str,
}

/// A logged-in user's session. Dropping it ends the session (one `logout` event).
pub struct Session {
    who: Who,
    vfs: Arc<dyn Vfs>,
    events: Arc<Events>,
    since: Instant,
    membership: crate::registry::Membership,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("who", &self.who).finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        who: Who,
        vfs: Arc<dyn Vfs>,
        events: Arc<Events>,
        membership: crate::registry::Membership,
    ) -> Session {
        Session { who, vfs, events, since: Instant::now(), membership }
    }

    /// Resolves when the server ends this session (the account was removed, disabled, expired, or its
    /// password or keys changed) with the reason to tell the client, or with `None` once the session is
    /// over anyway (a task watching it can then stop).
    pub fn ended(&self) -> impl std::future::Future<Output = Option<String>> + Send + 'static {
        let mut rx = self.membership.ended.clone();
        async move {
            match rx.wait_for(|r| r.is_some()).await {
                Ok(r) => r.clone(),
                Err(_) => None,
            }
        }
    }

    pub fn user(&self) -> &str {
        &self.who.user
    }

    pub fn client(&self) -> &str {
        &self.who.client
    }

    pub fn protocol(&self) -> &'static str {
        self.who.protocol
    }

    /// The user's storage, behind the gate.
    pub fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.vfs
    }

    /// A transfer that completed.
    pub fn transfer(&self, path: &VPath, bytes_read: u64, bytes_written: u64, started: Instant) {
        self.events.emit(Event::Transfer {
            who: self.who.clone(),
            path: path.display().to_string(),
            bytes_read,
            bytes_written,
            duration_ms: started.elapsed().as_millis() as u64,
        });
    }

    /// A transfer cut off; `why` says how, and what became of an upload.
    pub fn interrupted(&self, path: &VPath, bytes_read: u64, bytes_written: u64, started: Instant, why: &str) {
        self.events.emit(Event::TransferInterrupted {
            who: self.who.clone(),
            path: path.display().to_string(),
            bytes_read,
            bytes_written,
            duration_ms: started.elapsed().as_millis() as u64,
            why: why.to_string(),
        });
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.events.emit(Event::Logout { who: self.who.clone(), duration_ms: self.since.elapsed().as_millis() as u64 });
    }
}
