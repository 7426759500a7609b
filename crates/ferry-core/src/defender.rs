//! The defender: one score per client address across every protocol (failed logins, bytes that are no
//! protocol, per-address limits hit), and a ban once the score within the observation window reaches
//! the threshold, as SFTPGo's defender, OpenSSH's PerSourcePenalties and ProFTPD's mod_ban do. A banned
//! address is closed at accept, before any TLS or SSH work.
//!
//! Bans are written to the user database, so they survive restarts and `ferry ban add|remove` (another
//! process) reaches a running server: [`Defender::reload`] runs whenever the database changes.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_auth::{now_unix, UserStore};
use ferry_config::DefenderConfig;

use crate::event::{Event, Events};

/// Addresses scored at once; past this, new addresses are not scored until old scores expire, so a
/// flood from many addresses cannot grow the table without bound.
const MAX_TRACKED: usize = 100_000;
/// Shortest time between two log lines about one banned address knocking.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(60);

/// What an address did to earn points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A wrong password or user name, a key not authorised, an account that may not log in now.
    FailedLogin,
    /// Bytes that are no protocol Ferry speaks.
    Garbage,
    /// A per-address limit refused a connection.
    LimitHit,
}

impl Offence {
    fn name(self, n: usize) -> String {
        let (one, many) = match self {
            Offence::FailedLogin => ("failed login", "failed logins"),
            Offence::Garbage => ("connection that spoke no known protocol", "connections that spoke no known protocol"),
            Offence::LimitHit => ("per-address limit hit", "per-address limits hit"),
        };
        format!("{n} {}", if n == 1 { one } else { many })
    }
}

#[derive(Default)]
struct State {
    scores: HashMap<IpAddr, VecDeque<(Instant, u32, Offence)>>,
    /// Banned addresses and when their ban ends (Unix seconds).
    bans: HashMap<IpAddr, i64>,
    /// When each banned address's knocking was last logged, and how often it knocked since.
    knocks: HashMap<IpAddr, (Instant, u64)>,
    /// Bans made here that are not in the database yet.
    unsaved: std::collections::HashSet<IpAddr>,
}

pub struct Defender {
    cfg: DefenderConfig,
    store: Arc<UserStore>,
    events: Arc<Events>,
    state: Mutex<State>,
    /// False while nobody is banned: the check at accept is then one atomic load.
    any_bans: AtomicBool,
}

impl std::fmt::Debug for Defender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Defender").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// `1800` → `30m`, `7200` → `2h`, `90` → `90s`.
pub fn show_secs(secs: u64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl Defender {
    pub fn new(cfg: DefenderConfig, store: Arc<UserStore>, events: Arc<Events>) -> Arc<Defender> {
        Arc::new(Defender { cfg, store, events, state: Mutex::default(), any_bans: AtomicBool::new(false) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain maps behind: carry on with them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `ip` is banned now: asked at accept, before anything is read or sent.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        if !self.any_bans.load(Ordering::Acquire) {
            return false;
        }
        let ip = ip.to_canonical();
        let mut st = self.state();
        match st.bans.get(&ip) {
            Some(until) if *until > now_unix() => true,
            Some(_) => {
                st.bans.remove(&ip);
                st.knocks.remove(&ip);
                self.any_bans.store(!st.bans.is_empty(), Ordering::Release);
                false
            }
            None => false,
        }
    }

    /// Notes a connection refused because its address is banned: one log line per address per minute.
    pub fn knocked(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let mut st = self.state();
        let until = st.bans.get(&ip).copied().unwrap_or(0);
        let now = Instant::now();
        let (last, n) = st.knocks.entry(ip).or_insert((now - REFUSED_LOG_EVERY * 2, 0));
        *n += 1;
        if now.duration_since(*last) < REFUSED_LOG_EVERY {
            return;
        }
        let refused = *n;
        *last = now;
        *n = 0;
        drop(st);
        let left = (until - now_unix()).max(0) as u64;
        let left =
            if until == ferry_auth::FOREVER { "for good".to_string() } else { format!("for {} more", show_secs(left)) };
        tracing::info!(client = %ip, refused, "refusing connections from a banned address ({left}; `ferry ban remove {ip}` lifts it)");
    }

    /// Adds `offence`'s points to `ip`'s score, and bans it when the score reaches the threshold.
    pub fn record(self: &Arc<Self>, ip: IpAddr, offence: Offence) {
        let points = match offence {
            Offence::FailedLogin => self.cfg.score_failed_login,
            Offence::Garbage => self.cfg.score_garbage,
            Offence::LimitHit => self.cfg.score_limit,
        };
        let ip = ip.to_canonical();
        if !self.cfg.enabled || points == 0 || self.cfg.safelist.iter().any(|c| c.contains(ip)) {
            return;
        }
        let now = Instant::now();
        let mut st = self.state();
        if st.bans.contains_key(&ip) {
            return;
        }
        if !st.scores.contains_key(&ip) && st.scores.len() >= MAX_TRACKED {
            let window = self.cfg.observation;
            st.scores.retain(|_, q| q.back().is_some_and(|(t, _, _)| now.duration_since(*t) < window));
            if st.scores.len() >= MAX_TRACKED {
                return;
            }
        }
        let q = st.scores.entry(ip).or_default();
        q.push_back((now, points, offence));
        while q.front().is_some_and(|(t, _, _)| now.duration_since(*t) >= self.cfg.observation) {
            q.pop_front();
        }
        let score: u32 = q.iter().map(|(_, p, _)| *p).sum();
        if score < self.cfg.threshold {
            return;
        }
        let mut counts: Vec<(Offence, usize)> = Vec::new();
        for (_, _, o) in q.iter() {
            match counts.iter_mut().find(|(k, _)| k == o) {
                Some((_, n)) => *n += 1,
                None => counts.push((*o, 1)),
            }
        }
        st.scores.remove(&ip);
        let secs = self.cfg.ban.as_secs();
        let until = now_unix().saturating_add(secs as i64);
        st.bans.insert(ip, until);
        st.unsaved.insert(ip);
        self.any_bans.store(true, Ordering::Release);
        drop(st);
        let what: Vec<String> = counts.iter().map(|(o, n)| o.name(*n)).collect();
        let reason = format!("{} within {}", what.join(", "), show_secs(self.cfg.observation.as_secs()));
        self.events.emit(Event::Ban { ip, secs, reason: reason.clone() });
        let me = self.clone();
        let persist = move || {
            if let Err(e) = me.store.add_ban(ip, until, &reason) {
                tracing::error!(client = %ip, "cannot save the ban in the user database (it holds until restart): {e}");
            }
            me.state().unsaved.remove(&ip);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(persist)),
            Err(_) => persist(),
        }
    }

    /// Reads the bans from the user database (blocking): at start, and whenever another process changed
    /// it. A ban lifted there is lifted here, with the address's score.
    pub fn reload(&self) {
        let bans = match self.store.bans() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("cannot read the bans from the user database: {e}");
                return;
            }
        };
        let mut st = self.state();
        let fresh: HashMap<IpAddr, i64> = bans.into_iter().map(|b| (b.ip.to_canonical(), b.until)).collect();
        // A ban made here a moment ago may not be written yet: keep it; any other one missing was lifted.
        let pending: Vec<(IpAddr, i64)> =
            st.bans.iter().filter(|(ip, _)| st.unsaved.contains(ip)).map(|(i, u)| (*i, *u)).collect();
        let lifted: Vec<IpAddr> =
            st.bans.keys().filter(|ip| !fresh.contains_key(ip) && !st.unsaved.contains(ip)).copied().collect();
        for ip in &lifted {
            st.scores.remove(ip);
            st.knocks.remove(ip);
        }
        st.bans = fresh;
        st.bans.extend(pending);
        self.any_bans.store(!st.bans.is_empty(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defender(cfg: DefenderConfig) -> (Arc<Defender>, std::path::PathBuf) {
        use std::sync::atomic::AtomicUsize;
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferry-defender-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("tmp");
        let store = Arc::new(UserStore::open(&dir.join("users.db")).expect("store"));
        (Defender::new(cfg, store, Events::new()), dir)
    }

    fn cfg(threshold: u32) -> DefenderConfig {
        DefenderConfig { threshold, safelist: vec![], ..DefenderConfig::default() }
    }

    const A: &str = "192.0.2.1";

    #[test]
    fn the_threshold_bans_that_address_only_and_the_ban_is_saved() {
        let (d, dir) = defender(cfg(3));
        let a: IpAddr = A.parse().expect("ip");
        d.record(a, Offence::FailedLogin);
        d.record(a, Offence::LimitHit);
        assert!(!d.is_banned(a), "below the threshold");
        d.record("::ffff:192.0.2.1".parse().expect("ip"), Offence::FailedLogin);
        assert!(d.is_banned(a), "the third point bans, whatever the address's notation");
        assert!(!d.is_banned("192.0.2.2".parse().expect("ip")));
        let saved = d.store.bans().expect("bans");
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].reason, "2 failed logins, 1 per-address limit hit within 10m");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn safelisted_and_disabled_never_ban_and_zero_points_do_not_count() {
        let (d, dir) = defender(DefenderConfig { threshold: 1, ..DefenderConfig::default() });
        d.record("127.0.0.1".parse().expect("ip"), Offence::FailedLogin);
        assert!(!d.is_banned("127.0.0.1".parse().expect("ip")), "loopback is on the default safelist");
        let (d2, dir2) = defender(DefenderConfig { enabled: false, ..cfg(1) });
        d2.record(A.parse().expect("ip"), Offence::FailedLogin);
        assert!(!d2.is_banned(A.parse().expect("ip")));
        let (d3, dir3) = defender(DefenderConfig { score_garbage: 0, ..cfg(1) });
        d3.record(A.parse().expect("ip"), Offence::Garbage);
        assert!(!d3.is_banned(A.parse().expect("ip")));
        for dir in [dir, dir2, dir3] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn points_older_than_the_window_are_forgotten() {
        let (d, dir) = defender(DefenderConfig { observation: Duration::from_millis(50), ..cfg(2) });
        let a: IpAddr = A.parse().expect("ip");
        d.record(a, Offence::FailedLogin);
        std::thread::sleep(Duration::from_millis(80));
        d.record(a, Offence::FailedLogin);
        assert!(!d.is_banned(a));
        d.record(a, Offence::FailedLogin);
        assert!(d.is_banned(a));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bans_made_elsewhere_are_loaded_and_lifts_clear_the_score() {
        let (d, dir) = defender(cfg(2));
        let a: IpAddr = A.parse().expect("ip");
        d.record(a, Offence::FailedLogin);
        d.store.add_ban(a, now_unix() + 60, "by hand").expect("ban");
        assert!(!d.is_banned(a), "not seen before a reload");
        d.reload();
        assert!(d.is_banned(a));
        d.store.remove_ban(a).expect("lift");
        d.reload();
        assert!(!d.is_banned(a));
        d.record(a, Offence::FailedLogin);
        assert!(!d.is_banned(a), "one point after a lift does not ban again at once: the lift cleared the score");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_ban_ends_on_time_and_leaves_the_others_in_force() {
        let (d, dir) = defender(DefenderConfig { ban: Duration::from_secs(1), ..cfg(1) });
        let (short, long): (IpAddr, IpAddr) = (A.parse().expect("ip"), "192.0.2.2".parse().expect("ip"));
        d.store.add_ban(long, now_unix() + 60, "by hand").expect("ban");
        d.reload();
        d.record(short, Offence::FailedLogin);
        assert!(d.is_banned(short), "banned for a second");
        std::thread::sleep(Duration::from_millis(2100));
        assert!(!d.is_banned(short), "the second is over");
        assert!(d.is_banned(long), "the other ban still holds after the ended one was dropped");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_full_table_scores_no_new_address_until_old_scores_expire() {
        let window = Duration::from_millis(1000);
        let (d, dir) = defender(DefenderConfig { observation: window, ..cfg(2) });
        let started = Instant::now();
        for n in 0..MAX_TRACKED as u32 {
            d.record(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n)), Offence::FailedLogin);
        }
        assert!(
            started.elapsed() < window,
            "the table filled within the window ({:?}); the test needs that",
            started.elapsed()
        );
        let new: IpAddr = A.parse().expect("ip");
        d.record(new, Offence::FailedLogin);
        d.record(new, Offence::FailedLogin);
        assert!(!d.is_banned(new), "no room to score a new address while the table is full");
        // The last address filled: its point is the youngest, so it is still in the window.
        let tracked = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + MAX_TRACKED as u32 - 1));
        d.record(tracked, Offence::FailedLogin);
        assert!(d.is_banned(tracked), "an address already in the table is still scored");
        std::thread::sleep(window);
        d.record(new, Offence::FailedLogin);
        d.record(new, Offence::FailedLogin);
        assert!(d.is_banned(new), "expired scores made room");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(show_secs(1800), "30m");
        assert_eq!(show_secs(7200), "2h");
        assert_eq!(show_secs(172_800), "2d");
        assert_eq!(show_secs(90), "90s");
        assert_eq!(show_secs(90_000), "25h", "more than a day, but not whole days");
        assert_eq!(show_secs(5400), "90m");
    }
}
