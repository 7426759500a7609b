//! The SSH side: russh's server handler, which authenticates against the [`UserStore`] and hands the
//! `sftp` subsystem's bytes to [`crate::session::serve`]. Everything else SSH can do (shells, exec,
//! forwarding) is refused with a message that says why.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_auth::{User, UserStore};
use ferry_vfs::Storage;
use russh::keys::{Algorithm, PrivateKey, PublicKey};
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelWriteHalf, Disconnect, MethodKind, MethodSet, Preferred, SshId};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::dispatch::SessionCtx;
use crate::proto::MAX_PACKET_LEN;
use crate::session::{serve, InputCredit, Limits, ReplyWriter};
use ferry_vfs::activity::Activity;

/// Tuning and limits of the SSH layer.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub window_size: u32,
    pub max_packet_size: u32,
    pub idle_timeout: Duration,
    pub max_auth_attempts: usize,
    pub failed_login_delay: Duration,
    /// A connection that has not logged in after this long is closed.
    pub login_timeout: Duration,
}

/// Shared by every SSH connection of the server.
pub struct SshService {
    config: Arc<russh::server::Config>,
    login_timeout: Duration,
    /// Each channel's receive window: the most SFTP input a session holds unconsumed.
    window: u32,
    store: Arc<UserStore>,
    activity: Arc<Activity>,
    storage: Arc<dyn Storage>,
}

/// Only modern algorithms: AEAD ciphers first; CTR with SHA-2 HMACs after them because libssh2 (curl,
/// many embedded clients) has nothing else. No CBC, no 3DES, no SHA-1, no DH groups below 2048 bits.
fn preferred() -> Preferred {
    use russh::{cipher, kex, mac};
    Preferred {
        kex: Cow::Borrowed(&[
            kex::MLKEM768X25519_SHA256,
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            kex::ECDH_SHA2_NISTP256,
            kex::DH_G16_SHA512,
            kex::DH_G14_SHA256,
            kex::EXTENSION_SUPPORT_AS_SERVER,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ]),
        key: Cow::Borrowed(&[
            Algorithm::Ed25519,
            Algorithm::Ecdsa { curve: russh::keys::EcdsaCurve::NistP256 },
            Algorithm::Rsa { hash: Some(russh::keys::HashAlg::Sha512) },
            Algorithm::Rsa { hash: Some(russh::keys::HashAlg::Sha256) },
        ]),
        cipher: Cow::Borrowed(&[
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
            cipher::AES_128_CTR,
            cipher::AES_192_CTR,
            cipher::AES_256_CTR,
        ]),
        mac: Cow::Borrowed(&[mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM, mac::HMAC_SHA256, mac::HMAC_SHA512]),
        ..Preferred::default()
    }
}

impl SshService {
    pub fn new(
        keys: Vec<PrivateKey>,
        store: Arc<UserStore>,
        activity: Arc<Activity>,
        storage: Arc<dyn Storage>,
        s: &SshSettings,
    ) -> Self {
        let config = russh::server::Config {
            server_id: SshId::Standard(Cow::Borrowed(concat!("SSH-2.0-Ferry_", env!("CARGO_PKG_VERSION")))),
            methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
            auth_rejection_time: s.failed_login_delay,
            // OpenSSH clients first try "none" to learn the methods: answer that at once.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys,
            window_size: s.window_size,
            maximum_packet_size: s.max_packet_size,
            // Channel messages are drained as they arrive (see `data`), so this buffer stays empty.
            channel_buffer_size: 16,
            event_buffer_size: 64,
            preferred: preferred(),
            max_auth_attempts: s.max_auth_attempts,
            inactivity_timeout: Some(s.idle_timeout),
            keepalive_interval: Some(Duration::from_secs(60)),
            keepalive_max: 3,
            nodelay: true,
            // The window is handed back as the SFTP session consumes its input (see `WindowCredit`),
            // not as data arrives: a client that outruns the storage must wait, not fill our memory.
            manual_window_adjust: true,
            ..Default::default()
        };
        SshService {
            config: Arc::new(config),
            login_timeout: s.login_timeout,
            window: s.window_size,
            store,
            activity,
            storage,
        }
    }

    /// Serves one connection until it ends. The stream may replay bytes a listener already read to
    /// recognise the protocol.
    pub async fn serve_connection<S>(self: Arc<Self>, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let logged_in = Arc::new(AtomicBool::new(false));
        let handler = SshConn {
            svc: self.clone(),
            peer,
            logged_in: logged_in.clone(),
            user: None,
            login_at: None,
            pending: HashMap::new(),
            sftp: HashMap::new(),
        };
        match russh::server::run_stream(self.config.clone(), stream, handler).await {
            Ok(mut session) => {
                let handle = session.handle();
                let deadline = tokio::time::sleep(self.login_timeout);
                tokio::pin!(deadline);
                let ended = tokio::select! {
                    r = &mut session => Some(r),
                    _ = &mut deadline => None,
                };
                let result = match ended {
                    Some(r) => r,
                    None if logged_in.load(Ordering::Acquire) => session.await,
                    None => {
                        tracing::info!(client = %peer, "closing connection: no login within {}s", self.login_timeout.as_secs());
                        let _ =
                            handle.disconnect(Disconnect::ByApplication, "login timed out".into(), "en".into()).await;
                        session.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(client = %peer, "SSH session ended: {e}");
                }
            }
            Err(e) => tracing::debug!(client = %peer, "SSH handshake failed: {e}"),
        }
    }
}

struct SshConn {
    svc: Arc<SshService>,
    peer: SocketAddr,
    logged_in: Arc<AtomicBool>,
    user: Option<User>,
    login_at: Option<Instant>,
    /// Session channels opened but not yet turned into SFTP.
    pending: HashMap<ChannelId, ChannelWriteHalf<Msg>>,
    /// Input of running SFTP sessions, by channel.
    sftp: HashMap<ChannelId, UnboundedSender<Bytes>>,
}

fn reject() -> Auth {
    Auth::Reject { proceed_with_methods: None, partial_success: false }
}

/// RSA signatures with SHA-1 (`ssh-rsa`) are refused, as OpenSSH does since 8.8.
fn weak_algorithm(a: &Algorithm) -> bool {
    matches!(a, Algorithm::Rsa { hash: None })
}

impl SshConn {
    fn accept(&mut self, user: User, method: &str) -> Auth {
        tracing::info!(user = %user.name, client = %self.peer, protocol = "sftp", method, "login");
        self.user = Some(user);
        self.login_at = Some(Instant::now());
        self.logged_in.store(true, Ordering::Release);
        Auth::Accept
    }

    fn failed(&self, user: &str, method: &str, why: &str) -> Auth {
        tracing::warn!(user, client = %self.peer, protocol = "sftp", method, "login failed: {why}");
        reject()
    }

    async fn check_key(&self, user: &str, key: &PublicKey) -> Option<User> {
        let store = self.svc.store.clone();
        let (user, key) = (user.to_string(), key.clone());
        match tokio::task::spawn_blocking(move || store.check_key(&user, &key)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::error!("user store: {e}");
                None
            }
            Err(e) => {
                tracing::error!("key check task failed: {e}");
                None
            }
        }
    }

    /// Refuses a shell, exec or similar request on a session channel, telling the person at the other
    /// end what this server is for.
    fn refuse(&mut self, channel: ChannelId, what: &str, session: &mut Session) -> Result<(), russh::Error> {
        tracing::info!(
            user = self.user.as_ref().map(|u| u.name.as_str()).unwrap_or("-"),
            client = %self.peer,
            "hint: client asked for {what}; this server provides SFTP only (use sftp, scp, or an SFTP client)"
        );
        let msg = format!("This server provides SFTP only: {what} is not available. Use sftp or scp.\r\n");
        session.extended_data(channel, 1, msg.into_bytes())?;
        session.channel_failure(channel)?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)?;
        self.pending.remove(&channel);
        Ok(())
    }
}

impl Drop for SshConn {
    fn drop(&mut self) {
        if let (Some(user), Some(at)) = (&self.user, self.login_at) {
            tracing::info!(
                user = %user.name, client = %self.peer, protocol = "sftp",
                duration_ms = at.elapsed().as_millis() as u64, "logout"
            );
        }
    }
}

impl russh::server::Handler for SshConn {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let store = self.svc.store.clone();
        let (u, p) = (user.to_string(), password.to_string());
        // argon2 takes tens of milliseconds of CPU: never on the async threads.
        match tokio::task::spawn_blocking(move || store.check_password(&u, &p)).await {
            Ok(Ok(Some(found))) => Ok(self.accept(found, "password")),
            Ok(Ok(None)) => Ok(self.failed(user, "password", "wrong user name or password")),
            Ok(Err(e)) => {
                tracing::error!("user store: {e}");
                Ok(self.failed(user, "password", "user store unavailable"))
            }
            Err(e) => {
                tracing::error!("password check task failed: {e}");
                Ok(reject())
            }
        }
    }

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        if weak_algorithm(offer.algorithm) {
            return Ok(reject());
        }
        // Only a probe: unknown keys are normal (clients try each key they have) and are not logged.
        Ok(match self.check_key(user, offer.public_key).await {
            Some(_) => Auth::Accept,
            None => reject(),
        })
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        if weak_algorithm(key.algorithm) {
            return Ok(self.failed(user, "publickey", "ssh-rsa (SHA-1) signatures are not accepted"));
        }
        Ok(match self.check_key(user, key.public_key).await {
            Some(found) => self.accept(found, "publickey"),
            None => self.failed(user, "publickey", "key not authorised for this user"),
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.pending.len() + self.sftp.len() >= 8 {
            tracing::warn!(client = %self.peer, "refusing a 9th session channel on one connection");
            reply.reject(russh::ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        // The read half is dropped: this handler takes the data in `data()` as it arrives, so russh
        // never waits on a full per-channel queue (which would stall the whole connection).
        let (read, write) = channel.split();
        drop(read);
        self.pending.insert(write.id(), write);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            return self.refuse(channel, &format!("the {name:?} subsystem"), session);
        }
        let (Some(user), Some(write)) = (self.user.clone(), self.pending.remove(&channel)) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let home = user.home.clone();
        let storage = self.svc.storage.clone();
        let vfs = match tokio::task::spawn_blocking(move || storage.open_home(&home)).await {
            Ok(Ok(fs)) => fs,
            Ok(Err(e)) => {
                tracing::error!(user = %user.name, home = %user.home.display(), "cannot open the user's home directory: {e}");
                session.extended_data(
                    channel,
                    1,
                    b"Server error: your home directory is not available.\r\n".to_vec(),
                )?;
                session.channel_failure(channel)?;
                session.close(channel)?;
                return Ok(());
            }
            Err(e) => {
                tracing::error!("home open task failed: {e}");
                session.channel_failure(channel)?;
                return Ok(());
            }
        };
        session.channel_success(channel)?;
        let (tx, rx) = unbounded_channel();
        self.sftp.insert(channel, tx);
        let ctx =
            Arc::new(SessionCtx { vfs, user: user.name.clone(), client: self.peer.to_string(), protocol: "sftp" });
        let credit = WindowCredit::start(session.handle(), channel, self.svc.window);
        let limits = Limits { max_buffered_input: 2 * self.svc.window as usize + MAX_PACKET_LEN as usize };
        tokio::spawn(serve(ctx, self.svc.activity.clone(), rx, ChannelWriter(write), credit, limits));
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(tx) = self.sftp.get(&channel) {
            if tx.send(Bytes::copy_from_slice(data)).is_err() {
                // The SFTP session ended (protocol error): stop feeding it.
                self.sftp.remove(&channel);
            }
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.sftp.remove(&channel);
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.sftp.remove(&channel);
        self.pending.remove(&channel);
        Ok(())
    }

    /// A terminal is of no use on an SFTP-only server; answering (rather than ignoring) the request
    /// matters because clients such as paramiko wait for the reply.
    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    /// Environment variables change nothing here; accepting them keeps clients that send LANG quiet.
    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.refuse(channel, "a shell", session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(data);
        let first = cmd.split_whitespace().next().unwrap_or("").to_string();
        self.refuse(channel, &format!("running commands ({first:?})"), session)
    }
}

struct ChannelWriter(ChannelWriteHalf<Msg>);

#[async_trait]
impl ReplyWriter for ChannelWriter {
    async fn write(&mut self, data: Bytes) -> bool {
        self.0.data_bytes(data).await.is_ok()
    }

    async fn finish(&mut self) {
        let _ = self.0.eof().await;
        let _ = self.0.close().await;
    }
}

/// Hands an SFTP channel's window back to the client as the session consumes its input.
///
/// Adjustments are batched (an eighth of the window at a time, as OpenSSH waits for a good share of
/// its window to be used before adjusting), and sent from a small task because `Handle::adjust_window`
/// is async while `consumed` is called from every lane. The task ends with the session.
struct WindowCredit {
    pending: AtomicUsize,
    step: usize,
    tx: UnboundedSender<u32>,
}

impl WindowCredit {
    fn start(handle: russh::server::Handle, channel: ChannelId, window: u32) -> Arc<WindowCredit> {
        let (tx, mut rx) = unbounded_channel::<u32>();
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                if handle.adjust_window(channel, n).await.is_err() {
                    return; // the connection is gone
                }
            }
        });
        Arc::new(WindowCredit { pending: AtomicUsize::new(0), step: (window as usize / 8).max(1), tx })
    }
}

impl InputCredit for WindowCredit {
    fn consumed(&self, bytes: usize) {
        if self.pending.fetch_add(bytes, Ordering::AcqRel) + bytes >= self.step {
            let n = self.pending.swap(0, Ordering::AcqRel);
            if n > 0 {
                let _ = self.tx.send(n.min(u32::MAX as usize) as u32);
            }
        }
    }
}
