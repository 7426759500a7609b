//! The server runtime driven in-process, as `ferry serve` drives it but on `127.0.0.1:0` listeners and a
//! shutdown future the test resolves: a user logs in over SFTP on a plain SFTP listener and on one that
//! serves every protocol (detected from the client's first bytes), a silent client on that one is greeted
//! as FTP, shutdown waits for an open transfer and returns once its client is gone, and a banned address
//! is closed at accept with the words its protocol allows.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_auth::UserStore;
use ferry_config::{limits, DefenderConfig, LimitsConfig, ListenerSpec, Protocol};
use ferry_core::{Core, Events};
use ferry_ftp::{FtpService, FtpSettings};
use ferry_server::{Directory, Gate, Listener, ListenerKind, Services};
use ferry_sftp::{Activity, Algorithms, SshService, SshSettings};
use russh::client::{self, Handle};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKeyOrCertificate};
use russh::ChannelMsg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const PASSWORD: &str = "a long passphrase";
const WAIT: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(30);

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ferry-server-run-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A running server: an `sftp` listener and an `any` one (SFTP, explicit and implicit FTPS on one port).
struct Server {
    sftp: SocketAddr,
    any: SocketAddr,
    store: Arc<UserStore>,
    core: Arc<Core>,
    stop: Option<oneshot::Sender<()>>,
    run: JoinHandle<()>,
    _dir: TempDir,
}

async fn bind(protocols: &[Protocol]) -> (Listener, Vec<(Protocol, SocketAddr)>) {
    let spec = ListenerSpec::new(protocols.to_vec(), "127.0.0.1:0".parse().unwrap());
    let tcp = TcpListener::bind(spec.addr).await.unwrap();
    let listener = Listener::new(tcp, ListenerKind::of(&spec).unwrap()).unwrap();
    let addr = listener.local_addr();
    (listener, protocols.iter().map(|p| (*p, addr)).collect())
}

/// Alice (a password) in a fresh user store, and a server as `ferry serve` builds it, with the defender on.
async fn server() -> Server {
    let dir = temp_dir();
    let store = Arc::new(UserStore::open(&dir.0.join("users.db")).unwrap());
    let home = dir.0.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("file.txt"), b"hello").unwrap();
    store.add_user("alice", Some(PASSWORD), &home).unwrap();

    let storage = Arc::new(ferry_vfs::local::LocalStorage::default());
    let core = Core::with_defender(store.clone(), storage, Events::new(), DefenderConfig::default());
    let activity = Arc::new(Activity::default());
    let ssh_settings = SshSettings {
        window_size: limits::SSH_WINDOW_SIZE,
        max_packet_size: limits::SSH_MAX_PACKET_SIZE,
        idle_timeout: limits::IDLE_TIMEOUT,
        max_auth_attempts: limits::MAX_AUTH_ATTEMPTS,
        failed_login_delay: Duration::from_millis(100),
        algorithms: Algorithms::default(),
    };
    let host = PrivateKey::from(Ed25519Keypair::from_seed(&[9; 32]));
    let ssh = Arc::new(SshService::new(vec![host], core.clone(), activity.clone(), &ssh_settings));
    let tls = ferry_tls::TlsStore::load_or_generate(&dir.0, None, None).unwrap();
    let ftp_settings = FtpSettings {
        passive_ports: (40000, 49999),
        passive_address: None,
        require_session_reuse: false,
        idle_timeout: limits::IDLE_TIMEOUT,
        failed_login_delay: Duration::from_millis(100),
        max_login_attempts: limits::MAX_AUTH_ATTEMPTS as u32,
        trusted_proxies: Default::default(),
    };
    let ftp = Arc::new(FtpService::new(ftp_settings, core.clone(), Arc::new(tls), activity.clone()));

    let (sftp, mut directory) = bind(&[Protocol::Sftp]).await;
    let (any, more) = bind(&[Protocol::Sftp, Protocol::Ftps, Protocol::FtpsImplicit]).await;
    directory.extend(more);
    let (sftp_addr, any_addr) = (sftp.local_addr(), any.local_addr());
    let services = Arc::new(Services {
        ssh,
        ftp: Some(ftp),
        directory: Directory(directory),
        detect_wait: Duration::from_millis(300),
        ssh_wait: Duration::from_millis(300),
        defender: core.defender().clone(),
        activity,
        trusted_proxies: Default::default(),
    });
    let gate = Gate::new(LimitsConfig::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let run = tokio::spawn(ferry_server::run(vec![sftp, any], services, gate, shutdown, GRACE));
    Server { sftp: sftp_addr, any: any_addr, store, core, stop: Some(stop), run, _dir: dir }
}

impl Server {
    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Client;

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

async fn log_in(addr: SocketAddr) -> Handle<Client> {
    let mut c =
        timeout(WAIT, client::connect(Arc::new(client::Config::default()), addr, Client)).await.unwrap().unwrap();
    let r = timeout(WAIT, c.authenticate_password("alice", PASSWORD)).await.unwrap().unwrap();
    assert!(r.success(), "alice logs in on {addr}");
    c
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(kind);
    p.extend_from_slice(body);
    p
}

/// The type byte of the next SFTP reply.
async fn reply(read: &mut russh::ChannelReadHalf) -> u8 {
    loop {
        match timeout(WAIT, read.wait()).await.unwrap() {
            Some(ChannelMsg::Data { data }) => return data[4],
            Some(_) => continue,
            None => panic!("the channel closed before the reply"),
        }
    }
}

/// An SFTP session on `c` that has opened `/file.txt` for reading and holds it open.
async fn open_a_file(c: &Handle<Client>) -> (russh::ChannelReadHalf, russh::ChannelWriteHalf<client::Msg>) {
    let channel = c.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "sftp").await.unwrap();
    let (mut read, write) = channel.split();
    write.data(&packet(1, &3u32.to_be_bytes())[..]).await.unwrap(); // INIT, version 3
    assert_eq!(reply(&mut read).await, 2, "VERSION");
    let mut open = 1u32.to_be_bytes().to_vec();
    open.extend_from_slice(&9u32.to_be_bytes());
    open.extend_from_slice(b"/file.txt");
    open.extend_from_slice(&1u32.to_be_bytes()); // READ
    open.extend_from_slice(&0u32.to_be_bytes()); // no attributes
    write.data(&packet(3, &open)[..]).await.unwrap();
    assert_eq!(reply(&mut read).await, 102, "HANDLE");
    (read, write)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_both_listeners_and_drains_an_open_transfer_on_shutdown() {
    let mut s = server().await;

    // SFTP on the SFTP listener, and on the `any` one, where the SSH version line picks SFTP.
    let on_any = log_in(s.any).await;
    on_any.disconnect(russh::Disconnect::ByApplication, "", "").await.unwrap();
    let c = log_in(s.sftp).await;
    let (_read, _write) = open_a_file(&c).await;

    // A client that says nothing on the `any` listener is an FTP client waiting for the greeting.
    let mut silent = TcpStream::connect(s.any).await.unwrap();
    let mut greeting = [0u8; 4];
    timeout(WAIT, silent.read_exact(&mut greeting)).await.unwrap().unwrap();
    assert_eq!(&greeting, b"220 ");
    drop(silent);

    // Shutdown with a file open: no new connections, and `run` waits for the transfer.
    s.shut_down();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!s.run.is_finished(), "run returned with a transfer still open");
    for addr in [s.sftp, s.any] {
        assert!(TcpStream::connect(addr).await.is_err(), "{addr} still accepts after shutdown");
    }

    // The client goes away: its file closes with its session, and `run` returns well within the grace.
    c.disconnect(russh::Disconnect::ByApplication, "", "").await.unwrap();
    drop(c);
    timeout(Duration::from_secs(5), &mut s.run).await.expect("run returns once the transfer is over").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_no_transfer_returns_at_once() {
    let mut s = server().await;
    let c = log_in(s.sftp).await;
    s.shut_down();
    timeout(Duration::from_secs(2), &mut s.run).await.expect("nothing to wait for").unwrap();
    drop(c);
}

/// Everything a client reads from `addr` until the server closes.
async fn read_all(addr: SocketAddr) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    timeout(WAIT, tcp.read_to_end(&mut got)).await.expect("closed by the server").unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_address_is_closed_at_accept() {
    let mut s = server().await;
    let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let until = ferry_auth::now_unix() + 3600;
    s.store.add_ban(here, until, "in-process test").unwrap();
    s.core.defender().reload();

    // One line and the close: plain text for SSH clients, a 421 where an FTP client may listen.
    let banned = "Your address is banned for a while after repeated failed logins; try again later";
    assert_eq!(String::from_utf8_lossy(&read_all(s.sftp).await), format!("{banned}\r\n"));
    assert_eq!(String::from_utf8_lossy(&read_all(s.any).await), format!("421 {banned}\r\n"));
    // Not even the key exchange starts.
    let ssh = timeout(WAIT, client::connect(Arc::new(client::Config::default()), s.sftp, Client)).await.unwrap();
    assert!(ssh.is_err(), "a banned address got an SSH session");

    // Lifted in the database, lifted at the next reload.
    assert!(s.store.remove_ban(here).unwrap());
    s.core.defender().reload();
    let mut tcp = TcpStream::connect(s.sftp).await.unwrap();
    tcp.write_all(b"SSH-2.0-test\r\n").await.unwrap();
    let mut version = [0u8; 4];
    timeout(WAIT, tcp.read_exact(&mut version)).await.unwrap().unwrap();
    assert_eq!(&version, b"SSH-");

    s.shut_down();
    timeout(Duration::from_secs(5), &mut s.run).await.unwrap().unwrap();
}
