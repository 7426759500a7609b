//! The one SQL path of the user store, over SQLite (the default: a file in the data dir) or PostgreSQL
//! (`[users] database = "postgres://..."`, shared by every node of a cluster).
//!
//! The store's queries are written once, with `?1`-style parameters and values of three kinds (integer,
//! text, null); each backend runs them its own way. Only the schema's DDL and the change counter differ.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::DbContext;
use crate::pg::Pg;
use crate::AuthError;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, AuthError> {
        self.0.get(i).ok_or_else(|| AuthError::db("reading a row", format!("no column {i}")))
    }

    pub fn int(&self, i: usize) -> Result<i64, AuthError> {
        self.opt_int(i)?.ok_or_else(|| AuthError::db("reading a row", format!("column {i} is NULL")))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, AuthError> {
        match self.at(i)? {
            Value::Int(n) => Ok(Some(*n)),
            Value::Null => Ok(None),
            Value::Text(_) => Err(AuthError::db("reading a row", format!("column {i} is text, not a number"))),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, AuthError> {
        self.opt_text(i)?.ok_or_else(|| AuthError::db("reading a row", format!("column {i} is NULL")))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, AuthError> {
        match self.at(i)? {
            Value::Text(s) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            Value::Int(_) => Err(AuthError::db("reading a row", format!("column {i} is a number, not text"))),
        }
    }
}

/// Where the users are.
pub(crate) enum Db {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(Pg),
}

/// The tables, for SQLite. Columns added later are in [`MIGRATIONS`].
const SQLITE_SCHEMA: &str = "
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
CREATE TABLE IF NOT EXISTS quota_usage (
    user TEXT PRIMARY KEY NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    bytes INTEGER NOT NULL,
    files INTEGER NOT NULL
);
";

/// The same tables for PostgreSQL: 64-bit integers throughout (the store's values are i64), `rowid` made
/// explicit where the store orders by it, and a change counter that triggers bump on every write, so a
/// node sees what another node (or `ferry user` anywhere) changed, as SQLite's `data_version` tells.
const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    home TEXT NOT NULL,
    created_at BIGINT NOT NULL DEFAULT (extract(epoch FROM now())::bigint)
);
CREATE TABLE IF NOT EXISTS user_permissions (
    \"user\" TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    path TEXT NOT NULL,
    perms TEXT NOT NULL,
    PRIMARY KEY (\"user\", path)
);
CREATE TABLE IF NOT EXISTS bans (
    ip TEXT PRIMARY KEY NOT NULL,
    until BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created BIGINT NOT NULL DEFAULT (extract(epoch FROM now())::bigint)
);
CREATE TABLE IF NOT EXISTS user_keys (
    \"user\" TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    rowid BIGSERIAL,
    PRIMARY KEY (\"user\", fingerprint)
);
CREATE TABLE IF NOT EXISTS quota_usage (
    \"user\" TEXT PRIMARY KEY NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    bytes BIGINT NOT NULL,
    files BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ferry_changes (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
INSERT INTO ferry_changes (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION ferry_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE ferry_changes SET version = version + 1 WHERE id = 1; RETURN NULL; END $$;
DO $$ DECLARE t TEXT; BEGIN
  FOREACH t IN ARRAY ARRAY['users', 'user_permissions', 'bans', 'user_keys', 'quota_usage'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'ferry_bump_' || t) THEN
      EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH STATEMENT EXECUTE FUNCTION ferry_bump()', 'ferry_bump_' || t, t);
    END IF;
  END LOOP;
END $$;
";

/// Columns added after the first release, added to an older database when it is opened (the column, and
/// its SQLite type and default; PostgreSQL gets BIGINT for INTEGER).
const MIGRATIONS: &[(&str, &str)] = &[
    ("disabled", "INTEGER NOT NULL DEFAULT 0"),
    ("expires", "TEXT"),
    ("allow_from", "TEXT"),
    ("protocols", "TEXT"),
    ("credentials", "INTEGER NOT NULL DEFAULT 0"),
    ("max_sessions", "INTEGER"),
    ("upload_rate", "INTEGER"),
    ("download_rate", "INTEGER"),
    ("quota_bytes", "INTEGER"),
    ("quota_files", "INTEGER"),
    ("storage", "TEXT"),
];

/// Whether a `[users] database` value names PostgreSQL.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl Db {
    pub fn open_sqlite(path: &Path) -> Result<Db, AuthError> {
        let conn = rusqlite::Connection::open(path).ctx(&format!("opening {}", path.display()))?;
        // WAL lets `ferry user add` write while the server reads; the busy timeout rides over the
        // moments when both touch the file at once.
        conn.busy_timeout(Duration::from_secs(5)).ctx("setting busy timeout")?;
        conn.pragma_update(None, "journal_mode", "WAL").ctx("enabling WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON").ctx("enabling foreign keys")?;
        conn.execute_batch(SQLITE_SCHEMA).ctx("creating tables")?;
        let existing: Vec<String> = {
            let mut st = conn.prepare("SELECT name FROM pragma_table_info('users')").ctx("reading the schema")?;
            let names = st.query_map([], |r| r.get(0)).ctx("reading the schema")?;
            names.collect::<Result<_, _>>().ctx("reading the schema")?
        };
        for (column, decl) in MIGRATIONS {
            if !existing.iter().any(|c| c == column) {
                conn.execute_batch(&format!("ALTER TABLE users ADD COLUMN {column} {decl}"))
                    .ctx(&format!("adding the column {column}"))?;
            }
        }
        Ok(Db::Sqlite(Mutex::new(conn)))
    }

    /// Connects and brings the schema up to date (under an advisory lock: nodes starting together do not
    /// race on CREATE TABLE).
    pub fn open_postgres(url: &str) -> Result<Db, AuthError> {
        let pg = Pg::connect(url)?;
        let mut ddl = String::from("SELECT pg_advisory_lock(7346110);\n");
        ddl.push_str(POSTGRES_SCHEMA);
        for (column, decl) in MIGRATIONS {
            let decl = decl.replace("INTEGER", "BIGINT");
            ddl.push_str(&format!("ALTER TABLE users ADD COLUMN IF NOT EXISTS {column} {decl};\n"));
        }
        ddl.push_str("SELECT pg_advisory_unlock(7346110);\n");
        pg.batch(&ddl).map_err(|e| e.context("creating tables"))?;
        Ok(Db::Postgres(pg))
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value], context: &str) -> Result<u64, AuthError> {
        match self {
            Db::Sqlite(c) => {
                let c = c.lock().unwrap_or_else(|p| p.into_inner());
                let n = c.execute(sql, rusqlite::params_from_iter(params.iter().map(sqlite_value))).ctx(context)?;
                Ok(n as u64)
            }
            Db::Postgres(pg) => pg.execute(sql, params).map_err(|e| e.context(context)),
        }
    }

    /// Runs one query; its rows.
    pub fn query(&self, sql: &str, params: &[Value], context: &str) -> Result<Vec<Row>, AuthError> {
        match self {
            Db::Sqlite(c) => {
                let c = c.lock().unwrap_or_else(|p| p.into_inner());
                let mut st = c.prepare(sql).ctx(context)?;
                let n = st.column_count();
                let rows = st
                    .query_map(rusqlite::params_from_iter(params.iter().map(sqlite_value)), |r| {
                        (0..n).map(|i| r.get_ref(i).map(from_sqlite)).collect::<Result<Vec<_>, _>>().map(Row)
                    })
                    .ctx(context)?;
                rows.collect::<Result<Vec<_>, _>>().ctx(context)
            }
            Db::Postgres(pg) => pg.query(sql, params).map_err(|e| e.context(context)),
        }
    }

    /// The first row of a query, if any.
    pub fn query_row(&self, sql: &str, params: &[Value], context: &str) -> Result<Option<Row>, AuthError> {
        Ok(self.query(sql, params, context)?.into_iter().next())
    }

    /// A number that changes whenever the data changed (SQLite: committed by another connection; PostgreSQL:
    /// by anyone), for a server to poll cheaply.
    pub fn data_version(&self) -> Result<i64, AuthError> {
        let sql = match self {
            Db::Sqlite(_) => "PRAGMA data_version",
            Db::Postgres(_) => "SELECT version FROM ferry_changes WHERE id = 1",
        };
        match self.query_row(sql, &[], "reading data_version")? {
            Some(r) => r.int(0),
            None => Err(AuthError::db("reading data_version", "no row")),
        }
    }
}

fn sqlite_value(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(n) => rusqlite::types::Value::Integer(*n),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Real(f) => Value::Int(f as i64),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_databases_are_postgres() {
        assert!(is_postgres_url("postgres://ferry:pw@db:5432/ferry"));
        assert!(is_postgres_url("postgresql://ferry@db/ferry"), "libpq's other scheme");
        assert!(!is_postgres_url("/var/lib/ferry/users.db"), "a path is a SQLite file");
        assert!(!is_postgres_url("users.db"));
    }
}
