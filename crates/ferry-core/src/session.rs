//! A logged-in session: who, from where, over which protocol, and their storage behind the gate. Its
//! transfers and its end are events like everything else.

use std::sync::Arc;
use std::time::Instant;

use ferry_vfs::{VPath, Vfs};

use crate::event::{Event, Events, Who};

/// Where a connection comes from and what it speaks, as the protocol adapter knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client's address, as shown in log lines.
    pub addr: String,
    /// `sftp`, `ftps` or `ftp`.
    pub protocol: &'static str,
}

/// A logged-in user's session. Dropping it ends the session (one `logout` event).
pub struct Session {
    who: Who,
    vfs: Arc<dyn Vfs>,
    events: Arc<Events>,
    since: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("who", &self.who).finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(who: Who, vfs: Arc<dyn Vfs>, events: Arc<Events>) -> Session {
        Session { who, vfs, events, since: Instant::now() }
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
