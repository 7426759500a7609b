//! What the core's tests share: a user store in a temporary directory, a core over local storage, and the
//! log lines the core writes (the admin's view of every decision).

#![allow(dead_code)]

mod logs;
#[allow(unused_imports)] // not every test file names `Logs`
pub use logs::{capture_logs, Logs};

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_auth::UserStore;
use ferry_core::{Client, Core, Events};
use ferry_vfs::local::LocalStorage;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir() -> TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ferry-core-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

/// A user store with `alice` (password [`PASSWORD`], home `<dir>/alice` holding `file.txt`), and a core
/// serving it from local storage.
pub struct Fixture {
    pub dir: TempDir,
    pub store: Arc<UserStore>,
    pub core: Arc<Core>,
    pub home: PathBuf,
}

pub fn fixture() -> Fixture {
    fixture_with(|store, events| Core::new(store, Arc::new(LocalStorage::default()), events))
}

pub fn fixture_with(make: impl FnOnce(Arc<UserStore>, Arc<Events>) -> Arc<Core>) -> Fixture {
    let dir = temp_dir();
    let store = Arc::new(UserStore::open(&dir.0.join("users.db")).expect("store"));
    let home = dir.0.join("alice");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(home.join("file.txt"), b"hello").expect("file");
    store.add_user("alice", Some(PASSWORD), &home).expect("alice");
    let core = make(store.clone(), Events::new());
    Fixture { dir, store, core, home }
}

/// A client from a documentation address (not in the defender's loopback safelist).
pub fn client(protocol: &'static str) -> Client {
    let ip: IpAddr = "192.0.2.7".parse().expect("ip");
    Client { addr: format!("{ip}:50000"), ip, protocol }
}
