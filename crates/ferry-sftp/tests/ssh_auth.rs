//! Logging in over SSH, as the README promises it, with a real russh client against `SshService`: a wrong
//! password is answered after the failed-login delay and password stays on offer, a refused key is
//! answered at once, the attempts per connection are limited, keyboard-interactive is refused with the
//! methods that work, `ssh-rsa` (SHA-1) signatures are refused even where the legacy set names ssh-rsa,
//! and a connection that does not log in within the grace is closed. Then what the SSH layer does with a
//! logged-in connection: the channel requests it answers, the sessions it ends, the channels it allows,
//! the window it hands back as SFTP consumes the input, and a channel closed mid-upload.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_auth::{Admission, UserStore};
use ferry_config::{AlgorithmList, SshAlgorithms};
use ferry_sftp::{Activity, Algorithms, SshService, SshSettings};
use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse};
use russh::keys::ssh_key::private::{Ed25519Keypair, RsaKeypair};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::time::timeout;

#[path = "support/wire.rs"]
mod wire;
use wire::*;

const DELAY: Duration = Duration::from_millis(400);
const ATTEMPTS: usize = 3;
const PASSWORD: &str = "a long passphrase";
const WAIT: Duration = Duration::from_secs(10);
const CLOSE: u8 = 4;
const WRITE: u8 = 6;

struct Client;

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

struct Server {
    addr: std::net::SocketAddr,
    rsa: Arc<PrivateKey>,
    ed25519: Arc<PrivateKey>,
    /// The user store and core the server runs on, to change an account under a live session.
    store: Arc<UserStore>,
    core: Arc<ferry_core::Core>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server with user alice (password, an ed25519 and an RSA key) that serves every connection it accepts;
/// its `[sftp] host_key_algorithms` is the legacy set's "+ssh-rsa", so ssh-rsa is in server-sig-algs.
async fn server(grace: Duration) -> Server {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ferry-ssh-auth-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = UserStore::open(&dir.join("users.db")).unwrap();
    std::fs::create_dir_all(dir.join("home")).unwrap();
    store.add_user("alice", Some(PASSWORD), &dir.join("home")).unwrap();
    let mut rng = rand010::rng();
    let rsa = Arc::new(PrivateKey::from(RsaKeypair::random(&mut rng, 2048).unwrap()));
    let ed25519 = Arc::new(PrivateKey::from(Ed25519Keypair::from_seed(&[3; 32])));
    for k in [&rsa, &ed25519] {
        store.add_key("alice", &k.public_key().to_openssh().unwrap()).unwrap();
    }
    let legacy = SshAlgorithms {
        host_key_algorithms: ferry_config::parse_algorithm_list(AlgorithmList::HostKeyAlgorithms, "+ssh-rsa").unwrap(),
        ..Default::default()
    };
    let settings = SshSettings {
        window_size: 1 << 20,
        max_packet_size: 32 * 1024,
        idle_timeout: Duration::from_secs(600),
        max_auth_attempts: ATTEMPTS,
        failed_login_delay: DELAY,
        algorithms: Algorithms::from_config(&legacy).unwrap(),
    };
    let host = PrivateKey::from(Ed25519Keypair::from_seed(&[9; 32]));
    let store = Arc::new(store);
    let core = ferry_core::Core::new(
        store.clone(),
        Arc::new(ferry_vfs::local::LocalStorage::default()),
        ferry_core::Events::new(),
    );
    let svc = Arc::new(SshService::new(vec![host], core.clone(), Arc::new(Activity::default()), &settings));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = listener.accept().await.unwrap();
            let svc = svc.clone();
            tokio::spawn(svc.serve_connection(tcp, peer, Admission::new(grace, None)));
        }
    });
    Server { addr, rsa, ed25519, store, core, _dir: TempDir(dir) }
}

async fn connect(s: &Server) -> client::Handle<Client> {
    timeout(WAIT, client::connect(Arc::new(client::Config::default()), s.addr, Client)).await.unwrap().unwrap()
}

fn both_methods() -> MethodSet {
    MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..])
}

fn assert_refused_with_both_methods(r: &AuthResult, what: &str) {
    match r {
        AuthResult::Failure { remaining_methods, partial_success: false } => {
            assert_eq!(*remaining_methods, both_methods(), "{what}: the client must be able to try again")
        }
        other => panic!("{what}: {other:?}"),
    }
}

/// Whether the server closed `c` within `limit`.
async fn closed_within(c: &client::Handle<Client>, limit: Duration) -> bool {
    let closed = timeout(limit, async {
        while !c.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    closed.await.is_ok()
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let r = timeout(WAIT, f).await.expect("answered in time");
    (r, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_answered_after_the_delay_and_may_be_typed_again() {
    let s = server(Duration::from_secs(60)).await;
    let mut c = connect(&s).await;
    let (r, took) = timed(c.authenticate_password("alice", "wrong")).await;
    assert_refused_with_both_methods(&r.unwrap(), "a wrong password");
    assert!(took >= DELAY, "refused after {took:?}; the delay is {DELAY:?}");
    let (r, took) = timed(c.authenticate_password("alice", PASSWORD)).await;
    assert!(r.unwrap().success(), "the right password after a typo");
    assert!(took < DELAY, "a right password is not delayed ({took:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_refused_like_a_wrong_password() {
    let s = server(Duration::from_secs(60)).await;
    let mut c = connect(&s).await;
    let (r, took) = timed(c.authenticate_password("mallory", PASSWORD)).await;
    assert_refused_with_both_methods(&r.unwrap(), "an unknown user");
    assert!(took >= DELAY, "an unknown user was answered after {took:?}: faster than a wrong password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_answered_at_once_and_the_next_key_works() {
    let s = server(Duration::from_secs(60)).await;
    let mut c = connect(&s).await;
    let stranger = Arc::new(PrivateKey::from(Ed25519Keypair::from_seed(&[4; 32])));
    let (r, took) = timed(c.authenticate_publickey("alice", PrivateKeyWithHashAlg::new(stranger, None))).await;
    assert_refused_with_both_methods(&r.unwrap(), "an unknown key");
    assert!(took < DELAY, "a refused key was delayed ({took:?}): clients trying their keys would crawl");
    let (r, _) = timed(c.authenticate_publickey("alice", PrivateKeyWithHashAlg::new(s.ed25519.clone(), None))).await;
    assert!(r.unwrap().success(), "alice's key after a refused one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_rsa_sha1_signatures_are_refused_and_rsa_sha2_ones_accepted() {
    let s = server(Duration::from_secs(60)).await;
    let mut c = connect(&s).await;
    let (r, _) = timed(c.authenticate_publickey("alice", PrivateKeyWithHashAlg::new(s.rsa.clone(), None))).await;
    assert_refused_with_both_methods(&r.unwrap(), "an ssh-rsa (SHA-1) signature");
    let sha2 = PrivateKeyWithHashAlg::new(s.rsa.clone(), Some(HashAlg::Sha256));
    let (r, _) = timed(c.authenticate_publickey("alice", sha2)).await;
    assert!(r.unwrap().success(), "the same key with rsa-sha2-256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_interactive_is_refused_with_the_methods_that_work() {
    let s = server(Duration::from_secs(60)).await;
    let mut c = connect(&s).await;
    let (r, took) = timed(c.authenticate_keyboard_interactive_start("alice", None)).await;
    match r.unwrap() {
        KeyboardInteractiveAuthResponse::Failure { remaining_methods, .. } => {
            assert_eq!(remaining_methods, both_methods())
        }
        other => panic!("keyboard-interactive: {other:?}"),
    }
    assert!(took < DELAY, "keyboard-interactive refused after {took:?}");
    let (r, _) = timed(c.authenticate_password("alice", PASSWORD)).await;
    assert!(r.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_ends_after_the_last_allowed_failure_over_every_method() {
    let s = server(Duration::from_secs(60)).await;
    let mut c = connect(&s).await;
    let stranger = Arc::new(PrivateKey::from(Ed25519Keypair::from_seed(&[5; 32])));
    // Failures of both kinds count together.
    let (r, _) = timed(c.authenticate_password("alice", "wrong")).await;
    assert_refused_with_both_methods(&r.unwrap(), "failure 1");
    for i in 2..ATTEMPTS {
        let (r, _) = timed(c.authenticate_publickey("alice", PrivateKeyWithHashAlg::new(stranger.clone(), None))).await;
        assert_refused_with_both_methods(&r.unwrap(), &format!("failure {i}"));
    }
    assert!(!c.is_closed(), "disconnected before the limit");
    let (last, _) = timed(c.authenticate_password("alice", "wrong again")).await;
    // The last failure is answered, then the server disconnects; even the right password is refused now.
    if let Ok(r) = last {
        assert!(!r.success());
        let after = timeout(WAIT, c.authenticate_password("alice", PASSWORD)).await.expect("answered or closed");
        assert!(after.map(|r| !r.success()).unwrap_or(true), "logged in after {ATTEMPTS} failures");
    }
    assert!(closed_within(&c, WAIT).await, "still connected after {ATTEMPTS} failures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_within_the_grace_closes_the_connection_but_a_login_keeps_it() {
    let grace = Duration::from_millis(700);
    let s = server(grace).await;
    let idle = connect(&s).await;
    let mut in_time = connect(&s).await;
    let (r, _) = timed(in_time.authenticate_password("alice", PASSWORD)).await;
    assert!(r.unwrap().success());
    let start = Instant::now();
    assert!(closed_within(&idle, grace + WAIT).await, "a connection that never logged in is still open");
    tokio::time::sleep(grace).await;
    assert!(!in_time.is_closed(), "a logged-in connection was closed at the login grace ({:?})", start.elapsed());
}

/// What a channel that asked for `what` receives: stderr text, exit status, and whether the request failed.
async fn refusal(c: &client::Handle<Client>, what: &str) -> (String, Option<u32>, bool) {
    let mut ch = c.channel_open_session().await.unwrap();
    match what {
        "shell" => ch.request_shell(true).await.unwrap(),
        "exec" => ch.exec(true, "ls /").await.unwrap(),
        _ => ch.request_subsystem(true, what).await.unwrap(),
    }
    let (mut text, mut status, mut failed) = (String::new(), None, false);
    let read = timeout(WAIT, async {
        while let Some(msg) = ch.wait().await {
            match msg {
                russh::ChannelMsg::ExtendedData { data, .. } => text.push_str(&String::from_utf8_lossy(&data)),
                russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                russh::ChannelMsg::Failure => failed = true,
                russh::ChannelMsg::Close => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the {what} request was never answered to the end");
    (text, status, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_a_command_or_another_subsystem_gets_a_clear_refusal() {
    let s = server(Duration::from_secs(60)).await;
    let mut c = connect(&s).await;
    let (r, _) = timed(c.authenticate_password("alice", PASSWORD)).await;
    assert!(r.unwrap().success());
    for what in ["shell", "exec", "netconf"] {
        let (text, status, failed) = refusal(&c, what).await;
        assert!(text.starts_with("This server provides SFTP only"), "{what}: {text:?}");
        assert_eq!(status, Some(1), "{what}: a failure exit status");
        assert!(failed, "{what}: the request itself is refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_is_disconnected_when_its_account_is_disabled() {
    let s = server(Duration::from_secs(60)).await;
    let mut c = connect(&s).await;
    assert!(timed(c.authenticate_password("alice", PASSWORD)).await.0.unwrap().success());
    s.store.set_disabled("alice", true).unwrap();
    s.core.registry().recheck(&s.store);
    assert!(closed_within(&c, WAIT).await, "still connected after the account was disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_opens_at_most_8_session_channels() {
    let s = server(Duration::from_secs(60)).await;
    let mut c = connect(&s).await;
    assert!(timed(c.authenticate_password("alice", PASSWORD)).await.0.unwrap().success());
    let mut open = Vec::new();
    for i in 1..=8 {
        let ch = timeout(WAIT, c.channel_open_session()).await.unwrap().unwrap_or_else(|e| panic!("channel {i}: {e}"));
        // Half of them serving SFTP, half still waiting for a subsystem: both kinds count.
        if i <= 4 {
            timeout(WAIT, ch.request_subsystem(true, "sftp")).await.unwrap().unwrap();
        }
        open.push(ch);
    }
    let ninth = timeout(WAIT, c.channel_open_session()).await.unwrap();
    assert!(ninth.is_err(), "a 9th session channel was opened");
    drop(open.pop());
}

/// The next request reply on `ch`: true for success, false for failure.
async fn request_reply(ch: &mut russh::Channel<client::Msg>) -> bool {
    let reply = timeout(WAIT, async {
        while let Some(msg) = ch.wait().await {
            match msg {
                russh::ChannelMsg::Success => return Some(true),
                russh::ChannelMsg::Failure => return Some(false),
                _ => {}
            }
        }
        None
    })
    .await;
    reply.expect("the request was answered in time (paramiko waits for it)").expect("the channel stayed open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_and_x11_requests_are_refused_and_environment_variables_accepted() {
    let s = server(Duration::from_secs(60)).await;
    let mut c = connect(&s).await;
    assert!(timed(c.authenticate_password("alice", PASSWORD)).await.0.unwrap().success());
    let mut ch = c.channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm", 80, 24, 0, 0, &[]).await.unwrap();
    assert!(!request_reply(&mut ch).await, "a terminal is refused");
    ch.request_x11(true, false, "MIT-MAGIC-COOKIE-1", "00", 0).await.unwrap();
    assert!(!request_reply(&mut ch).await, "X11 forwarding is refused");
    ch.set_env(true, "LANG", "C.UTF-8").await.unwrap();
    assert!(request_reply(&mut ch).await, "LANG is accepted, so clients that send it stay quiet");
    ch.request_subsystem(true, "sftp").await.unwrap();
    assert!(request_reply(&mut ch).await, "and SFTP still starts on the channel");
}

/// The next SFTP reply (type, body after the type byte), however the channel splits it; `buf` keeps
/// what arrived beyond it.
async fn sftp_reply(read: &mut russh::ChannelReadHalf, buf: &mut Vec<u8>) -> (u8, Vec<u8>) {
    loop {
        if buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() >= 4 + len {
                let packet: Vec<u8> = buf.drain(..4 + len).collect();
                return (packet[4], packet[5..].to_vec());
            }
        }
        match timeout(WAIT, read.wait()).await.expect("a reply in time: was the window handed back?") {
            Some(russh::ChannelMsg::Data { data }) => buf.extend_from_slice(&data),
            Some(_) => {}
            None => panic!("the channel closed"),
        }
    }
}

/// The next `n` SFTP replies' type bytes.
async fn sftp_replies(read: &mut russh::ChannelReadHalf, buf: &mut Vec<u8>, n: usize) -> Vec<u8> {
    let mut kinds = Vec::new();
    while kinds.len() < n {
        kinds.push(sftp_reply(read, buf).await.0);
    }
    kinds
}

type ClientWrite = russh::ChannelWriteHalf<client::Msg>;

/// A new session channel on `c` running SFTP, past INIT and VERSION.
async fn sftp_channel(c: &client::Handle<Client>) -> (russh::ChannelReadHalf, ClientWrite, Vec<u8>) {
    let ch = timeout(WAIT, c.channel_open_session()).await.unwrap().unwrap();
    ch.request_subsystem(true, "sftp").await.unwrap();
    let (mut read, write) = ch.split();
    let mut buf = Vec::new();
    write.data(&init()[..]).await.unwrap();
    assert_eq!(sftp_replies(&mut read, &mut buf, 1).await, [2], "VERSION");
    (read, write, buf)
}

/// OPENs `name` to write (CREAT | TRUNC) with request id 1 and returns the handle.
async fn open_to_write(
    read: &mut russh::ChannelReadHalf,
    write: &ClientWrite,
    buf: &mut Vec<u8>,
    name: &[u8],
) -> Vec<u8> {
    write.data(&open_request(1, name, 0x2 | 0x8 | 0x10)[..]).await.unwrap(); // WRITE | CREAT | TRUNC
    let (kind, body) = sftp_reply(read, buf).await;
    assert_eq!(kind, 102, "HANDLE");
    // id, then the handle as a string
    let len = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
    body[8..8 + len].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_four_times_the_window_completes_as_the_window_is_handed_back() {
    let s = server(Duration::from_secs(60)).await;
    let mut c = connect(&s).await;
    assert!(timed(c.authenticate_password("alice", PASSWORD)).await.0.unwrap().success());
    let (mut read, write, mut buf) = sftp_channel(&c).await;
    let handle = open_to_write(&mut read, &write, &mut buf, b"big.bin").await;
    // The server's window is 1 MiB: 4 MiB of WRITEs go through only if it hands the window back.
    let chunk = vec![7u8; 32 * 1024];
    let writer = tokio::spawn(async move {
        for i in 0..128u64 {
            write
                .data(&handle_request(WRITE, 10 + i as u32, &handle, &offset_data(i * chunk.len() as u64, &chunk))[..])
                .await
                .unwrap();
        }
        write
    });
    let statuses = sftp_replies(&mut read, &mut buf, 128).await;
    assert!(statuses.iter().all(|k| *k == 101), "128 STATUS replies");
    timeout(WAIT, writer).await.expect("every WRITE sent").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_sftp_channel_mid_upload_keeps_the_old_file_and_the_connection() {
    let s = server(Duration::from_secs(60)).await;
    let home = s._dir.0.join("home");
    std::fs::write(home.join("keep.txt"), b"the good file").unwrap();
    let mut c = connect(&s).await;
    assert!(timed(c.authenticate_password("alice", PASSWORD)).await.0.unwrap().success());
    let (mut read, write, mut buf) = sftp_channel(&c).await;
    let handle = open_to_write(&mut read, &write, &mut buf, b"keep.txt").await;
    write.data(&handle_request(WRITE, 2, &handle, &offset_data(0, b"half of a new"))[..]).await.unwrap();
    assert_eq!(sftp_replies(&mut read, &mut buf, 1).await, [101], "the WRITE's STATUS");
    // The client closes the channel without an SFTP CLOSE, as sshfs or a killed `sftp` does.
    write.eof().await.unwrap();
    write.close().await.unwrap();

    // The upload is abandoned: the old file stays and no temporary file is left behind.
    let left = || {
        let names: Vec<_> = std::fs::read_dir(&home).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.len() == 1 && std::fs::read(home.join("keep.txt")).unwrap() == b"the good file"
    };
    let settled = timeout(WAIT, async {
        while !left() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(settled.await.is_ok(), "the cut upload left {:?}", std::fs::read_dir(&home).unwrap().collect::<Vec<_>>());
    // The connection goes on: a new SFTP channel on it works and can upload.
    assert!(!c.is_closed(), "closing one channel ended the connection");
    let (mut read, write, mut buf) = sftp_channel(&c).await;
    let handle = open_to_write(&mut read, &write, &mut buf, b"next.txt").await;
    write.data(&handle_request(WRITE, 2, &handle, &offset_data(0, b"next"))[..]).await.unwrap();
    write.data(&handle_request(CLOSE, 3, &handle, &[])[..]).await.unwrap();
    assert_eq!(sftp_replies(&mut read, &mut buf, 2).await, [101, 101], "WRITE and CLOSE");
    assert_eq!(std::fs::read(home.join("next.txt")).unwrap(), b"next");
}
