//! What a connection holds from accept until its user has logged in: the deadline for logging in, and
//! its place among the server's unauthenticated connections (released at login, or when it closes).
//! The listener creates it; each protocol calls [`Admission::logged_in`] when a login succeeds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// A new connection's admission. Dropping it (the connection closes) releases its place too.
pub struct Admission {
    deadline: Instant,
    grace: Duration,
    /// Whatever the listener counts unauthenticated connections with; dropped at login.
    place: Option<Box<dyn Send + Sync>>,
    logged_in: Arc<AtomicBool>,
}

/// Tells the listener whether the connection it handed on has logged in.
#[derive(Debug, Clone)]
pub struct LoginWatch(Arc<AtomicBool>);

impl LoginWatch {
    pub fn logged_in(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Admission {
    /// Admitted now, with `grace` to log in, holding `place` until then.
    pub fn new(grace: Duration, place: Option<Box<dyn Send + Sync>>) -> Admission {
        Admission { deadline: Instant::now() + grace, grace, place, logged_in: Arc::default() }
    }

    pub fn watch(&self) -> LoginWatch {
        LoginWatch(self.logged_in.clone())
    }

    /// When the connection must have logged in, counted from accept: it covers the SSH banner, key
    /// exchange and authentication, and the TLS handshake of implicit FTPS.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The user is logged in: the connection no longer counts as unauthenticated.
    pub fn logged_in(&mut self) {
        self.place = None;
        self.logged_in.store(true, Ordering::Release);
    }

    pub fn is_logged_in(&self) -> bool {
        self.logged_in.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").field("grace", &self.grace).field("counted", &self.place.is_some()).finish()
    }
}
