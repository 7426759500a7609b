//! What the core's tests share: a user store in a temporary directory, a core over local storage, and the
//! log lines the core writes (the admin's view of every decision).

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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

/// The log lines written while `f` runs on this thread (the core logs on the task that asks it).
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }

    /// The lines containing every one of `words`.
    pub fn lines_with(&self, words: &[&str]) -> Vec<String> {
        self.text().lines().filter(|l| words.iter().all(|w| l.contains(w))).map(str::to_string).collect()
    }
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's log lines until the guard drops.
pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    (Logs(buf), tracing::subscriber::set_default(subscriber))
}
