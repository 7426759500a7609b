//! Banned client addresses, kept with the users so that bans survive restarts and the `ferry ban`
//! commands of another process reach a running server (it watches the database's `data_version`).

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{AuthError, UserStore};

/// `until` of a ban that never ends.
pub const FOREVER: i64 = i64::MAX;

/// One banned address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub ip: IpAddr,
    /// Unix seconds when the ban ends ([`FOREVER`] for never).
    pub until: i64,
    pub reason: String,
    /// Unix seconds when the ban was made.
    pub created: i64,
}

pub fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl UserStore {
    /// Bans `ip` until `until` (Unix seconds), replacing a ban it has.
    pub fn add_ban(&self, ip: IpAddr, until: i64, reason: &str) -> Result<(), AuthError> {
        let ip = ip.to_canonical().to_string();
        self.db()
            .execute(
                "INSERT INTO bans (ip, until, reason, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (ip) DO UPDATE SET until = excluded.until, reason = excluded.reason,
                 created = excluded.created",
                &[ip.into(), until.into(), reason.into(), now_unix().into()],
                "adding a ban",
            )
            .map(|_| ())
    }

    /// Lifts the ban of `ip`; false if it had none.
    pub fn remove_ban(&self, ip: IpAddr) -> Result<bool, AuthError> {
        let ip = ip.to_canonical().to_string();
        self.db().execute("DELETE FROM bans WHERE ip = ?1", &[ip.into()], "removing a ban").map(|n| n > 0)
    }

    /// The bans still in force, oldest first; ended ones are deleted on the way.
    pub fn bans(&self) -> Result<Vec<Ban>, AuthError> {
        let db = self.db();
        db.execute("DELETE FROM bans WHERE until <= ?1", &[now_unix().into()], "removing ended bans")?;
        let rows = db.query("SELECT ip, until, reason, created FROM bans ORDER BY created, ip", &[], "listing bans")?;
        let mut out = Vec::new();
        for r in rows {
            // A row someone wrote by hand that is no address is skipped, not fatal.
            if let Ok(ip) = r.text(0)?.parse() {
                out.push(Ban { ip, until: r.int(1)?, reason: r.text(2)?, created: r.int(3)? });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_are_stored_replaced_listed_and_lifted() {
        for s in crate::testdb::stores() {
            let a: IpAddr = "192.0.2.7".parse().expect("ip");
            s.add_ban(a, now_unix() + 60, "first").expect("ban");
            s.add_ban("::ffff:192.0.2.7".parse().expect("ip"), FOREVER, "again").expect("ban");
            s.add_ban("192.0.2.8".parse().expect("ip"), now_unix() - 1, "over").expect("ban");
            let bans = s.bans().expect("list");
            assert_eq!(bans.len(), 1, "{}: one row per address, and ended bans are gone: {bans:?}", s.kind);
            assert_eq!((bans[0].ip, bans[0].until, bans[0].reason.as_str()), (a, FOREVER, "again"));
            // Measured against the clock itself, not now_unix (which the store uses).
            let clock = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64;
            assert!((bans[0].created - clock).abs() < 60, "{}: made now, not {}", s.kind, bans[0].created);
            assert!(s.remove_ban(a).expect("lift"));
            assert!(!s.remove_ban(a).expect("lift"), "no ban left to lift");
            assert!(s.bans().expect("list").is_empty());
        }
    }
}
