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

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the places held, as the listener's gate does.
    struct Place(Arc<std::sync::atomic::AtomicUsize>);

    impl Drop for Place {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }

    #[tokio::test]
    async fn logging_in_frees_the_place_and_tells_the_listener() {
        let held = Arc::new(std::sync::atomic::AtomicUsize::new(1));
        let before = Instant::now();
        let mut a = Admission::new(Duration::from_secs(60), Some(Box::new(Place(held.clone()))));
        assert_eq!(a.grace(), Duration::from_secs(60), "the grace is what the log lines name");
        assert!(
            a.deadline() >= before + Duration::from_secs(60)
                && a.deadline() <= Instant::now() + Duration::from_secs(60)
        );
        let watch = a.watch();
        assert!(!watch.logged_in() && !a.is_logged_in());
        assert_eq!(format!("{a:?}"), "Admission { grace: 60s, counted: true }");
        a.logged_in();
        assert!(watch.logged_in() && a.is_logged_in(), "the listener's backstop must not close a logged-in session");
        assert_eq!(held.load(Ordering::Acquire), 0, "a logged-in connection no longer counts as unauthenticated");
        assert_eq!(format!("{a:?}"), "Admission { grace: 60s, counted: false }");
    }

    #[tokio::test]
    async fn a_closed_connection_gives_its_place_back() {
        let held = Arc::new(std::sync::atomic::AtomicUsize::new(1));
        drop(Admission::new(Duration::from_secs(1), Some(Box::new(Place(held.clone())))));
        assert_eq!(held.load(Ordering::Acquire), 0);
    }
}
