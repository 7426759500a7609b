//! Stores for the tests: a SQLite file always, and a fresh PostgreSQL database when `FERRY_TEST_POSTGRES`
//! names a server (scripts/test starts one and sets it, with `FERRY_REQUIRE_POSTGRES=1` so that a missing
//! server fails the tests instead of skipping half of them).

use std::path::PathBuf;

use crate::pg::Pg;
use crate::UserStore;

pub(crate) struct TestStore {
    pub store: std::sync::Arc<UserStore>,
    pub kind: &'static str,
    /// A directory for homes (and the SQLite file).
    pub dir: PathBuf,
    drop_db: Option<(String, String)>,
}

impl std::ops::Deref for TestStore {
    type Target = UserStore;
    fn deref(&self) -> &UserStore {
        &self.store
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((admin, db)) = self.drop_db.take() {
            // FORCE: the store's own connection may still be open.
            if let Ok(pg) = Pg::connect(&admin) {
                let _ = pg.batch(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
            }
        }
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-auth-test-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("tmp");
    dir
}

/// A PostgreSQL URL with another database name.
pub(crate) fn with_database(url: &str, db: &str) -> String {
    let (base, rest) = match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let cut = base.rfind('/').filter(|i| *i > "postgres://".len()).unwrap_or(base.len());
    format!("{}/{db}{rest}", &base[..cut])
}

/// Every store the tests should run against.
pub(crate) fn stores() -> Vec<TestStore> {
    let dir = temp_dir();
    let mut out = vec![TestStore {
        store: UserStore::open(&dir.join("users.db")).expect("sqlite store").into(),
        kind: "sqlite",
        dir,
        drop_db: None,
    }];
    match std::env::var("FERRY_TEST_POSTGRES") {
        Ok(admin) if !admin.is_empty() => {
            let db = format!("ferry_test_{}", rand::random::<u32>());
            Pg::connect(&admin)
                .expect("FERRY_TEST_POSTGRES")
                .batch(&format!("CREATE DATABASE {db}"))
                .expect("create database");
            let store = UserStore::open_postgres(&with_database(&admin, &db)).expect("postgres store");
            out.push(TestStore { store: store.into(), kind: "postgres", dir: temp_dir(), drop_db: Some((admin, db)) });
        }
        _ => assert!(
            std::env::var("FERRY_REQUIRE_POSTGRES").is_err(),
            "FERRY_REQUIRE_POSTGRES is set but FERRY_TEST_POSTGRES names no server"
        ),
    }
    out
}

#[test]
fn database_names_in_urls() {
    assert_eq!(with_database("postgres://u:p@h:1/postgres", "x"), "postgres://u:p@h:1/x");
    assert_eq!(
        with_database("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
        "postgres://u:p@h:1/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u:p@h:1", "x"), "postgres://u:p@h:1/x");
}
