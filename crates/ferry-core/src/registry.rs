//! The live sessions, so that changes to an account reach the sessions it already has: a user removed or
//! disabled, expired, no longer allowed from that address or over that protocol, or whose password or
//! keys changed, is logged out at once (within a second or so), whatever the protocol.
//!
//! The `ferry user` commands run in another process and write the user store; the server notices through
//! SQLite's `data_version` (polled every second, which costs one tiny query) and checks the users who have
//! sessions. Expiry is checked every minute too, since a date can pass without any change to the store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_auth::UserStore;
use tokio::sync::watch;

use crate::account::refusal;

struct Live {
    user: String,
    ip: IpAddr,
    protocol: &'static str,
    /// The user's credentials counter when the session started.
    credentials: i64,
    end: watch::Sender<Option<String>>,
}

/// The sessions of the server, by id.
#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Live>>,
}

/// A session's place in the registry; dropping it leaves.
pub(crate) struct Membership {
    registry: Arc<Registry>,
    id: u64,
    pub(crate) ended: watch::Receiver<Option<String>>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Ok(mut live) = self.registry.live.lock() {
            live.remove(&self.id);
        }
    }
}

impl Registry {
    /// Joins, unless `user` already has `max` sessions (0: no limit); then `Err` says how many.
    pub(crate) fn join(
        self: &Arc<Self>,
        user: &str,
        ip: IpAddr,
        protocol: &'static str,
        credentials: i64,
        max: usize,
    ) -> Result<Membership, usize> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (end, ended) = watch::channel(None);
        // Counted and joined under one lock, so two logins at once cannot both take the last place.
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if max > 0 {
            let has = live.values().filter(|s| s.user == user).count();
            if has >= max {
                return Err(has);
            }
        }
        live.insert(id, Live { user: user.to_string(), ip, protocol, credentials, end });
        drop(live);
        Ok(Membership { registry: self.clone(), id, ended })
    }

    /// Checks every live session against the store and ends those whose account no longer allows them.
    /// Blocking (reads the store).
    pub fn recheck(&self, store: &UserStore) {
        let users: Vec<String> = match self.live.lock() {
            Ok(live) => {
                let mut u: Vec<String> = live.values().map(|s| s.user.clone()).collect();
                u.sort();
                u.dedup();
                u
            }
            Err(_) => return,
        };
        for name in users {
            let current = match store.get(&name) {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(user = %name, "cannot re-check the account of live sessions: {e}");
                    continue;
                }
            };
            let Ok(live) = self.live.lock() else { return };
            for s in live.values().filter(|s| s.user == name && s.end.borrow().is_none()) {
                let reason = match &current {
                    None => Some("account removed".to_string()),
                    Some(u) => refusal(u, s.ip, s.protocol)
                        .or_else(|| (u.credentials != s.credentials).then(|| "password or keys changed".to_string())),
                };
                if let Some(reason) = reason {
                    tracing::info!(user = %name, client = %s.ip, protocol = s.protocol, "ending session: {reason}");
                    let _ = s.end.send(Some(reason));
                }
            }
        }
    }

    /// Re-checks live sessions whenever the user store changes, and every minute; runs for ever.
    /// `changed` (blocking) also runs whenever another process changed the store, and every minute.
    pub async fn watch(self: Arc<Self>, store: Arc<UserStore>, changed: impl Fn() + Send + Sync + 'static) {
        let changed_hook = Arc::new(changed);
        let mut last_version = None;
        let mut last_full = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let store2 = store.clone();
            let version = tokio::task::spawn_blocking(move || store2.data_version().ok()).await.ok().flatten();
            // The first reading counts as a change too: a `ferry ban` or `ferry user` command that ran
            // between the server's start (its first read of bans and accounts) and this first reading
            // would otherwise go unnoticed until something else changes.
            let changed = version.is_some() && version != last_version;
            last_version = version.or(last_version);
            let full = last_full.elapsed() >= Duration::from_secs(60);
            // Every minute too: a change this process wrote itself (SQLite does not count those) may have
            // raced with a reload.
            if changed || full {
                let f = changed_hook.clone();
                let _ = tokio::task::spawn_blocking(move || f()).await;
            }
            if changed || full {
                last_full = Instant::now();
                let (me, store) = (self.clone(), store.clone());
                let _ = tokio::task::spawn_blocking(move || me.recheck(&store)).await;
            }
        }
    }
}
