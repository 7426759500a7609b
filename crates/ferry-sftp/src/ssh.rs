//! The SSH side: russh's server handler, which authenticates against the [`UserStore`] and hands the
//! `sftp` subsystem's bytes to [`crate::session::serve`]. Everything else SSH can do (shells, exec,
//! forwarding) is refused with a message that says why.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_auth::Admission;
use ferry_core::{Client, Core, LoginError};
use russh::keys::{Algorithm, PrivateKey};
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelWriteHalf, Disconnect, MethodKind, MethodSet, SshId};
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
    /// Key exchanges, host key algorithms, ciphers and MACs offered (`[sftp]` in the config).
    pub algorithms: crate::algorithms::Algorithms,
}

/// Shared by every SSH connection of the server.
pub struct SshService {
    config: Arc<russh::server::Config>,
    max_auth_attempts: usize,
    failed_login_delay: Duration,
    /// Each channel's receive window: the most SFTP input a session holds unconsumed.
    window: u32,
    core: Arc<Core>,
    activity: Arc<Activity>,
}

impl SshService {
    pub fn new(keys: Vec<PrivateKey>, core: Arc<Core>, activity: Arc<Activity>, s: &SshSettings) -> Self {
        let config = russh::server::Config {
            server_id: SshId::Standard(Cow::Borrowed(concat!("SSH-2.0-Ferry_", env!("CARGO_PKG_VERSION")))),
            methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
            // Failed passwords are delayed by the handler itself (see `auth_password`): a refused key is
            // answered at once, as OpenSSH does, so a client trying its keys one by one is not slowed.
            auth_rejection_time: Duration::ZERO,
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys,
            window_size: s.window_size,
            maximum_packet_size: s.max_packet_size,
            // Channel messages are drained as they arrive (see `data`), so this buffer stays empty.
            channel_buffer_size: 16,
            event_buffer_size: 64,
            preferred: s.algorithms.preferred(),
            // Failed attempts over every method, as OpenSSH's MaxAuthTries; the next attempt after the
            // last is answered with a disconnect.
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
            max_auth_attempts: s.max_auth_attempts.max(1),
            failed_login_delay: s.failed_login_delay,
            window: s.window_size,
            core,
            activity,
        }
    }

    /// Serves one connection until it ends. The stream may replay bytes a listener already read to
    /// recognise the protocol. `admission` carries the login deadline, counted from accept: the SSH
    /// identification line, the key exchange and authentication all happen before it.
    pub async fn serve_connection<S>(self: Arc<Self>, stream: S, peer: SocketAddr, admission: Admission)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let logged_in = Arc::new(AtomicBool::new(false));
        let deadline = admission.deadline();
        let grace = admission.grace();
        let handler = SshConn {
            svc: self.clone(),
            peer,
            logged_in: logged_in.clone(),
            admission,
            session: None,
            refused: None,
            failures: 0,
            pending: HashMap::new(),
            sftp: HashMap::new(),
        };
        let too_late = || tracing::info!(client = %peer, "closing connection: no login within {}s", grace.as_secs());
        let started =
            match tokio::time::timeout_at(deadline, russh::server::run_stream(self.config.clone(), stream, handler))
                .await
            {
                Ok(Ok(session)) => session,
                Ok(Err(e)) => return tracing::debug!(client = %peer, "SSH handshake failed: {e}"),
                // A client that never sends its identification line.
                Err(_) => return too_late(),
            };
        let mut session = started;
        let handle = session.handle();
        let ended = tokio::select! {
            r = &mut session => Some(r),
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let result = match ended {
            Some(r) => r,
            None if logged_in.load(Ordering::Acquire) => session.await,
            None => {
                too_late();
                let _ = handle.disconnect(Disconnect::ByApplication, "login timed out".into(), "en".into()).await;
                // A client stuck in the key exchange may never read the disconnect: do not wait for it.
                match tokio::time::timeout(Duration::from_secs(5), session).await {
                    Ok(r) => r,
                    Err(_) => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(client = %peer, "SSH session ended: {e}");
        }
    }
}

struct SshConn {
    svc: Arc<SshService>,
    peer: SocketAddr,
    logged_in: Arc<AtomicBool>,
    /// The login deadline and this connection's place among unauthenticated ones (released at login).
    admission: Admission,
    /// The logged-in session (from the core); every SFTP channel of the connection shares it.
    session: Option<Arc<ferry_core::Session>>,
    /// A login the credentials allowed but a limit refused: the client is let in and disconnected at
    /// once with this text, which OpenSSH shows ("Received disconnect ...: Too many sessions ..."), instead
    /// of a "Permission denied" that would send its user hunting for a wrong password.
    refused: Option<String>,
    /// Failed authentication attempts on this connection, over every method (OpenSSH's MaxAuthTries).
    failures: usize,
    /// Session channels opened but not yet turned into SFTP.
    pending: HashMap<ChannelId, ChannelWriteHalf<Msg>>,
    /// Input of running SFTP sessions, by channel.
    sftp: HashMap<ChannelId, UnboundedSender<Bytes>>,
}

/// A refusal that keeps every method open, so the client may try its next key or retype its password
/// (russh would otherwise drop the method that just failed). The list is the same for every user, as
/// OpenSSH's is, so it tells nothing about an account.
fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..])),
        partial_success: false,
    }
}

/// RSA signatures with SHA-1 (`ssh-rsa`) are refused, as OpenSSH does since 8.8.
fn weak_algorithm(a: &Algorithm) -> bool {
    matches!(a, Algorithm::Rsa { hash: None })
}

impl SshConn {
    fn client(&self) -> Client {
        Client { addr: self.peer.to_string(), ip: self.peer.ip(), protocol: "sftp" }
    }

    fn accept(&mut self, session: ferry_core::Session) -> Auth {
        self.session = Some(Arc::new(session));
        self.logged_in.store(true, Ordering::Release);
        self.admission.logged_in();
        Auth::Accept
    }

    /// Credentials right, session refused by a limit: see [`SshConn::refused`].
    fn refuse_after_auth(&mut self, text: String) -> Auth {
        self.refused = Some(text);
        self.admission.logged_in();
        Auth::Accept
    }

    /// A failure decided here (the core has not seen it): recorded, then counted.
    fn failed(&mut self, user: &str, method: &'static str, why: &str) -> Auth {
        self.svc.core.login_failed(user, &self.client(), Some(method), why);
        self.count_failure(user)
    }

    /// The limit was reached: every further attempt is refused unchecked (a client may have pipelined
    /// more before the disconnect reaches it).
    fn out_of_attempts(&self) -> bool {
        self.failures >= self.svc.max_auth_attempts
    }

    /// Counts a failed attempt. At the limit the admin gets one log line, and russh answers the client's
    /// next attempt with a disconnect, "Too many authentication failures" (its own count, which the
    /// vendored patch keeps in step with this one: the `none` probe does not count).
    fn count_failure(&mut self, user: &str) -> Auth {
        self.failures += 1;
        if self.failures == self.svc.max_auth_attempts {
            tracing::warn!(user = %user, client = %self.peer, protocol = "sftp", attempts = self.failures,
                "closing connection: too many authentication failures");
        }
        reject()
    }

    /// Refuses a shell, exec or similar request on a session channel, telling the person at the other
    /// end what this server is for.
    fn refuse(&mut self, channel: ChannelId, what: &str, session: &mut Session) -> Result<(), russh::Error> {
        tracing::info!(
            user = self.session.as_ref().map(|s| s.user()).unwrap_or("-"),
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

impl russh::server::Handler for SshConn {
    type Error = russh::Error;

    /// From now on the server may end the session (the account was removed, disabled or changed): the
    /// client is then disconnected with the reason.
    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(text) = self.refused.take() {
            // Queued now, right behind USERAUTH_SUCCESS, so it goes out before anything else: a disconnect
            // sent from a task raced the client's pipelined channel open and subsystem request, which were
            // then refused first, and OpenSSH printed "subsystem request failed" instead of this text.
            return session.disconnect(Disconnect::TooManyConnections, &text, "en");
        }
        if let Some(login) = &self.session {
            let ended = login.ended();
            let handle = session.handle();
            tokio::spawn(async move {
                if let Some(reason) = ended.await {
                    let text = format!("Session ended by the server: {reason}");
                    let _ = handle.disconnect(Disconnect::ByApplication, text, "en".into()).await;
                }
            });
        }
        Ok(())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.out_of_attempts() {
            return Ok(reject());
        }
        let login = self.svc.core.password_login(user, password, &self.client()).await;
        match login {
            Ok(session) => Ok(self.accept(session)),
            Err(LoginError::Limit(text)) => Ok(self.refuse_after_auth(text)),
            Err(_) => {
                // Slows password guessing down. Only this connection waits: its own task runs this handler.
                tokio::time::sleep(self.svc.failed_login_delay).await;
                Ok(self.count_failure(user))
            }
        }
    }

    /// Refused, with the methods that work: PuTTY-based clients (FileZilla, WinSCP) try it first and then
    /// go on with their password. Counted, as russh counts it.
    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.count_failure(user))
    }

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        if self.out_of_attempts() {
            return Ok(reject());
        }
        if weak_algorithm(offer.algorithm) {
            // Rare enough to tell the admin: a client that still signs with SHA-1.
            return Ok(self.failed(user, "publickey", "ssh-rsa (SHA-1) signatures are not accepted"));
        }
        // Only a probe: unknown keys are normal (clients try each key they have) and are not logged one
        // by one, but they count towards the limit as in OpenSSH.
        if self.svc.core.key_known(user, offer.public_key).await {
            Ok(Auth::Accept)
        } else {
            Ok(self.count_failure(user))
        }
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        if self.out_of_attempts() {
            return Ok(reject());
        }
        if weak_algorithm(key.algorithm) {
            return Ok(self.failed(user, "publickey", "ssh-rsa (SHA-1) signatures are not accepted"));
        }
        match self.svc.core.key_login(user, key.public_key, &self.client()).await {
            Ok(session) => Ok(self.accept(session)),
            Err(LoginError::Limit(text)) => Ok(self.refuse_after_auth(text)),
            Err(_) => Ok(self.count_failure(user)),
        }
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
        let (Some(login), Some(write)) = (self.session.clone(), self.pending.remove(&channel)) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let (tx, rx) = unbounded_channel();
        self.sftp.insert(channel, tx);
        let ctx = Arc::new(SessionCtx { session: login });
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
