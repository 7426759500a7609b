use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use russh::keys::PublicKey;

use crate::db::{Db, Row, Value};
use crate::password::verify_password_bounded;
use crate::{hash_password, validate_username, AuthError};

/// A user as the servers need them at login.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    /// The real directory that is this user's virtual `/`.
    pub home: PathBuf,
    pub has_password: bool,
    pub key_count: usize,
    /// `ferry user disable`: no login, and live sessions end.
    pub disabled: bool,
    /// Last day the account may log in (`YYYY-MM-DD`, UTC), if it expires.
    pub expires: Option<String>,
    /// Addresses the account may log in from (CIDR text); empty: anywhere.
    pub allow_from: Vec<String>,
    /// Protocols the account may use (`sftp`, `ftps`, `ftp`); `None`: every one the server serves.
    pub protocols: Option<Vec<String>>,
    /// Bumped whenever the password or the keys change, so live sessions can tell.
    pub credentials: i64,
    /// Sessions at once (`None`: `[limits] max_sessions_per_user`; 0: no limit).
    pub max_sessions: Option<u64>,
    /// Bytes per second per session, uploading and downloading (`None`: no limit).
    pub upload_rate: Option<u64>,
    pub download_rate: Option<u64>,
    /// Bytes and regular files the user's tree may hold (`None`: no limit).
    pub quota_bytes: Option<u64>,
    pub quota_files: Option<u64>,
    /// Where the user's files are: `local` or `s3`; `None`: the server's `[storage] backend`.
    pub storage: Option<String>,
}

/// Users in a SQLite file (the default) or a PostgreSQL database shared by several nodes. Every call reads
/// the database afresh, so changes made by another process (the `ferry user` commands, another node) are
/// seen at the next login.
pub struct UserStore {
    db: Db,
}

const USER_COLUMNS: &str = "SELECT name, home, CASE WHEN password_hash IS NULL THEN 0 ELSE 1 END,
        (SELECT count(*) FROM user_keys k WHERE k.\"user\" = u.name),
        disabled, expires, allow_from, protocols, credentials, max_sessions, upload_rate, download_rate,
        quota_bytes, quota_files, storage
    FROM users u";

fn list_field(text: Option<String>) -> Vec<String> {
    text.map(|t| t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

fn positive(n: Option<i64>) -> Option<u64> {
    n.filter(|n| *n > 0).map(|n| n as u64)
}

fn user_row(r: &Row) -> Result<User, AuthError> {
    Ok(User {
        name: r.text(0)?,
        home: PathBuf::from(r.text(1)?),
        has_password: r.int(2)? != 0,
        key_count: r.int(3)?.max(0) as usize,
        disabled: r.int(4)? != 0,
        expires: r.opt_text(5)?,
        allow_from: list_field(r.opt_text(6)?),
        protocols: r.opt_text(7)?.map(|p| list_field(Some(p))),
        credentials: r.int(8)?,
        max_sessions: r.opt_int(9)?.map(|n| n.max(0) as u64),
        upload_rate: positive(r.opt_int(10)?),
        download_rate: positive(r.opt_int(11)?),
        quota_bytes: positive(r.opt_int(12)?),
        quota_files: positive(r.opt_int(13)?),
        storage: r.opt_text(14)?,
    })
}

/// A hash to verify against when the user does not exist, so that a wrong user name costs the same
/// time as a wrong password and does not reveal which names exist.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("ferry-dummy-password").unwrap_or_default())
}

fn parse_key(line: &str) -> Result<PublicKey, AuthError> {
    PublicKey::from_openssh(line.trim()).map_err(|e| AuthError::InvalidKey { reason: e.to_string() })
}

fn count_as_u64(n: Option<u64>) -> Value {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX)).into()
}

impl UserStore {
    /// Opens (creating if needed) the SQLite store at `path`.
    pub fn open(path: &Path) -> Result<UserStore, AuthError> {
        Ok(UserStore { db: Db::open_sqlite(path)? })
    }

    /// Connects to the PostgreSQL store at `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`) and
    /// creates or updates its tables.
    pub fn open_postgres(url: &str) -> Result<UserStore, AuthError> {
        Ok(UserStore { db: Db::open_postgres(url)? })
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    pub fn add_user(&self, name: &str, password: Option<&str>, home: &Path) -> Result<(), AuthError> {
        validate_username(name)?;
        let hash = password.map(hash_password).transpose()?;
        let n = self.db.execute(
            "INSERT INTO users (name, password_hash, home) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
            &[name.into(), hash.into(), home.to_string_lossy().into_owned().into()],
            "adding user",
        )?;
        if n == 0 {
            return Err(AuthError::UserExists(name.to_string()));
        }
        Ok(())
    }

    pub fn remove_user(&self, name: &str) -> Result<(), AuthError> {
        let n = self.db.execute("DELETE FROM users WHERE name = ?1", &[name.into()], "removing user")?;
        if n == 0 {
            return Err(AuthError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    pub fn set_password(&self, name: &str, password: &str) -> Result<(), AuthError> {
        let hash = hash_password(password)?;
        let n = self.db.execute(
            "UPDATE users SET password_hash = ?2, credentials = credentials + 1 WHERE name = ?1",
            &[name.into(), hash.into()],
            "changing password",
        )?;
        if n == 0 {
            return Err(AuthError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Adds an OpenSSH public key (`ssh-ed25519 AAAA... comment`) to a user. Adding the same key twice is
    /// not an error. Returns the key's SHA256 fingerprint.
    pub fn add_key(&self, name: &str, key_line: &str) -> Result<String, AuthError> {
        let key = parse_key(key_line)?;
        let fp = key.fingerprint(Default::default()).to_string();
        let canonical = key.to_openssh().map_err(|e| AuthError::InvalidKey { reason: e.to_string() })?;
        if self.get(name)?.is_none() {
            return Err(AuthError::NoSuchUser(name.to_string()));
        }
        self.db.execute(
            "INSERT INTO user_keys (\"user\", key, fingerprint) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            &[name.into(), canonical.into(), fp.clone().into()],
            "adding key",
        )?;
        self.db.execute(
            "UPDATE users SET credentials = credentials + 1 WHERE name = ?1",
            &[name.into()],
            "adding key",
        )?;
        Ok(fp)
    }

    pub fn get(&self, name: &str) -> Result<Option<User>, AuthError> {
        self.db
            .query_row(&format!("{USER_COLUMNS} WHERE name = ?1"), &[name.into()], "looking up user")?
            .map(|r| user_row(&r))
            .transpose()
    }

    pub fn list(&self) -> Result<Vec<User>, AuthError> {
        let rows = self.db.query(&format!("{USER_COLUMNS} ORDER BY name"), &[], "listing users")?;
        rows.iter().map(user_row).collect()
    }

    pub fn is_empty(&self) -> Result<bool, AuthError> {
        match self.db.query_row("SELECT count(*) FROM users", &[], "counting users")? {
            Some(r) => Ok(r.int(0)? == 0),
            None => Ok(true),
        }
    }

    /// The user, if `password` is theirs. Costs one argon2 verification whether or not the user exists.
    pub fn check_password(&self, name: &str, password: &str) -> Result<Option<User>, AuthError> {
        let hash = self.password_hash(name)?;
        let ok = verify_password_bounded(password, hash.as_deref().unwrap_or(dummy_hash())) && hash.is_some();
        if ok {
            self.get(name)
        } else {
            Ok(None)
        }
    }

    /// A user's keys as stored (OpenSSH public key lines, comments kept), by fingerprint, oldest first.
    pub fn keys(&self, name: &str) -> Result<Vec<(String, String)>, AuthError> {
        let rows = self.db.query(
            "SELECT fingerprint, key FROM user_keys WHERE \"user\" = ?1 ORDER BY rowid",
            &[name.into()],
            "reading keys",
        )?;
        rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
    }

    /// Removes the key with this fingerprint (`SHA256:...`); false if the user has none such.
    pub fn remove_key(&self, name: &str, fingerprint: &str) -> Result<bool, AuthError> {
        let n = self.db.execute(
            "DELETE FROM user_keys WHERE \"user\" = ?1 AND fingerprint = ?2",
            &[name.into(), fingerprint.into()],
            "removing key",
        )?;
        if n > 0 {
            self.db.execute(
                "UPDATE users SET credentials = credentials + 1 WHERE name = ?1",
                &[name.into()],
                "removing key",
            )?;
        }
        Ok(n > 0)
    }

    /// Sets one column of a user's account settings; an error if there is no such user.
    fn set_account(&self, name: &str, column: &str, value: Value) -> Result<(), AuthError> {
        let n = self.db.execute(
            &format!("UPDATE users SET {column} = ?2 WHERE name = ?1"),
            &[name.into(), value],
            "changing the account",
        )?;
        if n == 0 {
            return Err(AuthError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), AuthError> {
        self.set_account(name, "disabled", Value::Int(disabled.into()))
    }

    /// `YYYY-MM-DD` (checked by the caller), or `None` for never.
    pub fn set_expires(&self, name: &str, date: Option<&str>) -> Result<(), AuthError> {
        self.set_account(name, "expires", date.into())
    }

    /// CIDR texts (checked by the caller); empty: anywhere.
    pub fn set_allow_from(&self, name: &str, cidrs: &[String]) -> Result<(), AuthError> {
        self.set_account(name, "allow_from", (!cidrs.is_empty()).then(|| cidrs.join(",")).into())
    }

    /// Protocol names (checked by the caller); `None`: every protocol.
    pub fn set_protocols(&self, name: &str, protocols: Option<&[String]>) -> Result<(), AuthError> {
        self.set_account(name, "protocols", protocols.map(|p| p.join(",")).into())
    }

    /// Sessions at once; `None`: the server's default.
    pub fn set_max_sessions(&self, name: &str, n: Option<u64>) -> Result<(), AuthError> {
        self.set_account(name, "max_sessions", count_as_u64(n))
    }

    /// Bytes per second per session; `None` or 0: no limit.
    pub fn set_rates(
        &self,
        name: &str,
        upload: Option<Option<u64>>,
        download: Option<Option<u64>>,
    ) -> Result<(), AuthError> {
        if let Some(up) = upload {
            self.set_account(name, "upload_rate", count_as_u64(up.filter(|n| *n > 0)))?;
        }
        if let Some(down) = download {
            self.set_account(name, "download_rate", count_as_u64(down.filter(|n| *n > 0)))?;
        }
        Ok(())
    }

    /// Quotas; `Some(0)` lifts one, `None` leaves it as it is.
    pub fn set_quota(&self, name: &str, bytes: Option<u64>, files: Option<u64>) -> Result<(), AuthError> {
        for (column, value) in [("quota_bytes", bytes), ("quota_files", files)] {
            if let Some(v) = value {
                self.set_account(name, column, count_as_u64((v > 0).then_some(v)))?;
            }
        }
        Ok(())
    }

    /// Where the user's files are (`local`, `s3`; checked by the caller); `None`: the server's default.
    pub fn set_storage(&self, name: &str, storage: Option<&str>) -> Result<(), AuthError> {
        self.set_account(name, "storage", storage.into())
    }

    /// Changes whenever the data changed elsewhere (another process: the `ferry user` commands; with
    /// PostgreSQL, another node too), so a server can poll it cheaply and react without a restart.
    pub fn data_version(&self) -> Result<i64, AuthError> {
        self.db.data_version()
    }

    /// Sets the permission rule of `name` at `path` (replacing one there). `perms` is stored as given;
    /// the caller has checked it.
    pub fn set_permission(&self, name: &str, path: &str, perms: &str) -> Result<(), AuthError> {
        let n = self.db.execute(
            "INSERT INTO user_permissions (\"user\", path, perms) SELECT name, ?2, ?3 FROM users WHERE name = ?1
             ON CONFLICT (\"user\", path) DO UPDATE SET perms = excluded.perms",
            &[name.into(), path.into(), perms.into()],
            "setting a permission rule",
        )?;
        if n == 0 {
            return Err(AuthError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Removes the rule of `name` at `path`; false if there was none.
    pub fn remove_permission(&self, name: &str, path: &str) -> Result<bool, AuthError> {
        let n = self.db.execute(
            "DELETE FROM user_permissions WHERE \"user\" = ?1 AND path = ?2",
            &[name.into(), path.into()],
            "removing a permission rule",
        )?;
        Ok(n > 0)
    }

    /// Every rule of `name`, as `(path, perms)`, by path.
    pub fn permissions(&self, name: &str) -> Result<Vec<(String, String)>, AuthError> {
        let rows = self.db.query(
            "SELECT path, perms FROM user_permissions WHERE \"user\" = ?1 ORDER BY path",
            &[name.into()],
            "reading permission rules",
        )?;
        rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
    }

    /// What `name`'s files take, as the servers last counted it (shared by every node of a cluster).
    pub fn quota_usage(&self, name: &str) -> Result<Option<(u64, u64)>, AuthError> {
        match self.db.query_row(
            "SELECT bytes, files FROM quota_usage WHERE \"user\" = ?1",
            &[name.into()],
            "reading quota usage",
        )? {
            Some(r) => Ok(Some((r.int(0)?.max(0) as u64, r.int(1)?.max(0) as u64))),
            None => Ok(None),
        }
    }

    /// Records a fresh count of `name`'s files (a walk of their tree).
    pub fn set_quota_usage(&self, name: &str, bytes: u64, files: u64) -> Result<(), AuthError> {
        let (b, f) = (i64::try_from(bytes).unwrap_or(i64::MAX), i64::try_from(files).unwrap_or(i64::MAX));
        self.db.execute(
            "INSERT INTO quota_usage (\"user\", bytes, files) SELECT name, ?2, ?3 FROM users WHERE name = ?1
             ON CONFLICT (\"user\") DO UPDATE SET bytes = excluded.bytes, files = excluded.files",
            &[name.into(), b.into(), f.into()],
            "recording quota usage",
        )?;
        Ok(())
    }

    /// Adds a change (an upload completed, a file removed) to `name`'s count, in one statement, so the
    /// changes of every node add up.
    pub fn add_quota_usage(&self, name: &str, bytes: i64, files: i64) -> Result<(), AuthError> {
        self.db.execute(
            "UPDATE quota_usage SET bytes = CASE WHEN bytes + ?2 < 0 THEN 0 ELSE bytes + ?2 END,
             files = CASE WHEN files + ?3 < 0 THEN 0 ELSE files + ?3 END WHERE \"user\" = ?1",
            &[name.into(), bytes.into(), files.into()],
            "updating quota usage",
        )?;
        Ok(())
    }

    /// The stored password hash of `name` (None: no such user, or no password).
    fn password_hash(&self, name: &str) -> Result<Option<String>, AuthError> {
        match self.db.query_row(
            "SELECT password_hash FROM users WHERE name = ?1",
            &[name.into()],
            "checking password",
        )? {
            Some(r) => r.opt_text(0),
            None => Ok(None),
        }
    }

    /// The user, if `key` is one of their authorised keys.
    pub fn check_key(&self, name: &str, key: &PublicKey) -> Result<Option<User>, AuthError> {
        let fp = key.fingerprint(Default::default()).to_string();
        let stored = match self.db.query_row(
            "SELECT key FROM user_keys WHERE \"user\" = ?1 AND fingerprint = ?2",
            &[name.into(), fp.into()],
            "checking key",
        )? {
            Some(r) => Some(r.text(0)?),
            None => None,
        };
        // The fingerprint picks the row; the full key comparison is what decides.
        match stored.map(|s| parse_key(&s)) {
            Some(Ok(k)) if k.key_data() == key.key_data() => self.get(name),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHash;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";

    use crate::testdb::stores;

    #[test]
    fn unknown_users_cost_a_real_argon2id_check() {
        // The dummy hash is a real argon2id hash with the default cost, so a wrong user name takes as long as
        // a wrong password and names cannot be probed by timing.
        let dummy = PasswordHash::new(dummy_hash()).expect("a PHC string");
        let real_hash = hash_password("x").expect("hash");
        let real = PasswordHash::new(&real_hash).expect("a PHC string");
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.params, real.params, "the same memory and passes as a stored password");
        assert!(crate::verify_password("ferry-dummy-password", dummy_hash()), "a hash that really verifies");
    }

    #[test]
    fn add_check_remove() {
        for s in stores() {
            let dir = &s.dir;
            assert!(s.is_empty().expect("empty"), "{}", s.kind);
            s.add_user("alice", Some("pw"), &dir.join("alice")).expect("add");
            assert!(matches!(s.add_user("alice", None, dir), Err(AuthError::UserExists(_))), "{}", s.kind);
            assert_eq!(s.check_password("alice", "pw").expect("ok").map(|u| u.name), Some("alice".into()));
            assert_eq!(s.check_password("alice", "nope").expect("ok"), None);
            assert_eq!(s.check_password("bob", "pw").expect("ok"), None);
            s.set_password("alice", "new").expect("passwd");
            assert_eq!(s.check_password("alice", "pw").expect("ok"), None);
            assert!(s.check_password("alice", "new").expect("ok").is_some());
            s.remove_user("alice").expect("remove");
            assert!(matches!(s.remove_user("alice"), Err(AuthError::NoSuchUser(_))), "{}", s.kind);
            assert_eq!(s.check_password("alice", "new").expect("ok"), None);
        }
    }

    #[test]
    fn account_settings_round_trip() {
        for s in stores() {
            s.add_user("acc", None, &s.dir.join("acc")).expect("add");
            let v0 = s.data_version().expect("version");
            s.set_disabled("acc", true).expect("disable");
            s.set_expires("acc", Some("2030-01-31")).expect("expires");
            s.set_allow_from("acc", &["10.0.0.0/8".into(), "192.0.2.1/32".into()]).expect("allow");
            s.set_protocols("acc", Some(&["sftp".into()])).expect("protocols");
            s.set_max_sessions("acc", Some(3)).expect("sessions");
            s.set_rates("acc", Some(Some(1000)), Some(None)).expect("rates");
            s.set_quota("acc", Some(5 << 30), Some(10)).expect("quota");
            s.set_permission("acc", "/in", "list,upload").expect("perm");
            s.set_permission("acc", "/in", "list").expect("perm replaced");
            let u = s.get("acc").expect("get").expect("there");
            assert!(u.disabled && !u.has_password, "{}: {u:?}", s.kind);
            assert_eq!(u.expires.as_deref(), Some("2030-01-31"));
            assert_eq!(u.allow_from, ["10.0.0.0/8", "192.0.2.1/32"]);
            assert_eq!(u.protocols, Some(vec!["sftp".to_string()]));
            assert_eq!((u.max_sessions, u.upload_rate, u.download_rate), (Some(3), Some(1000), None));
            assert_eq!((u.quota_bytes, u.quota_files), (Some(5 << 30), Some(10)), "{}", s.kind);
            assert_eq!(s.permissions("acc").expect("perms"), [("/in".to_string(), "list".to_string())]);
            assert_eq!(u.storage, None, "the server's default backend");
            s.set_storage("acc", Some("s3")).expect("storage");
            assert_eq!(s.get("acc").expect("get").expect("there").storage.as_deref(), Some("s3"), "{}", s.kind);
            s.set_storage("acc", None).expect("back to the default");
            // 0 is "no limit" for a rate and lifts a quota; 1 is a limit of 1.
            let limits = |s: &UserStore| {
                let u = s.get("acc").expect("get").expect("there");
                (u.upload_rate, u.download_rate, u.quota_bytes, u.quota_files)
            };
            s.set_rates("acc", Some(Some(1)), Some(Some(1))).expect("rates of 1");
            s.set_quota("acc", Some(1), Some(1)).expect("quota of 1");
            assert_eq!(limits(&s), (Some(1), Some(1), Some(1), Some(1)));
            s.set_rates("acc", Some(Some(0)), Some(Some(0))).expect("rates of 0");
            s.set_quota("acc", Some(0), Some(0)).expect("quota of 0");
            assert_eq!(limits(&s), (None, None, None, None), "{}", s.kind);
            s.set_quota("acc", Some(5 << 30), Some(10)).expect("quota again");
            s.set_disabled("acc", false).expect("enable");
            s.set_expires("acc", None).expect("never");
            s.set_allow_from("acc", &[]).expect("anywhere");
            s.set_quota("acc", Some(0), None).expect("lift");
            let u = s.get("acc").expect("get").expect("there");
            assert!(!u.disabled && u.expires.is_none() && u.allow_from.is_empty(), "{}: {u:?}", s.kind);
            assert_eq!((u.quota_bytes, u.quota_files), (None, Some(10)));
            assert!(s.remove_permission("acc", "/in").expect("rm") && !s.remove_permission("acc", "/in").expect("rm"));
            // A 0 or negative written by hand means no limit, as `--quota-bytes 0` does.
            s.db()
                .execute(
                    "UPDATE users SET upload_rate = 0, download_rate = -1, quota_files = 0, quota_bytes = 0, max_sessions = -3 WHERE name = ?1",
                    &["acc".into()],
                    "by hand",
                )
                .expect("by hand");
            assert_eq!(limits(&s), (None, None, None, None), "{}", s.kind);
            let u = s.get("acc").expect("get").expect("there");
            assert_eq!(u.max_sessions, Some(0), "a negative session limit reads as 0: no limit");
            assert!(matches!(s.set_disabled("nobody", true), Err(AuthError::NoSuchUser(_))));
            // Quota usage: a count, then changes that add up; never below zero.
            assert_eq!(s.quota_usage("acc").expect("usage"), None, "{}: not counted yet", s.kind);
            s.set_quota_usage("acc", 1000, 3).expect("count");
            s.add_quota_usage("acc", 500, 1).expect("add");
            s.add_quota_usage("acc", -200, -1).expect("remove");
            assert_eq!(s.quota_usage("acc").expect("usage"), Some((1300, 3)), "{}", s.kind);
            s.add_quota_usage("acc", -5000, -10).expect("more than there is");
            assert_eq!(s.quota_usage("acc").expect("usage"), Some((0, 0)));
            s.set_quota_usage("acc", 7, 1).expect("a fresh count replaces");
            assert_eq!(s.quota_usage("acc").expect("usage"), Some((7, 1)));
            s.set_quota_usage("nobody", 1, 1).expect("no such user: nothing recorded");
            assert_eq!(s.quota_usage("nobody").expect("usage"), None);
            assert!(matches!(s.set_permission("nobody", "/", "list"), Err(AuthError::NoSuchUser(_))));
            // PostgreSQL counts every change (another node's too); SQLite only another connection's, so
            // the same store sees its own writes without a version change there.
            if s.kind == "postgres" {
                assert!(s.data_version().expect("version") > v0, "changes are visible to pollers");
            }
        }
    }

    #[test]
    fn keys() {
        for s in stores() {
            s.add_user("k", None, &s.dir).expect("add");
            assert_eq!(s.check_password("k", "").expect("ok"), None, "a key-only user has no password");
            let fp = s.add_key("k", KEY).expect("key");
            assert!(fp.starts_with("SHA256:"));
            s.add_key("k", KEY).expect("same key twice is fine");
            let key = parse_key(KEY).expect("parse");
            assert!(s.check_key("k", &key).expect("ok").is_some(), "{}", s.kind);
            assert!(s.check_key("other", &key).expect("ok").is_none());
            assert!(matches!(s.add_key("k", "ssh-ed25519 garbage"), Err(AuthError::InvalidKey { .. })));
            assert!(matches!(s.add_key("nobody", KEY), Err(AuthError::NoSuchUser(_))));
            assert_eq!(s.list().expect("list")[0].key_count, 1, "{}", s.kind);
            let stored = s.keys("k").expect("keys");
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].0, fp, "by fingerprint");
            assert!(stored[0].1.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0"), "{stored:?}");
            let creds = s.get("k").expect("get").expect("there").credentials;
            assert!(!s.remove_key("k", "SHA256:not-a-key").expect("rm nothing"));
            assert_eq!(s.get("k").expect("get").expect("there").credentials, creds, "nothing removed, nothing changed");
            assert!(
                !s.is_empty().expect("count"),
                "a store with a user is not empty (serve adds `demo` only to an empty one)"
            );
            let before = s.get("k").expect("get").expect("there").credentials;
            assert!(s.remove_key("k", &fp).expect("rm") && !s.remove_key("k", &fp).expect("rm again"));
            assert!(s.get("k").expect("get").expect("there").credentials > before, "live sessions can tell");
            // Removing a user removes their keys: a user of the same name added later does not inherit them.
            s.add_key("k", KEY).expect("key");
            s.remove_user("k").expect("rm user");
            s.add_user("k", None, &s.dir).expect("add again");
            assert!(s.check_key("k", &key).expect("ok").is_none(), "{}", s.kind);
        }
    }

    #[test]
    fn a_postgres_connection_that_drops_is_made_again() {
        for s in stores().into_iter().filter(|s| s.kind == "postgres") {
            s.add_user("p", None, &s.dir).expect("add");
            // What a database restart or a balancer's idle timeout does to the connection.
            let admin = std::env::var("FERRY_TEST_POSTGRES").expect("postgres");
            let db = s
                .db()
                .query_row("SELECT current_database()", &[], "which")
                .expect("db")
                .expect("row")
                .text(0)
                .expect("name");
            let pg = crate::pg::Pg::connect(&admin).expect("admin");
            pg.batch(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ))
            .expect("terminate");
            assert!(s.get("p").expect("the query after the drop succeeds").is_some());
            // A password PostgreSQL refuses is said in PostgreSQL's words.
            let wrong = admin.replacen("ferry-test@", "wrong@", 1);
            if wrong != admin {
                let e = UserStore::open_postgres(&wrong).err().expect("refused").to_string();
                assert!(e.contains("password authentication failed"), "{e}");
            }
        }
    }

    #[test]
    fn a_row_whose_fingerprint_matches_but_whose_key_differs_is_not_the_key() {
        // The fingerprint only picks the row; a tampered or corrupt row with another key is never accepted.
        const OTHER: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEdXbyvmHNsxVGJBuMfb6k5nDVBCCqUrzmGxYbZ8R9Yt x";
        for s in stores() {
            s.add_user("k", None, &s.dir).expect("add");
            s.add_key("k", KEY).expect("key");
            s.db().execute("UPDATE user_keys SET key = ?1", &[OTHER.into()], "tamper").expect("tamper");
            assert!(s.check_key("k", &parse_key(KEY).expect("parse")).expect("ok").is_none(), "{}", s.kind);
        }
    }

    #[tokio::test]
    async fn server_password_checks() {
        for t in stores() {
            let dir = t.dir.clone();
            t.add_user("alice", Some("pw"), &dir.join("alice")).expect("add");
            t.add_user("keys-only", None, &dir.join("keys-only")).expect("add");
            let s = t.store.clone();
            let check = |name: &str, pw: &str| {
                let (s, name, pw) = (s.clone(), name.to_string(), pw.to_string());
                async move { check_password(&s, &name, &pw).await.expect("checked") }
            };
            assert!(matches!(check("alice", "pw").await, PasswordCheck::Ok(u) if u.name == "alice"));
            assert!(matches!(check("alice", "pw ").await, PasswordCheck::Wrong));
            assert!(matches!(check("bob", "pw").await, PasswordCheck::Wrong), "an unknown user");
            // A user without a password is not let in by the password the dummy hash was made from.
            assert!(matches!(check("keys-only", "ferry-dummy-password").await, PasswordCheck::Wrong));
            // Over-long names and passwords are refused unchecked; at the limits they are checked.
            let long_name = "a".repeat(crate::MAX_USERNAME_LEN);
            s.add_user(&long_name, Some("pw"), &dir.join("long")).expect("add a name of the longest length");
            assert!(matches!(check(&long_name, "pw").await, PasswordCheck::Ok(_)));
            let longest_pw = "p".repeat(crate::MAX_PASSWORD_LEN);
            s.set_password("alice", &longest_pw).expect("passwd");
            assert!(matches!(check("alice", &longest_pw).await, PasswordCheck::Ok(_)));
            assert!(matches!(check(&format!("{long_name}a"), "pw").await, PasswordCheck::Wrong));
        }
    }
}

/// What a password login came to.
#[derive(Debug)]
// One per login, matched at once: boxing the User would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum PasswordCheck {
    Ok(User),
    /// Wrong user name or password (the two are not told apart).
    Wrong,
    /// Too many password checks are waiting already: refused without checking (see [`crate::VERIFY_QUEUE`]).
    Busy,
}

/// Checks a password login for the server: the user is looked up on the blocking pool, the argon2 check
/// waits in the bounded queue without holding any thread. An unknown user costs the same argon2 work as a
/// known one, so timing does not tell them apart.
pub async fn check_password(
    store: &std::sync::Arc<UserStore>,
    name: &str,
    password: &str,
) -> Result<PasswordCheck, AuthError> {
    if name.len() > crate::MAX_USERNAME_LEN || password.len() > crate::MAX_PASSWORD_LEN {
        return Ok(PasswordCheck::Wrong);
    }
    let (s, n) = (store.clone(), name.to_string());
    let hash = tokio::task::spawn_blocking(move || s.password_hash(&n))
        .await
        .map_err(|e| AuthError::Task(e.to_string()))??;
    let rx = match crate::password::verify_password_queued(password, hash.as_deref().unwrap_or(dummy_hash())) {
        Ok(rx) => rx,
        Err(crate::Busy) => return Ok(PasswordCheck::Busy),
    };
    if !(rx.await.unwrap_or(false) && hash.is_some()) {
        return Ok(PasswordCheck::Wrong);
    }
    let (s, n) = (store.clone(), name.to_string());
    match tokio::task::spawn_blocking(move || s.get(&n)).await {
        Ok(Ok(Some(user))) => Ok(PasswordCheck::Ok(user)),
        Ok(Ok(None)) => Ok(PasswordCheck::Wrong),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(AuthError::Task(e.to_string())),
    }
}
