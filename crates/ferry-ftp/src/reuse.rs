//! Which control connections exist (and recently existed), for the data connections' TLS session-reuse
//! check.
//!
//! A data connection passes the check when it resumed the TLS session of its own control connection, or
//! of another control connection that logged in as the same user from the same address. The second case
//! exists for clients that keep one TLS session cache for several control connections: rclone (Go's
//! crypto/tls) caches one session per server name across its whole connection pool, so its data
//! connections resume whichever control connection got the latest ticket. The check still does what it is
//! for: a data connection can only be taken over by someone holding a TLS session that was issued to a
//! connection which proved this user's password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proto::addr::canonical;

/// How long an ended control connection's sessions stay valid for the check: the lifetime of rustls'
/// session tickets.
const REMEMBER_ENDED: Duration = Duration::from_secs(12 * 3600);
/// Entries kept before ended ones are pruned (about 100 bytes each).
const PRUNE_AT: usize = 16 * 1024;

#[derive(Debug)]
struct Owner {
    ip: IpAddr,
    user: Option<String>,
    ended: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<Vec<u8>, Owner>>,
}

/// Registration of one control connection; marks it ended when dropped.
pub(crate) struct Registered {
    sessions: Arc<Sessions>,
    id: Vec<u8>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = self.sessions.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&self.id) {
            // Never logged in: nothing can pass the check with its sessions, forget it at once.
            Some(o) if o.user.is_none() => {
                map.remove(&self.id);
            }
            Some(o) => o.ended = Some(Instant::now()),
            None => {}
        }
    }
}

impl Sessions {
    pub(crate) fn register(self: &Arc<Self>, id: &[u8], ip: IpAddr) -> Registered {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PRUNE_AT {
            map.retain(|_, o| o.ended.is_none_or(|t| t.elapsed() < REMEMBER_ENDED));
        }
        if map.len() >= PRUNE_AT {
            // Still full of recently ended sessions: keep the live ones only.
            map.retain(|_, o| o.ended.is_none());
        }
        map.insert(id.to_vec(), Owner { ip: canonical(ip), user: None, ended: None });
        Registered { sessions: self.clone(), id: id.to_vec() }
    }

    pub(crate) fn logged_in(&self, id: &[u8], user: &str) {
        if let Some(o) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id) {
            o.user = Some(user.to_string());
        }
    }

    /// Whether a data connection of control connection `own` may use a session issued to `resumed`.
    pub(crate) fn may_use(&self, own: &[u8], resumed: &[u8]) -> bool {
        if own == resumed {
            return true;
        }
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match (map.get(own), map.get(resumed)) {
            (Some(a), Some(b)) => {
                a.user.is_some()
                    && a.user == b.user
                    && a.ip == b.ip
                    && b.ended.is_none_or(|t| t.elapsed() < REMEMBER_ENDED)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_user_same_address_only() {
        let s = Arc::new(Sessions::default());
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let other_ip: IpAddr = "10.0.0.2".parse().expect("ip");
        let a = s.register(b"a", ip);
        let b = s.register(b"b", ip);
        let c = s.register(b"c", other_ip);
        let d = s.register(b"d", ip);
        assert!(s.may_use(b"a", b"a"));
        assert!(!s.may_use(b"a", b"b"), "b has not logged in");
        s.logged_in(b"a", "alice");
        s.logged_in(b"b", "alice");
        s.logged_in(b"c", "alice");
        s.logged_in(b"d", "bob");
        assert!(s.may_use(b"a", b"b"));
        assert!(!s.may_use(b"a", b"c"), "another address");
        assert!(!s.may_use(b"a", b"d"), "another user");
        assert!(!s.may_use(b"a", b"zzz"), "unknown session");
        drop(b);
        assert!(s.may_use(b"a", b"b"), "an ended session's tickets stay valid for a while");
        let e = s.register(b"e", ip);
        drop(e);
        assert!(!s.map.lock().expect("lock").contains_key(&b"e"[..]), "never logged in: forgotten");
        drop((a, c, d));
    }
}
