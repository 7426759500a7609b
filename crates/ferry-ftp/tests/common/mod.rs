//! A test server (FtpService on 127.0.0.1:0 with a temporary user store and certificate) and a raw FTP
//! client on tokio that speaks explicit FTPS through tokio-rustls.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferry_auth::UserStore;
use ferry_ftp::{FtpMode, FtpService, FtpSettings};
use ferry_tls::TlsStore;
use ferry_vfs::activity::Activity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// The log capture of ferry-core's tests, shared rather than copied.
#[path = "../../../ferry-core/tests/support/logs.rs"]
mod logs;
pub use logs::capture_logs;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";
/// A second user, with the same password.
pub const OTHER_USER: &str = "bob";

pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub home: PathBuf,
    pub activity: Arc<Activity>,
    /// Every transfer the core's event stream saw (what the log and the xferlog get).
    pub transfers: Arc<Transfers>,
}

/// Transfers as `(path, bytes read, bytes written, completed)`.
#[derive(Default)]
pub struct Transfers(std::sync::Mutex<Vec<(String, u64, u64, bool)>>);

impl Transfers {
    pub fn list(&self) -> Vec<(String, u64, u64, bool)> {
        self.0.lock().expect("transfers").clone()
    }
}

impl ferry_core::TransferLog for Transfers {
    fn record(&self, t: &ferry_core::TransferRecord<'_>) {
        self.0.lock().expect("transfers").push((t.path.to_string(), t.bytes_read, t.bytes_written, t.completed));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "ferry-ftp-test-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

pub fn settings() -> FtpSettings {
    FtpSettings {
        passive_ports: (40000, 49999),
        passive_address: None,
        require_session_reuse: false,
        idle_timeout: Duration::from_secs(30),
        failed_login_delay: Duration::from_millis(10),
        max_login_attempts: 3,
        trusted_proxies: Default::default(),
    }
}

/// Starts a server; every connection is served in `mode`, with 30 s to log in.
pub async fn start(mode: FtpMode, settings: FtpSettings) -> TestServer {
    start_with_grace(mode, settings, Duration::from_secs(30)).await
}

/// Starts a server whose connections must log in within `grace` of connecting.
pub async fn start_with_grace(mode: FtpMode, settings: FtpSettings, grace: Duration) -> TestServer {
    let dir = temp_dir("srv");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let store = UserStore::open(&dir.join("users.db")).expect("store");
    store.add_user(USER, Some(PASSWORD), &home).expect("user");
    store.add_user(OTHER_USER, Some(PASSWORD), &dir.join("bob")).expect("second user");
    let tls = TlsStore::load_or_generate(&dir, None, None).expect("tls");
    let activity = Arc::new(Activity::default());
    let transfers = Arc::new(Transfers::default());
    let core = ferry_core::Core::new(
        Arc::new(store),
        Arc::new(ferry_vfs::local::LocalStorage::default()),
        ferry_core::Events::with_transfer_log(transfers.clone()),
    );
    let svc = Arc::new(FtpService::new(settings, core, Arc::new(tls), activity.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let local = tcp.local_addr().expect("local addr");
            let admission = ferry_auth::Admission::new(grace, None);
            tokio::spawn(svc.clone().serve_connection(tcp, peer, local, mode, admission));
        }
    });
    TestServer { addr, dir, home, activity, transfers }
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client TLS configuration that accepts the self-signed test certificate. It keeps sessions for
/// resumption (rustls' default in-memory store), as an FTPS client that reuses sessions does.
pub fn client_tls(tls12_only: bool) -> Arc<ClientConfig> {
    client_tls_with_store(tls12_only, Arc::new(rustls::client::ClientSessionMemoryCache::new(64)))
}

/// Like [`client_tls`], with the given session store (shared stores model clients such as rclone). All
/// configurations share one certificate verifier, as rustls resumes only sessions verified by the same one.
pub fn client_tls_with_store(
    tls12_only: bool,
    store: Arc<dyn rustls::client::ClientSessionStore>,
) -> Arc<ClientConfig> {
    static BASE: std::sync::OnceLock<[Arc<ClientConfig>; 2]> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(AcceptAny(provider.clone()));
        let make = |versions: &[&'static rustls::SupportedProtocolVersion]| {
            Arc::new(
                ClientConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)
                    .expect("versions")
                    .dangerous()
                    .with_custom_certificate_verifier(verifier.clone())
                    .with_no_client_auth(),
            )
        };
        [make(&[&rustls::version::TLS13, &rustls::version::TLS12]), make(&[&rustls::version::TLS12])]
    });
    let mut config = (*base[usize::from(tls12_only)]).clone();
    config.resumption = rustls::client::Resumption::store(store);
    Arc::new(config)
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub struct Client {
    pub stream: Pin<Box<dyn Stream>>,
    buf: Vec<u8>,
    pub tls: Arc<ClientConfig>,
    pub addr: SocketAddr,
}

/// A reply: its code and full text (all lines).
#[derive(Debug)]
pub struct Resp {
    pub code: u16,
    pub text: String,
}

impl Client {
    pub fn from_stream(stream: Pin<Box<dyn Stream>>, addr: SocketAddr) -> Client {
        Client { stream, buf: Vec::new(), tls: client_tls(false), addr }
    }

    pub async fn connect(addr: SocketAddr) -> (Client, Resp) {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut c = Client { stream: Box::pin(tcp), buf: Vec::new(), tls: client_tls(false), addr };
        let greeting = c.read_reply().await;
        (c, greeting)
    }

    /// Connects, upgrades with AUTH TLS, logs in and sets PBSZ 0 / PROT P.
    pub async fn login(addr: SocketAddr) -> Client {
        Self::login_with(addr, client_tls(false)).await
    }

    pub async fn login_with(addr: SocketAddr, tls: Arc<ClientConfig>) -> Client {
        Self::login_as(addr, tls, USER).await
    }

    pub async fn login_as(addr: SocketAddr, tls: Arc<ClientConfig>, user: &str) -> Client {
        let (mut c, greeting) = Client::connect(addr).await;
        assert_eq!(greeting.code, 220, "{greeting:?}");
        c.tls = tls;
        c.auth_tls().await;
        assert_eq!(c.cmd(&format!("USER {user}")).await.code, 331);
        assert_eq!(c.cmd(&format!("PASS {PASSWORD}")).await.code, 230);
        assert_eq!(c.cmd("PBSZ 0").await.code, 200);
        assert_eq!(c.cmd("PROT P").await.code, 200);
        c
    }

    pub async fn auth_tls(&mut self) {
        let r = self.cmd("AUTH TLS").await;
        assert_eq!(r.code, 234, "{r:?}");
        self.start_tls().await;
    }

    /// The TLS handshake on the control connection, after the server's 234.
    pub async fn start_tls(&mut self) {
        let plain = std::mem::replace(&mut self.stream, Box::pin(tokio::io::duplex(1).0));
        let connector = TlsConnector::from(self.tls.clone());
        let tls = connector.connect(ServerName::try_from("localhost").expect("name"), plain).await.expect("handshake");
        self.stream = Box::pin(tls);
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    pub async fn cmd(&mut self, line: &str) -> Resp {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self.read_reply().await
    }

    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string());
            }
            let mut tmp = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut tmp))
                .await
                .expect("reply within 30 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// Reads one reply (multi-line aware). Panics if the connection closed first.
    pub async fn read_reply(&mut self) -> Resp {
        self.try_read_reply().await.expect("a reply, not a closed connection")
    }

    pub async fn try_read_reply(&mut self) -> Option<Resp> {
        let first = self.read_line().await?;
        let code: u16 = first.get(..3).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad reply {first:?}"));
        let mut text = first.clone();
        if first.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                let l = self.read_line().await?;
                text.push('\n');
                text.push_str(&l);
                if l.starts_with(&end) {
                    break;
                }
            }
        }
        Some(Resp { code, text })
    }

    /// EPSV, returning the data port.
    pub async fn epsv(&mut self) -> u16 {
        let r = self.cmd("EPSV").await;
        assert_eq!(r.code, 229, "{r:?}");
        let inner = r.text.split("(|||").nth(1).and_then(|s| s.split('|').next()).expect("port in 229");
        inner.parse().expect("port number")
    }

    /// PASV, returning the data address.
    pub async fn pasv(&mut self) -> SocketAddr {
        let r = self.cmd("PASV").await;
        assert_eq!(r.code, 227, "{r:?}");
        let inner = r.text.split('(').nth(1).and_then(|s| s.split(')').next()).expect("address in 227");
        let n: Vec<u16> = inner.split(',').map(|x| x.parse().expect("number")).collect();
        format!("{}.{}.{}.{}:{}", n[0], n[1], n[2], n[3], n[4] * 256 + n[5]).parse().expect("addr")
    }

    /// Opens a TLS data connection to `port` (client side of the handshake).
    pub async fn data_tls(&self, port: u16) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect((self.addr.ip(), port)).await.expect("data connect");
        TlsConnector::from(self.tls.clone())
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("data handshake")
    }

    /// Runs a download-type command (RETR/LIST/NLST/MLSD) over a passive TLS data connection.
    pub async fn download(&mut self, command: &str) -> (Resp, Vec<u8>, Resp) {
        let port = self.epsv().await;
        let tcp = TcpStream::connect((self.addr.ip(), port)).await.expect("data connect");
        self.send_raw(format!("{command}\r\n").as_bytes()).await;
        let first = self.read_reply().await;
        if first.code >= 200 {
            return (first, Vec::new(), Resp { code: 0, text: String::new() });
        }
        let mut data = TlsConnector::from(self.tls.clone())
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("data handshake");
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).await.expect("read data (clean TLS close)");
        drop(data);
        let last = self.read_reply().await;
        (first, bytes, last)
    }

    /// Like [`Client::download`], but starts the TLS handshake right after connecting, before sending the
    /// command, as curl does.
    pub async fn download_eager(&mut self, command: &str) -> (Resp, Vec<u8>, Resp) {
        let port = self.epsv().await;
        let tcp = TcpStream::connect((self.addr.ip(), port)).await.expect("data connect");
        let connector = TlsConnector::from(self.tls.clone());
        let handshake =
            tokio::spawn(async move { connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await });
        // Give the ClientHello time to arrive before the command.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.send_raw(format!("{command}\r\n").as_bytes()).await;
        let first = self.read_reply().await;
        let mut data = handshake.await.expect("join").expect("data handshake");
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).await.expect("read data (clean TLS close)");
        drop(data);
        let last = self.read_reply().await;
        (first, bytes, last)
    }

    /// Runs a download command whose data connection the server refuses after the TLS handshake (session
    /// reuse): returns the 150 and the 425 that follows it.
    pub async fn download_expect_refusal(&mut self, command: &str) -> (Resp, Resp, ()) {
        let port = self.epsv().await;
        let tcp = TcpStream::connect((self.addr.ip(), port)).await.expect("data connect");
        self.send_raw(format!("{command}\r\n").as_bytes()).await;
        let first = self.read_reply().await;
        let _ =
            TlsConnector::from(self.tls.clone()).connect(ServerName::try_from("localhost").expect("name"), tcp).await;
        let last = self.read_reply().await;
        assert_eq!(last.code, 425, "{last:?}");
        assert!(last.text.contains("TLS session reuse required"), "{last:?}");
        (first, last, ())
    }

    /// Runs an upload command over a passive TLS data connection, ending it with close_notify.
    pub async fn upload(&mut self, command: &str, content: &[u8]) -> (Resp, Resp) {
        let port = self.epsv().await;
        let tcp = TcpStream::connect((self.addr.ip(), port)).await.expect("data connect");
        self.send_raw(format!("{command}\r\n").as_bytes()).await;
        let first = self.read_reply().await;
        if first.code >= 200 {
            return (first, Resp { code: 0, text: String::new() });
        }
        let mut data = TlsConnector::from(self.tls.clone())
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("data handshake");
        data.write_all(content).await.expect("write data");
        data.shutdown().await.expect("close_notify");
        let last = self.read_reply().await;
        (first, last)
    }
}

impl Client {
    /// Like [`Client::upload`], but ends the data connection with a bare TCP close, no TLS close_notify
    /// (a client killed mid-upload, or a cut connection): returns the 150 and the reply after it.
    pub async fn upload_without_close_notify(&mut self, command: &str, content: &[u8]) -> (Resp, Resp) {
        let port = self.epsv().await;
        let tcp = TcpStream::connect((self.addr.ip(), port)).await.expect("data connect");
        self.send_raw(format!("{command}\r\n").as_bytes()).await;
        let first = self.read_reply().await;
        let mut data = TlsConnector::from(self.tls.clone())
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("data handshake");
        data.write_all(content).await.expect("write data");
        data.flush().await.expect("flush");
        data.get_mut().0.shutdown().await.expect("TCP close");
        let last = self.read_reply().await;
        (first, last)
    }
}

pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}
