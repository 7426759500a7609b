use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use russh::keys::PublicKey;

use crate::error::DbContext;
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
}

/// Users in a SQLite file. Every call reads the database afresh, so changes made by another process
/// (the `ferry user` commands) are seen at the next login.
pub struct UserStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    home TEXT NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
);
CREATE TABLE IF NOT EXISTS user_permissions (
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    path TEXT NOT NULL,
    perms TEXT NOT NULL,
    PRIMARY KEY (user, path)
);
CREATE TABLE IF NOT EXISTS bans (
    ip TEXT PRIMARY KEY NOT NULL,
    until INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created INTEGER NOT NULL DEFAULT (unixepoch())
);
CREATE TABLE IF NOT EXISTS user_keys (
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (user, fingerprint)
);
";

/// Columns added after the first release: added to an older database when it is opened.
const MIGRATIONS: &[(&str, &str)] = &[
    ("disabled", "ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0"),
    ("expires", "ALTER TABLE users ADD COLUMN expires TEXT"),
    ("allow_from", "ALTER TABLE users ADD COLUMN allow_from TEXT"),
    ("protocols", "ALTER TABLE users ADD COLUMN protocols TEXT"),
    ("credentials", "ALTER TABLE users ADD COLUMN credentials INTEGER NOT NULL DEFAULT 0"),
    ("max_sessions", "ALTER TABLE users ADD COLUMN max_sessions INTEGER"),
    ("upload_rate", "ALTER TABLE users ADD COLUMN upload_rate INTEGER"),
    ("download_rate", "ALTER TABLE users ADD COLUMN download_rate INTEGER"),
    ("quota_bytes", "ALTER TABLE users ADD COLUMN quota_bytes INTEGER"),
    ("quota_files", "ALTER TABLE users ADD COLUMN quota_files INTEGER"),
];

const USER_COLUMNS: &str = "SELECT name, home, password_hash IS NOT NULL,
        (SELECT count(*) FROM user_keys k WHERE k.user = u.name),
        disabled, expires, allow_from, protocols, credentials, max_sessions, upload_rate, download_rate,
        quota_bytes, quota_files
    FROM users u";

fn list_field(text: Option<String>) -> Vec<String> {
    text.map(|t| t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        name: r.get(0)?,
        home: PathBuf::from(r.get::<_, String>(1)?),
        has_password: r.get(2)?,
        key_count: r.get::<_, i64>(3)? as usize,
        disabled: r.get::<_, i64>(4)? != 0,
        expires: r.get(5)?,
        allow_from: list_field(r.get(6)?),
        protocols: r.get::<_, Option<String>>(7)?.map(|p| list_field(Some(p))),
        credentials: r.get(8)?,
        max_sessions: r.get::<_, Option<i64>>(9)?.map(|n| n.max(0) as u64),
        upload_rate: r.get::<_, Option<i64>>(10)?.filter(|n| *n > 0).map(|n| n as u64),
        download_rate: r.get::<_, Option<i64>>(11)?.filter(|n| *n > 0).map(|n| n as u64),
        quota_bytes: r.get::<_, Option<i64>>(12)?.filter(|n| *n > 0).map(|n| n as u64),
        quota_files: r.get::<_, Option<i64>>(13)?.filter(|n| *n > 0).map(|n| n as u64),
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

impl UserStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<UserStore, AuthError> {
        let conn = Connection::open(path).ctx(&format!("opening {}", path.display()))?;
        // WAL lets `ferry user add` write while the server reads; the busy timeout rides over the
        // moments when both touch the file at once.
        conn.busy_timeout(Duration::from_secs(5)).ctx("setting busy timeout")?;
        conn.pragma_update(None, "journal_mode", "WAL").ctx("enabling WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON").ctx("enabling foreign keys")?;
        conn.execute_batch(SCHEMA).ctx("creating tables")?;
        let existing: Vec<String> = {
            let mut st = conn.prepare("SELECT name FROM pragma_table_info('users')").ctx("reading the schema")?;
            let names = st.query_map([], |r| r.get(0)).ctx("reading the schema")?;
            names.collect::<Result<_, _>>().ctx("reading the schema")?
        };
        for (column, sql) in MIGRATIONS {
            if !existing.iter().any(|c| c == column) {
                conn.execute_batch(sql).ctx(&format!("adding the column {column}"))?;
            }
        }
        Ok(UserStore { conn: Mutex::new(conn) })
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, AuthError>) -> Result<T, AuthError> {
        // A poisoned lock only means another thread panicked mid-call; SQLite's own transactions keep
        // the data consistent, so carry on with the connection.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    pub fn add_user(&self, name: &str, password: Option<&str>, home: &Path) -> Result<(), AuthError> {
        validate_username(name)?;
        let hash = password.map(hash_password).transpose()?;
        self.with(|c| {
            let n = c
                .execute(
                    "INSERT INTO users (name, password_hash, home) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
                    params![name, hash, home.to_string_lossy()],
                )
                .ctx("adding user")?;
            if n == 0 {
                return Err(AuthError::UserExists(name.to_string()));
            }
            Ok(())
        })
    }

    pub fn remove_user(&self, name: &str) -> Result<(), AuthError> {
        self.with(|c| {
            let n = c.execute("DELETE FROM users WHERE name = ?1", params![name]).ctx("removing user")?;
            if n == 0 {
                return Err(AuthError::NoSuchUser(name.to_string()));
            }
            Ok(())
        })
    }

    pub fn set_password(&self, name: &str, password: &str) -> Result<(), AuthError> {
        let hash = hash_password(password)?;
        self.with(|c| {
            let n = c
                .execute(
                    "UPDATE users SET password_hash = ?2, credentials = credentials + 1 WHERE name = ?1",
                    params![name, hash],
                )
                .ctx("changing password")?;
            if n == 0 {
                return Err(AuthError::NoSuchUser(name.to_string()));
            }
            Ok(())
        })
    }

    /// Adds an OpenSSH public key (`ssh-ed25519 AAAA... comment`) to a user. Adding the same key twice is
    /// not an error. Returns the key's SHA256 fingerprint.
    pub fn add_key(&self, name: &str, key_line: &str) -> Result<String, AuthError> {
        let key = parse_key(key_line)?;
        let fp = key.fingerprint(Default::default()).to_string();
        let canonical = key.to_openssh().map_err(|e| AuthError::InvalidKey { reason: e.to_string() })?;
        self.with(|c| {
            if Self::lookup(c, name)?.is_none() {
                return Err(AuthError::NoSuchUser(name.to_string()));
            }
            c.execute(
                "INSERT INTO user_keys (user, key, fingerprint) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![name, canonical, fp],
            )
            .ctx("adding key")?;
            c.execute("UPDATE users SET credentials = credentials + 1 WHERE name = ?1", params![name])
                .ctx("adding key")?;
            Ok(fp)
        })
    }

    fn lookup(c: &Connection, name: &str) -> Result<Option<User>, AuthError> {
        c.query_row(&format!("{USER_COLUMNS} WHERE name = ?1"), params![name], user_row)
            .optional()
            .ctx("looking up user")
    }

    pub fn get(&self, name: &str) -> Result<Option<User>, AuthError> {
        self.with(|c| Self::lookup(c, name))
    }

    pub fn list(&self) -> Result<Vec<User>, AuthError> {
        self.with(|c| {
            let mut st = c.prepare(&format!("{USER_COLUMNS} ORDER BY name")).ctx("listing users")?;
            let rows = st.query_map([], user_row).ctx("listing users")?;
            rows.collect::<Result<Vec<_>, _>>().ctx("listing users")
        })
    }

    pub fn is_empty(&self) -> Result<bool, AuthError> {
        self.with(|c| {
            c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0)).ctx("counting users").map(|n| n == 0)
        })
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

    /// A user's keys as stored (OpenSSH public key lines, comments kept), by fingerprint.
    pub fn keys(&self, name: &str) -> Result<Vec<(String, String)>, AuthError> {
        self.with(|c| {
            let mut st = c
                .prepare("SELECT fingerprint, key FROM user_keys WHERE user = ?1 ORDER BY rowid")
                .ctx("reading keys")?;
            let rows = st
                .query_map(params![name], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .ctx("reading keys")?;
            rows.collect::<Result<Vec<_>, _>>().ctx("reading keys")
        })
    }

    /// Removes the key with this fingerprint (`SHA256:...`); false if the user has none such.
    pub fn remove_key(&self, name: &str, fingerprint: &str) -> Result<bool, AuthError> {
        self.with(|c| {
            let n = c
                .execute("DELETE FROM user_keys WHERE user = ?1 AND fingerprint = ?2", params![name, fingerprint])
                .ctx("removing key")?;
            if n > 0 {
                c.execute("UPDATE users SET credentials = credentials + 1 WHERE name = ?1", params![name])
                    .ctx("removing key")?;
            }
            Ok(n > 0)
        })
    }

    /// Sets one column of a user's account settings; an error if there is no such user.
    fn set_account(&self, name: &str, column: &str, value: Option<String>) -> Result<(), AuthError> {
        self.with(|c| {
            let n = c
                .execute(&format!("UPDATE users SET {column} = ?2 WHERE name = ?1"), params![name, value])
                .ctx("changing the account")?;
            if n == 0 {
                return Err(AuthError::NoSuchUser(name.to_string()));
            }
            Ok(())
        })
    }

    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), AuthError> {
        self.set_account(name, "disabled", Some(if disabled { "1" } else { "0" }.to_string()))
    }

    /// `YYYY-MM-DD` (checked by the caller), or `None` for never.
    pub fn set_expires(&self, name: &str, date: Option<&str>) -> Result<(), AuthError> {
        self.set_account(name, "expires", date.map(str::to_string))
    }

    /// CIDR texts (checked by the caller); empty: anywhere.
    pub fn set_allow_from(&self, name: &str, cidrs: &[String]) -> Result<(), AuthError> {
        self.set_account(name, "allow_from", (!cidrs.is_empty()).then(|| cidrs.join(",")))
    }

    /// Protocol names (checked by the caller); `None`: every protocol.
    pub fn set_protocols(&self, name: &str, protocols: Option<&[String]>) -> Result<(), AuthError> {
        self.set_account(name, "protocols", protocols.map(|p| p.join(",")))
    }

    /// Sessions at once; `None`: the server's default.
    pub fn set_max_sessions(&self, name: &str, n: Option<u64>) -> Result<(), AuthError> {
        self.set_account(name, "max_sessions", n.map(|n| n.to_string()))
    }

    /// Bytes per second per session; `None` or 0: no limit.
    pub fn set_rates(
        &self,
        name: &str,
        upload: Option<Option<u64>>,
        download: Option<Option<u64>>,
    ) -> Result<(), AuthError> {
        if let Some(up) = upload {
            self.set_account(name, "upload_rate", up.filter(|n| *n > 0).map(|n| n.to_string()))?;
        }
        if let Some(down) = download {
            self.set_account(name, "download_rate", down.filter(|n| *n > 0).map(|n| n.to_string()))?;
        }
        Ok(())
    }

    /// Quotas; `Some(0)` lifts one, `None` leaves it as it is.
    pub fn set_quota(&self, name: &str, bytes: Option<u64>, files: Option<u64>) -> Result<(), AuthError> {
        for (column, value) in [("quota_bytes", bytes), ("quota_files", files)] {
            if let Some(v) = value {
                self.set_account(name, column, (v > 0).then(|| v.to_string()))?;
            }
        }
        Ok(())
    }

    /// Changes whenever another connection (another process: the `ferry user` commands) has committed a
    /// change, so a server can poll it cheaply and react to changes without a restart.
    pub fn data_version(&self) -> Result<i64, AuthError> {
        self.with(|c| c.query_row("PRAGMA data_version", [], |r| r.get(0)).ctx("reading data_version"))
    }

    /// Sets the permission rule of `name` at `path` (replacing one there). `perms` is stored as given;
    /// the caller has checked it.
    pub fn set_permission(&self, name: &str, path: &str, perms: &str) -> Result<(), AuthError> {
        self.with(|c| {
            let n = c
                .execute(
                    "INSERT INTO user_permissions (user, path, perms) SELECT name, ?2, ?3 FROM users WHERE name = ?1
                     ON CONFLICT (user, path) DO UPDATE SET perms = excluded.perms",
                    params![name, path, perms],
                )
                .ctx("setting a permission rule")?;
            if n == 0 {
                return Err(AuthError::NoSuchUser(name.to_string()));
            }
            Ok(())
        })
    }

    /// Removes the rule of `name` at `path`; false if there was none.
    pub fn remove_permission(&self, name: &str, path: &str) -> Result<bool, AuthError> {
        self.with(|c| {
            let n = c
                .execute("DELETE FROM user_permissions WHERE user = ?1 AND path = ?2", params![name, path])
                .ctx("removing a permission rule")?;
            Ok(n > 0)
        })
    }

    /// Every rule of `name`, as `(path, perms)`, by path.
    pub fn permissions(&self, name: &str) -> Result<Vec<(String, String)>, AuthError> {
        self.with(|c| {
            let mut st = c
                .prepare("SELECT path, perms FROM user_permissions WHERE user = ?1 ORDER BY path")
                .ctx("reading permission rules")?;
            let rows = st
                .query_map(params![name], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .ctx("reading permission rules")?;
            rows.collect::<Result<Vec<_>, _>>().ctx("reading permission rules")
        })
    }

    /// The stored password hash of `name` (None: no such user, or no password).
    fn password_hash(&self, name: &str) -> Result<Option<String>, AuthError> {
        let row = self.with(|c| {
            c.query_row("SELECT password_hash FROM users WHERE name = ?1", params![name], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()
            .ctx("checking password")
        })?;
        Ok(row.flatten())
    }

    /// The user, if `key` is one of their authorised keys.
    pub fn check_key(&self, name: &str, key: &PublicKey) -> Result<Option<User>, AuthError> {
        let fp = key.fingerprint(Default::default()).to_string();
        let stored: Option<String> = self.with(|c| {
            c.query_row("SELECT key FROM user_keys WHERE user = ?1 AND fingerprint = ?2", params![name, fp], |r| {
                r.get(0)
            })
            .optional()
            .ctx("checking key")
        })?;
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

    fn store() -> (UserStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("ferry-auth-test-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("tmp");
        (UserStore::open(&dir.join("users.db")).expect("open"), dir)
    }

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
        let (s, dir) = store();
        assert!(s.is_empty().expect("empty"));
        s.add_user("alice", Some("pw"), &dir.join("alice")).expect("add");
        assert!(matches!(s.add_user("alice", None, &dir), Err(AuthError::UserExists(_))));
        assert_eq!(s.check_password("alice", "pw").expect("ok").map(|u| u.name), Some("alice".into()));
        assert_eq!(s.check_password("alice", "nope").expect("ok"), None);
        assert_eq!(s.check_password("bob", "pw").expect("ok"), None);
        s.set_password("alice", "new").expect("passwd");
        assert_eq!(s.check_password("alice", "pw").expect("ok"), None);
        assert!(s.check_password("alice", "new").expect("ok").is_some());
        s.remove_user("alice").expect("remove");
        assert!(matches!(s.remove_user("alice"), Err(AuthError::NoSuchUser(_))));
        assert_eq!(s.check_password("alice", "new").expect("ok"), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn keys() {
        let (s, dir) = store();
        s.add_user("k", None, &dir).expect("add");
        assert_eq!(s.check_password("k", "").expect("ok"), None, "a key-only user has no password");
        let fp = s.add_key("k", KEY).expect("key");
        assert!(fp.starts_with("SHA256:"));
        s.add_key("k", KEY).expect("same key twice is fine");
        let key = parse_key(KEY).expect("parse");
        assert!(s.check_key("k", &key).expect("ok").is_some());
        assert!(s.check_key("other", &key).expect("ok").is_none());
        assert!(matches!(s.add_key("k", "ssh-ed25519 garbage"), Err(AuthError::InvalidKey { .. })));
        assert!(matches!(s.add_key("nobody", KEY), Err(AuthError::NoSuchUser(_))));
        assert_eq!(s.list().expect("list")[0].key_count, 1);
        assert!(
            !s.is_empty().expect("count"),
            "a store with a user is not empty (serve adds `demo` only to an empty one)"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_row_whose_fingerprint_matches_but_whose_key_differs_is_not_the_key() {
        // The fingerprint only picks the row; a tampered or corrupt row with another key is never accepted.
        const OTHER: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEdXbyvmHNsxVGJBuMfb6k5nDVBCCqUrzmGxYbZ8R9Yt x";
        let (s, dir) = store();
        s.add_user("k", None, &dir).expect("add");
        s.add_key("k", KEY).expect("key");
        s.with(|c| c.execute("UPDATE user_keys SET key = ?1", params![OTHER]).ctx("tamper")).expect("tamper");
        assert!(s.check_key("k", &parse_key(KEY).expect("parse")).expect("ok").is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn server_password_checks() {
        let (s, dir) = store();
        s.add_user("alice", Some("pw"), &dir.join("alice")).expect("add");
        s.add_user("keys-only", None, &dir.join("keys-only")).expect("add");
        let s = std::sync::Arc::new(s);
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
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// What a password login came to.
#[derive(Debug)]
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
