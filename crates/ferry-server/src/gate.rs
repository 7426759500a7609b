//! Admission at accept: how many connections may be open, and how many may still be logging in, per
//! source address and in total (OpenSSH's PerSourceMaxStartups and MaxStartups `start:rate:full`). A
//! connection keeps its place among the unauthenticated ones until its user logs in or it closes, and
//! it gets a deadline for logging in that counts from accept.
//!
//! Refusals are logged at most once per [`LOG_EVERY`] per reason, with how many were refused meanwhile,
//! so that a flood cannot flood the log too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_auth::Admission;
use ferry_config::LimitsConfig;

/// Shortest time between two log lines about refused connections of one kind.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Too many connections of every kind.
    Full,
    /// Too many connections from this address that have not logged in.
    PerSource,
    /// Too many connections that have not logged in, in total (MaxStartups).
    Startups,
    /// Too many connections of every kind from this address.
    PerIp,
}

impl Refusal {
    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Full => "Too many connections; try again later",
            Refusal::PerSource => "Too many connections from your address that have not logged in; try again later",
            Refusal::Startups => "Too many connections are logging in; try again later",
            Refusal::PerIp => "Too many connections from your address; try again later",
        }
    }

    fn log_text(self) -> &'static str {
        match self {
            Refusal::Full => "the server holds its maximum of connections ([limits] max_connections)",
            Refusal::PerSource => {
                "too many unauthenticated connections from one address ([limits] per_source_max_startups)"
            }
            Refusal::Startups => "too many unauthenticated connections in total ([limits] max_startups)",
            Refusal::PerIp => "too many connections from one address ([limits] max_connections_per_ip)",
        }
    }
}

#[derive(Default)]
struct Counts {
    open: usize,
    unauthenticated: usize,
    per_source: HashMap<IpAddr, usize>,
    /// Open connections per address, kept only when `max_connections_per_ip` is set.
    per_ip: HashMap<IpAddr, usize>,
}

/// Refusals since the last log line of each kind.
#[derive(Default)]
struct Refused {
    last: HashMap<Refusal, Instant>,
    since: HashMap<Refusal, (u64, Option<IpAddr>)>,
}

pub struct Gate {
    limits: LimitsConfig,
    counts: Mutex<Counts>,
    refused: Mutex<Refused>,
}

/// A connection's place: dropping it frees its slot (and, if it never logged in, its startup place).
struct Place {
    gate: Arc<Gate>,
    ip: IpAddr,
}

/// A connection's share of the open-connections count (and of its address's, when that is limited).
pub struct Open(Arc<Gate>, Option<IpAddr>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Ok(mut c) = self.0.counts.lock() {
            c.open = c.open.saturating_sub(1);
            if let Some(ip) = self.1 {
                if let Some(n) = c.per_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        c.per_ip.remove(&ip);
                    }
                }
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Ok(mut c) = self.gate.counts.lock() {
            c.unauthenticated = c.unauthenticated.saturating_sub(1);
            if let Some(n) = c.per_source.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_source.remove(&self.ip);
                }
            }
        }
    }
}

impl Gate {
    pub fn new(limits: LimitsConfig) -> Arc<Gate> {
        Arc::new(Gate { limits, counts: Mutex::default(), refused: Mutex::default() })
    }

    /// Admits a new connection from `ip`, or says why not. `roll` is a random number in 0..100 for the
    /// random early drop between MaxStartups' start and full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, roll: u32) -> Result<(Open, Admission), Refusal> {
        let ip = ip.to_canonical();
        let mut c = self.counts.lock().map_err(|_| Refusal::Full)?;
        if c.open >= self.limits.max_connections {
            return Err(Refusal::Full);
        }
        let per_ip = self.limits.max_connections_per_ip;
        if per_ip > 0 && c.per_ip.get(&ip).copied().unwrap_or(0) >= per_ip {
            return Err(Refusal::PerIp);
        }
        if c.per_source.get(&ip).copied().unwrap_or(0) >= self.limits.per_source_max_startups {
            return Err(Refusal::PerSource);
        }
        let m = self.limits.max_startups;
        if c.unauthenticated >= m.full {
            return Err(Refusal::Startups);
        }
        if c.unauthenticated >= m.start {
            // OpenSSH's drop_connection(): rate% at start, rising linearly to 100% at full.
            let span = (m.full - m.start).max(1) as u64;
            let p = u64::from(m.rate) + (100 - u64::from(m.rate)) * (c.unauthenticated - m.start) as u64 / span;
            if u64::from(roll) < p {
                return Err(Refusal::Startups);
            }
        }
        c.open += 1;
        c.unauthenticated += 1;
        *c.per_source.entry(ip).or_insert(0) += 1;
        if per_ip > 0 {
            *c.per_ip.entry(ip).or_insert(0) += 1;
        }
        drop(c);
        let place = Place { gate: self.clone(), ip };
        let open = Open(self.clone(), (per_ip > 0).then_some(ip));
        Ok((open, Admission::new(self.limits.login_grace, Some(Box::new(place)))))
    }

    /// Notes a refusal; logs one line per kind at most every [`LOG_EVERY`].
    pub fn refused(&self, why: Refusal, ip: IpAddr) {
        let Ok(mut r) = self.refused.lock() else { return };
        let entry = r.since.entry(why).or_insert((0, None));
        entry.0 += 1;
        entry.1 = Some(ip);
        let now = Instant::now();
        if r.last.get(&why).is_some_and(|t| now.duration_since(*t) < LOG_EVERY) {
            return;
        }
        r.last.insert(why, now);
        let (n, last_ip) = r.since.remove(&why).unwrap_or((1, Some(ip)));
        let who = last_ip.map(|i| i.to_string()).unwrap_or_default();
        tracing::warn!(
            refused = n,
            client = %who,
            "hint: refusing connections: {}; {n} refused since the last such line, the latest from {who}",
            why.log_text()
        );
    }

    #[cfg(test)]
    fn unauthenticated(&self) -> usize {
        self.counts.lock().map(|c| c.unauthenticated).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_config::MaxStartups;

    fn gate(per_source: usize, start: usize, rate: u32, full: usize) -> Arc<Gate> {
        Gate::new(LimitsConfig {
            login_grace: Duration::from_secs(60),
            max_startups: MaxStartups { start, rate, full },
            per_source_max_startups: per_source,
            max_connections: 1000,
            max_connections_per_ip: 0,
            max_sessions_per_user: 0,
        })
    }

    #[test]
    fn connections_per_address_count_logged_in_ones_too() {
        let g = Gate::new(LimitsConfig { max_connections_per_ip: 2, ..LimitsConfig::default() });
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let (first, mut admission) = g.admit(a, 99).expect("admitted");
        admission.logged_in();
        let _second = g.admit(a, 99).expect("admitted");
        assert_eq!(g.admit(a, 99).err(), Some(Refusal::PerIp), "a logged-in connection still counts");
        assert!(g.admit("192.0.2.2".parse().expect("ip"), 99).is_ok());
        drop(first);
        assert!(g.admit(a, 99).is_ok(), "a closed connection gives its place back");
    }

    #[test]
    fn one_address_gets_its_share_and_no_more() {
        let g = gate(3, 100, 30, 200);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let held: Vec<_> = (0..3).map(|_| g.admit(a, 99).expect("admitted")).collect();
        assert_eq!(g.admit(a, 99).err(), Some(Refusal::PerSource));
        assert!(g.admit(b, 99).is_ok(), "another address is not affected");
        drop(held);
        assert!(g.admit(a, 99).is_ok(), "closed connections give their place back");
    }

    #[test]
    fn logging_in_frees_the_startup_place_but_not_the_connection() {
        let g = gate(1, 100, 30, 200);
        let a: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        let (_open, mut admission) = g.admit(a, 99).expect("admitted");
        assert_eq!(g.admit("192.0.2.1".parse().expect("ip"), 99).err(), Some(Refusal::PerSource));
        admission.logged_in();
        assert_eq!(g.unauthenticated(), 0);
        assert!(g.admit(a, 99).is_ok());
    }

    #[test]
    fn random_early_drop_between_start_and_full() {
        let g = gate(1000, 2, 30, 4);
        let ip: IpAddr = "192.0.2.9".parse().expect("ip");
        let _a = g.admit(ip, 0).expect("below start: always");
        let _b = g.admit(ip, 0).expect("below start: always");
        // At start: refused when the roll is under 30.
        assert_eq!(g.admit(ip, 29).err(), Some(Refusal::Startups));
        let _c = g.admit(ip, 30).expect("roll above the rate");
        // Half way to full: 65%.
        assert_eq!(g.admit(ip, 64).err(), Some(Refusal::Startups));
        let _d = g.admit(ip, 65).expect("roll above 65");
        assert_eq!(g.admit(ip, 99).err(), Some(Refusal::Startups), "at full: always");
    }
}
