//! Logins through the core, as both protocols ask for them: what a client gets back, what the admin reads
//! in the log, and what the defender, the session limits, the storage choice and the account watcher make
//! of them. A real SQLite user store and local storage; no protocol in between.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ferry_core::{Core, Event, Events, LoginError, TransferLog, TransferRecord, Who};
use ferry_vfs::local::LocalStorage;
use ferry_vfs::{FsError, OpenOptions, VPath};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::PrivateKey;
use support::{capture_logs, client, fixture, fixture_with, PASSWORD};

const WAIT: Duration = Duration::from_secs(5);

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

#[tokio::test]
async fn a_right_password_gives_a_session_with_one_login_and_one_logout_line() {
    let f = fixture();
    let (logs, _guard) = capture_logs();
    let s = f.core.password_login("alice", PASSWORD, &client("sftp")).await.expect("sftp login");
    assert_eq!((s.user(), s.client(), s.protocol()), ("alice", "192.0.2.7:50000", "sftp"));
    let login = logs.lines_with(&["login", "user=alice", "client=192.0.2.7:50000", "protocol=\"sftp\""]);
    assert_eq!(login.len(), 1, "one login line: {}", logs.text());
    // SFTP names the SSH method; FTP has only one, so its line has none.
    assert!(login[0].contains("method=\"password\""), "{}", login[0]);
    drop(s);
    assert_eq!(logs.lines_with(&["logout", "user=alice", "duration_ms="]).len(), 1, "{}", logs.text());

    let s = f.core.password_login("alice", PASSWORD, &client("ftps")).await.expect("ftps login");
    assert_eq!(s.protocol(), "ftps");
    let login = logs.lines_with(&["login", "protocol=\"ftps\""]);
    assert_eq!(login.len(), 1, "{}", logs.text());
    assert!(!login[0].contains("method="), "{}", login[0]);
    // The session's files are the user's home, behind the gate.
    let list = s.vfs().read_dir(&VPath::root()).await.expect("list");
    assert_eq!(list.iter().map(|e| e.name.as_slice()).collect::<Vec<_>>(), vec![b"file.txt".as_slice()]);
}

#[tokio::test]
async fn wrong_credentials_are_refused_alike_logged_and_scored_by_the_defender() {
    let defender = ferry_config::DefenderConfig { threshold: 3, ..Default::default() };
    let f =
        fixture_with(|store, events| Core::with_defender(store, Arc::new(LocalStorage::default()), events, defender));
    let (logs, _guard) = capture_logs();
    let c = client("ftps");
    assert_eq!(f.core.password_login("alice", "wrong", &c).await.err(), Some(LoginError::Refused));
    // An unknown user gets the same answer: a client cannot tell which names exist.
    assert_eq!(f.core.password_login("mallory", "wrong", &c).await.err(), Some(LoginError::Refused));
    assert_eq!(logs.lines_with(&["login failed: wrong user name or password", "client=192.0.2.7"]).len(), 2);
    assert!(!f.core.defender().is_banned(c.ip), "two failures are under the threshold of 3");
    let other = key(2);
    assert_eq!(f.core.key_login("alice", other.public_key(), &client("sftp")).await.err(), Some(LoginError::Refused));
    assert_eq!(logs.lines_with(&["login failed: key not authorised for this user", "method=\"publickey\""]).len(), 1);
    assert!(f.core.defender().is_banned(c.ip), "failures of both protocols add up to a ban");
}

#[tokio::test]
async fn a_failure_the_protocol_decided_on_is_logged_but_not_scored() {
    let defender = ferry_config::DefenderConfig { threshold: 1, ..Default::default() };
    let f =
        fixture_with(|store, events| Core::with_defender(store, Arc::new(LocalStorage::default()), events, defender));
    let (logs, _guard) = capture_logs();
    let c = client("sftp");
    f.core.login_failed("bob", &c, Some("publickey"), "ssh-rsa (SHA-1) signatures are not accepted");
    assert_eq!(
        logs.lines_with(&[
            "login failed: ssh-rsa (SHA-1) signatures are not accepted",
            "user=bob",
            "method=\"publickey\""
        ])
        .len(),
        1,
        "{}",
        logs.text()
    );
    assert!(!f.core.defender().is_banned(c.ip));
}

#[tokio::test]
async fn keys_are_known_only_for_their_user_and_log_in_with_the_publickey_method() {
    let f = fixture();
    let mine = key(1);
    let line = mine.public_key().to_openssh().expect("openssh");
    f.store.add_key("alice", &line).expect("add key");
    assert!(f.core.key_known("alice", mine.public_key()).await);
    assert!(!f.core.key_known("alice", key(2).public_key()).await);
    assert!(!f.core.key_known("bob", mine.public_key()).await);
    let (logs, _guard) = capture_logs();
    let s = f.core.key_login("alice", mine.public_key(), &client("sftp")).await.expect("key login");
    assert_eq!(s.user(), "alice");
    assert_eq!(logs.lines_with(&["login", "method=\"publickey\"", "user=alice"]).len(), 1, "{}", logs.text());
}

#[tokio::test]
async fn an_account_that_may_not_log_in_now_is_refused_with_the_reason_in_the_log() {
    let f = fixture();
    let (logs, _guard) = capture_logs();
    f.store.set_protocols("alice", Some(&["ftps".to_string()])).expect("protocols");
    assert_eq!(f.core.password_login("alice", PASSWORD, &client("sftp")).await.err(), Some(LoginError::Refused));
    assert_eq!(logs.lines_with(&["login failed: protocol sftp is not allowed for this account"]).len(), 1);
    f.core.password_login("alice", PASSWORD, &client("ftps")).await.expect("ftps is allowed");
    f.store.set_disabled("alice", true).expect("disable");
    assert_eq!(f.core.password_login("alice", PASSWORD, &client("ftps")).await.err(), Some(LoginError::Refused));
    assert_eq!(logs.lines_with(&["login failed: account disabled", "user=alice"]).len(), 1, "{}", logs.text());
}

#[tokio::test]
async fn sessions_per_user_are_limited_by_the_server_unless_the_user_has_a_limit_of_their_own() {
    let f = fixture();
    let (logs, _guard) = capture_logs();
    f.core.set_max_sessions_per_user(1);
    let first = f.core.password_login("alice", PASSWORD, &client("sftp")).await.expect("first");
    let refused = f.core.password_login("alice", PASSWORD, &client("ftps")).await.err();
    assert_eq!(
        refused,
        Some(LoginError::Limit("Too many sessions for alice: 1 at once; close one and try again".into()))
    );
    assert_eq!(
        logs.lines_with(&["limit: refused: the user has 1 sessions, the most allowed (max_sessions 1)"]).len(),
        1
    );
    drop(first);
    let again = f.core.password_login("alice", PASSWORD, &client("ftps")).await.expect("a place is free again");

    // The user's own limit wins over the server's, in both directions (0: none).
    f.store.set_max_sessions("alice", Some(2)).expect("max 2");
    let second = f.core.password_login("alice", PASSWORD, &client("sftp")).await.expect("second of 2");
    assert!(matches!(f.core.password_login("alice", PASSWORD, &client("sftp")).await, Err(LoginError::Limit(_))));
    f.store.set_max_sessions("alice", Some(0)).expect("no limit");
    let many: Vec<_> = futures_join(&f.core, 3).await;
    assert!(many.iter().all(Result::is_ok), "no limit for this user");
    drop((again, second, many));
}

async fn futures_join(core: &Arc<Core>, n: usize) -> Vec<Result<ferry_core::Session, LoginError>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(core.password_login("alice", PASSWORD, &client("sftp")).await);
    }
    out
}

/// Local storage that says when a home was opened through it.
#[derive(Default)]
struct Counted(LocalStorage, std::sync::atomic::AtomicUsize);

impl ferry_vfs::Storage for Counted {
    fn open_home(&self, user: &str, home: &std::path::Path) -> std::io::Result<Arc<dyn ferry_vfs::Vfs>> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.open_home(user, home)
    }
    fn usage(&self, user: &str, home: &std::path::Path) -> std::io::Result<ferry_vfs::Usage> {
        self.0.usage(user, home)
    }
}

#[tokio::test]
async fn a_user_who_chose_a_backend_gets_it_and_an_unconfigured_one_refuses_the_login_clearly() {
    let f = fixture();
    let (logs, _guard) = capture_logs();
    f.store.set_storage("alice", Some("s3")).expect("storage");
    assert_eq!(
        f.core.password_login("alice", PASSWORD, &client("sftp")).await.err(),
        Some(LoginError::HomeUnavailable)
    );
    assert_eq!(logs.lines_with(&["login failed: storage unavailable"]).len(), 1, "{}", logs.text());
    assert_eq!(logs.lines_with(&["which this server does not have configured"]).len(), 1, "{}", logs.text());
    let s3 = Arc::new(Counted::default());
    f.core.add_backend("s3", s3.clone());
    f.core.password_login("alice", PASSWORD, &client("sftp")).await.expect("login with the backend");
    assert_eq!(s3.1.load(std::sync::atomic::Ordering::Relaxed), 1, "the chosen backend opened the home");
}

#[tokio::test]
async fn a_home_that_cannot_be_opened_is_refused_as_unavailable_not_as_wrong_credentials() {
    let f = fixture();
    // (A missing home is created, as at `ferry user add`; a file in its place cannot be.)
    std::fs::remove_dir_all(&f.home).expect("remove home");
    std::fs::write(&f.home, b"not a directory").expect("file in its place");
    let (logs, _guard) = capture_logs();
    assert_eq!(
        f.core.password_login("alice", PASSWORD, &client("sftp")).await.err(),
        Some(LoginError::HomeUnavailable)
    );
    assert_eq!(logs.lines_with(&["login failed: home directory unavailable"]).len(), 1, "{}", logs.text());
}

#[tokio::test]
async fn live_sessions_end_when_their_account_changes() {
    let f = fixture();
    f.store.add_user("bob", Some(PASSWORD), &f.dir.0.join("bob")).expect("bob");
    let bob = f.core.password_login("bob", PASSWORD, &client("sftp")).await.expect("bob's login");
    let s = f.core.password_login("alice", PASSWORD, &client("sftp")).await.expect("login");
    let ended = s.ended();
    f.core.registry().recheck(&f.store);
    assert!(tokio::time::timeout(Duration::from_millis(200), s.ended()).await.is_err(), "nothing changed yet");
    f.store.set_password("alice", "another password").expect("password");
    f.core.registry().recheck(&f.store);
    let why = tokio::time::timeout(WAIT, ended).await.expect("ended in time");
    assert_eq!(why.as_deref(), Some("password or keys changed"));
    assert!(tokio::time::timeout(Duration::from_millis(200), bob.ended()).await.is_err(), "only alice's sessions end");

    let s = f.core.password_login("alice", "another password", &client("sftp")).await.expect("login");
    f.store.set_allow_from("alice", &["198.51.100.0/24".to_string()]).expect("allow-from");
    f.core.registry().recheck(&f.store);
    let why = tokio::time::timeout(WAIT, s.ended()).await.expect("ended in time");
    assert_eq!(why.as_deref(), Some("address 192.0.2.7 is not allowed for this account"));
    f.store.set_allow_from("alice", &[]).expect("anywhere");

    let s = f.core.password_login("alice", "another password", &client("sftp")).await.expect("login");
    f.store.remove_user("alice").expect("remove");
    f.core.registry().recheck(&f.store);
    let why = tokio::time::timeout(WAIT, s.ended()).await.expect("ended in time");
    assert_eq!(why.as_deref(), Some("account removed"));
}

#[tokio::test]
async fn the_account_watcher_sees_changes_another_process_made_to_accounts_and_quota_counts() {
    let f = fixture();
    f.store.set_quota("alice", Some(10), None).expect("quota");
    tokio::spawn(f.core.clone().watch_accounts());
    let s = f.core.password_login("alice", PASSWORD, &client("ftps")).await.expect("login");
    // `ferry user ...` and other nodes write through their own connection.
    let other = ferry_auth::UserStore::open(&f.dir.0.join("users.db")).expect("second store");
    // Another node counted 10 bytes: this node's next upload is over the quota.
    other.set_quota_usage("alice", 10, 1).expect("usage");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let opts = OpenOptions { write: true, create: true, truncate: true, ..Default::default() };
        let path = VPath::root().join(b"new.bin");
        let file = s.vfs().open(&path, opts).await.expect("open");
        let wrote = file.write_at(0, bytes::Bytes::from_static(b"x")).await;
        file.abort().await;
        if matches!(wrote, Err(FsError::QuotaExceeded)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the other node's count never arrived: {wrote:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    other.set_disabled("alice", true).expect("disable");
    let why = tokio::time::timeout(WAIT, s.ended()).await.expect("ended in time");
    assert_eq!(why.as_deref(), Some("account disabled"));
}

#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl TransferLog for Recorder {
    fn record(&self, t: &TransferRecord<'_>) {
        self.0.lock().expect("lock").push(t.path.to_string());
    }
}

#[tokio::test]
async fn protocols_report_through_the_cores_one_event_stream() {
    let recorder = Arc::new(Recorder::default());
    let events = Events::with_transfer_log(recorder.clone());
    let f = fixture_with(|store, _| Core::new(store, Arc::new(LocalStorage::default()), events));
    let who = Who { user: "alice".into(), client: "192.0.2.7:50000".into(), protocol: "ftps" };
    f.core.events().emit(Event::Transfer { who, path: "/a".into(), bytes_read: 1, bytes_written: 0, duration_ms: 1 });
    let s = f.core.password_login("alice", PASSWORD, &client("ftps")).await.expect("login");
    s.transfer(&VPath::root().join(b"b"), 0, 5, std::time::Instant::now());
    assert_eq!(*recorder.0.lock().expect("lock"), vec!["/a".to_string(), "/b".to_string()]);
    assert!(format!("{:?}", f.core).starts_with("Core"));
}
