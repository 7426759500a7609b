//! One control connection: read a line, parse it, let the login phase decide whether it may run, run it,
//! reply. Filesystem commands are in [`crate::fs_cmds`], data transfers in [`crate::transfer`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ferry_auth::Admission;
use ferry_vfs::{FsError, VPath, Vfs};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::data::{self, DataSetup, PassiveWait};
use crate::limits::{CONTROL_READ, REPLY_WRITE_TIMEOUT};
use crate::ports::PassiveListener;
use crate::proto::addr::{canonical, format_epsv, format_pasv, EpsvArg};
use crate::proto::command::HELP_VERBS;
use crate::proto::listing::Facts;
use crate::proto::{
    fs_error_reply, quote_path, Command, FtpMode, Gate, Line, LineBuffer, LoginState, OptsArg, ProtLevel, Reply,
    SiteCmd, TransferType,
};
use crate::reuse::Registered;
use crate::stream::Control;
use crate::tls::{accept_control, new_resumption_id, DataTls};
use crate::FtpService;

/// Whether the session goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
}

impl From<io::Result<()>> for Flow {
    fn from(r: io::Result<()>) -> Flow {
        if r.is_ok() {
            Flow::Continue
        } else {
            Flow::Close
        }
    }
}

pub(crate) struct Session<S> {
    pub(crate) svc: Arc<FtpService>,
    pub(crate) ctl: Option<Control<S>>,
    pub(crate) lines: LineBuffer,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    /// The peer address as text, for log lines.
    pub(crate) client: String,
    pub(crate) login: LoginState,
    /// Resumption data of the control connection's TLS session; data connections must present it.
    pub(crate) tls_id: Vec<u8>,
    /// The logged-in session (from the core). Dropping it ends the session, however that happens.
    pub(crate) user: Option<ferry_core::Session>,
    pub(crate) cwd: VPath,
    /// REST offset for the next RETR/STOR.
    pub(crate) rest: u64,
    rename_from: Option<VPath>,
    pub(crate) data: Option<DataSetup>,
    epsv_all: bool,
    pub(crate) prot: ProtLevel,
    pub(crate) facts: Facts,
    pub(crate) ttype: TransferType,
    /// A command that arrived during a transfer, to run when it is over.
    pub(crate) pending: Option<Vec<u8>>,
    /// The login deadline (from accept), and this connection's place among unauthenticated ones.
    pub(crate) admission: Admission,
    /// This connection in the registry that the session-reuse check consults; unregistered on drop.
    _registered: Registered,
}

/// Serves one control connection. `greeted`: the caller has already sent the greeting.
pub(crate) async fn run<S>(
    svc: Arc<FtpService>,
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    mode: FtpMode,
    greeted: bool,
    admission: Admission,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = peer.to_string();
    let tls_id = new_resumption_id();
    let registered = svc.sessions.register(&tls_id, peer.ip());
    let ctl = match mode {
        FtpMode::Implicit => {
            let handshake = accept_control(svc.tls.config(), stream, &tls_id);
            match tokio::time::timeout_at(admission.deadline(), handshake).await {
                Ok(Ok(tls)) => Control::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    tracing::debug!(client, "implicit FTPS: TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::info!(
                        client,
                        "closing connection: no login within {}s (TLS handshake unfinished)",
                        admission.grace().as_secs()
                    );
                    return;
                }
            }
        }
        FtpMode::Explicit | FtpMode::Plain => Control::Plain(stream),
    };
    let max_attempts = svc.settings.max_login_attempts;
    let mut s = Session {
        svc,
        ctl: Some(ctl),
        lines: LineBuffer::new(),
        peer,
        local,
        client,
        login: LoginState::new(mode, max_attempts),
        tls_id,
        user: None,
        cwd: VPath::root(),
        rest: 0,
        rename_from: None,
        data: None,
        epsv_all: false,
        // Implicit FTPS clients expect private data connections without asking (PROT P is the custom there).
        prot: if mode == FtpMode::Implicit { ProtLevel::Private } else { ProtLevel::Clear },
        facts: Facts::default(),
        ttype: TransferType::Image,
        pending: None,
        admission,
        _registered: registered,
    };
    // A multi-protocol listener may have sent the greeting already, while it waited to see who the client is.
    if greeted || s.reply(Reply::new(220, crate::GREETING_TEXT)).await.is_ok() {
        s.serve().await;
    }
    s.close_control().await;
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn serve(&mut self) {
        loop {
            let line = match self.pending.take() {
                Some(p) => Line::Command(p),
                None => match self.wait_command().await {
                    Some(l) => l,
                    None => return,
                },
            };
            let flow = match line {
                Line::TooLong => self.send(too_long()).await,
                Line::Command(bytes) => self.handle(&bytes).await,
            };
            if flow == Flow::Close {
                return;
            }
            self.lines.shrink();
        }
    }

    /// The protocol name in log lines.
    pub(crate) fn protocol(&self) -> &'static str {
        if self.login.tls() {
            "ftps"
        } else {
            "ftp"
        }
    }

    pub(crate) fn user_name(&self) -> &str {
        self.user.as_ref().map(|u| u.user()).unwrap_or("-")
    }

    fn control(&mut self) -> io::Result<&mut Control<S>> {
        self.ctl.as_mut().ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Writes one reply and flushes it (TLS holds data back until flushed).
    pub(crate) async fn reply(&mut self, r: Reply) -> io::Result<()> {
        self.write_raw(&r.to_bytes()).await
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let ctl = self.control()?;
        let write = async {
            ctl.write_all(bytes).await?;
            ctl.flush().await
        };
        tokio::time::timeout(REPLY_WRITE_TIMEOUT, write).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }

    pub(crate) async fn send(&mut self, r: Reply) -> Flow {
        self.reply(r).await.into()
    }

    /// The next line, reading as needed. Cancel-safe: bytes are only taken from the stream into the
    /// line buffer, so dropping this future loses nothing.
    pub(crate) async fn read_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if let Some(l) = self.lines.next_line() {
                return Ok(Some(l));
            }
            let mut buf = [0u8; CONTROL_READ];
            let n = self.control()?.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.lines.feed(&buf[..n]);
        }
    }

    /// The next command line, or `None` when the session is over (client gone, or a timeout, answered 421).
    async fn wait_command(&mut self) -> Option<Line> {
        let settings = self.svc.clone();
        let settings = &settings.settings;
        let idle = settings.idle_timeout;
        let (limit, for_login) = if self.login.logged_in() {
            (idle, false)
        } else {
            let left = self.admission.deadline().saturating_duration_since(tokio::time::Instant::now());
            if left <= idle {
                (left, true)
            } else {
                (idle, false)
            }
        };
        // The server may end a logged-in session (the account was removed, disabled or changed).
        let ended = self.user.as_ref().map(|u| u.ended());
        let got = match ended {
            Some(ended) => {
                let read = tokio::time::timeout(limit, self.read_line());
                tokio::select! {
                    r = read => Ok(r),
                    Some(reason) = ended => Err(reason),
                }
            }
            None => Ok(tokio::time::timeout(limit, self.read_line()).await),
        };
        let got = match got {
            Ok(got) => got,
            Err(reason) => {
                let _ = self.reply(Reply::new(421, format!("Session ended by the server: {reason}"))).await;
                return None;
            }
        };
        match got {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                tracing::debug!(client = %self.client, "control connection: {e}");
                None
            }
            Err(_) if for_login => {
                let secs = self.admission.grace().as_secs();
                tracing::info!(client = %self.client, "closing connection: no login within {secs}s");
                let _ = self.reply(Reply::new(421, format!("No login within {secs}s; closing the connection"))).await;
                None
            }
            Err(_) => {
                let secs = idle.as_secs();
                tracing::info!(user = self.user_name(), client = %self.client, "closing connection: idle for {secs}s");
                let _ = self
                    .reply(Reply::new(421, format!("Timeout: no command for {secs}s; closing the connection")))
                    .await;
                None
            }
        }
    }

    /// Sends close_notify on a TLS control connection (politely, briefly) before it is dropped.
    async fn close_control(&mut self) {
        if let Some(ctl) = self.ctl.as_mut() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), ctl.shutdown()).await;
        }
    }

    pub(crate) async fn handle(&mut self, line: &[u8]) -> Flow {
        let cmd = match Command::parse(line) {
            Ok(c) => c,
            Err(e) => return self.send(e.reply()).await,
        };
        tracing::debug!(client = %self.client, verb = cmd.verb(), "command");
        if let Gate::Refuse(r) = self.login.gate(&cmd) {
            return self.send(r).await;
        }
        // RNTO must follow RNFR directly.
        let rename_from = self.rename_from.take();
        self.dispatch(cmd, rename_from).await
    }

    async fn dispatch(&mut self, cmd: Command, rename_from: Option<VPath>) -> Flow {
        use Command as C;
        let r = match cmd {
            C::User(name) => self.login.user(name),
            C::Pass(password) => return self.pass(password).await,
            C::Acct => Reply::new(202, "ACCT not needed"),
            C::Quit => {
                let _ = self.reply(Reply::new(221, "Goodbye")).await;
                return Flow::Close;
            }
            C::Syst => Reply::new(215, "UNIX Type: L8"),
            C::Feat => self.feat(),
            C::Opts(OptsArg::Utf8) => Reply::new(200, "Always in UTF8 mode"),
            C::Opts(OptsArg::Mlst(f)) => {
                self.facts = f;
                Reply::new(200, format!("MLST OPTS {}", f.names()))
            }
            C::Help => help(),
            C::Noop => Reply::new(200, "NOOP ok"),
            C::Stat(None) => self.status(),
            C::Stat(Some(p)) => self.stat_path(&p).await,
            C::Site(SiteCmd::Help) => Reply::new(214, "SITE commands: CHMOD <mode> <path>, HELP"),
            C::Site(SiteCmd::Chmod { mode, path }) => self.chmod(mode, &path).await,
            C::Pwd => {
                let mut text = quote_path(self.cwd.as_bytes());
                text.extend_from_slice(b" is the current directory");
                Reply::new(257, text)
            }
            C::Cwd(p) => self.cwd(&p).await,
            C::Cdup => self.cwd(b"..").await,
            C::Type(t) => {
                self.ttype = t;
                Reply::new(
                    200,
                    match t {
                        TransferType::Ascii => "Switching to ASCII mode",
                        TransferType::Image => "Switching to Binary mode",
                    },
                )
            }
            C::Mode => Reply::new(200, "Mode set to S"),
            C::Stru => Reply::new(200, "Structure set to F"),
            C::Allo => Reply::new(202, "ALLO not needed"),
            C::Pasv => self.pasv().await,
            C::Epsv(arg) => self.epsv(arg).await,
            C::Port(addr) | C::Eprt(addr) => self.port(addr).await,
            C::List(p) => return self.list(crate::fs_cmds::ListKind::List, p).await,
            C::Nlst(p) => return self.list(crate::fs_cmds::ListKind::Nlst, p).await,
            C::Mlsd(p) => return self.list(crate::fs_cmds::ListKind::Mlsd, p).await,
            C::Mlst(p) => self.mlst(p.as_deref()).await,
            C::Retr(p) => return self.retr(&p).await,
            C::Stor(p) => return self.store(crate::transfer::StoreKind::Stor, Some(&p)).await,
            C::Appe(p) => return self.store(crate::transfer::StoreKind::Appe, Some(&p)).await,
            C::Stou(p) => return self.store(crate::transfer::StoreKind::Stou, p.as_deref()).await,
            C::Rest(n) => {
                self.rest = n;
                Reply::new(350, format!("Restarting at {n}; send STOR or RETR to start the transfer"))
            }
            C::Size(p) => self.size(&p).await,
            C::Mdtm(p) => self.mdtm(&p).await,
            C::Mfmt { mtime, path } => self.mfmt(mtime, &path).await,
            C::Dele(p) => self.dele(&p).await,
            C::Rnfr(p) => self.rnfr(&p).await,
            C::Rnto(p) => self.rnto(rename_from, &p).await,
            C::Mkd(p) => self.mkd(&p).await,
            C::Rmd(p) => self.rmd(&p).await,
            C::Abor => match self.data.is_some() {
                true => {
                    self.drop_data().await;
                    Reply::new(225, "No transfer to abort; data connection closed")
                }
                false => Reply::new(225, "No transfer to abort"),
            },
            C::Auth(mech) => return self.auth(mech).await,
            C::Pbsz => Reply::new(200, "PBSZ=0"),
            C::Prot(ProtLevel::Private) => {
                self.prot = ProtLevel::Private;
                Reply::new(200, "PROT now Private")
            }
            C::Prot(ProtLevel::Clear) if self.login.mode() == FtpMode::Plain => {
                self.prot = ProtLevel::Clear;
                Reply::new(200, "PROT now Clear")
            }
            C::Prot(ProtLevel::Clear) => Reply::new(534, "PROT P required: this server sends data only encrypted"),
            C::Ccc => Reply::new(534, "CCC is refused: the control channel stays encrypted"),
            C::Unknown(verb) => Reply::new(502, format!("Command not implemented: {verb}")),
        };
        self.send(r).await
    }

    fn feat(&self) -> Reply {
        let mut body: Vec<Vec<u8>> = Vec::new();
        if self.login.mode() != FtpMode::Implicit {
            body.push(b" AUTH TLS".to_vec());
        }
        for f in ["PBSZ", "PROT", "UTF8", "EPRT", "EPSV", "MDTM", "MFMT"] {
            body.push(format!(" {f}").into_bytes());
        }
        body.push(format!(" {}", self.facts.feat_line()).into_bytes());
        for f in ["MLSD", "REST STREAM", "SIZE", "TVFS"] {
            body.push(format!(" {f}").into_bytes());
        }
        Reply::multi(211, "Features:", body, "End")
    }

    fn status(&self) -> Reply {
        let s = &self.svc.settings;
        let mut body = vec![format!(" Connected to {}", self.client)];
        body.push(match &self.user {
            Some(u) => format!(" Logged in as {}", u.user()),
            None => " Not logged in".to_string(),
        });
        body.push(format!(
            " TYPE: {}, MODE: Stream, STRU: File",
            if self.ttype == TransferType::Ascii { "ASCII" } else { "BINARY" }
        ));
        body.push(format!(
            " Control connection: {}; data connections: {}",
            if self.login.tls() { "TLS" } else { "plain" },
            if self.prot == ProtLevel::Private { "private (TLS)" } else { "clear" }
        ));
        body.push(format!(" Session timeout in seconds is {}", s.idle_timeout.as_secs()));
        Reply::multi(211, "FTP server status:", body.into_iter().map(String::into_bytes).collect(), "End of status")
    }

    /// Forgets the data setup; a passive listener is closed before this returns.
    pub(crate) async fn drop_data(&mut self) {
        if let Some(DataSetup::Passive(wait)) = self.data.take() {
            wait.close().await;
        }
    }

    async fn pasv(&mut self) -> Reply {
        if self.epsv_all {
            return Reply::new(501, "PASV refused after EPSV ALL; use EPSV");
        }
        let announce = canonical(self.svc.settings.passive_address.unwrap_or(self.local.ip()));
        let IpAddr::V4(v4) = announce else {
            return Reply::new(425, "PASV needs an IPv4 address; use EPSV on this connection");
        };
        self.drop_data().await;
        match data::listen(&self.svc.ports, self.local.ip()) {
            Ok(l) => Reply::new(227, format_pasv(v4, self.wait_passive(l))),
            Err(r) => r,
        }
    }

    async fn epsv(&mut self, arg: EpsvArg) -> Reply {
        let ours = if canonical(self.local.ip()).is_ipv4() { 1 } else { 2 };
        match arg {
            EpsvArg::All => {
                self.epsv_all = true;
                return Reply::new(200, "EPSV ALL ok");
            }
            EpsvArg::Proto(p) if p != ours => {
                return Reply::new(522, format!("Network protocol not supported, use ({ours})"));
            }
            EpsvArg::Proto(_) | EpsvArg::Any => {}
        }
        self.drop_data().await;
        match data::listen(&self.svc.ports, self.local.ip()) {
            Ok(l) => Reply::new(229, format_epsv(self.wait_passive(l))),
            Err(r) => r,
        }
    }

    /// Starts waiting for the client's connection on a new passive listener; returns its port.
    fn wait_passive(&mut self, l: PassiveListener) -> u16 {
        let port = l.port;
        let proxies = self.svc.settings.trusted_proxies.clone();
        let wait = PassiveWait::start(l, self.peer, self.client.clone(), self.data_tls(), proxies);
        self.data = Some(DataSetup::Passive(wait));
        port
    }

    /// TLS parameters for private data connections, or `None` while data connections are clear.
    pub(crate) fn data_tls(&self) -> Option<DataTls> {
        (self.prot == ProtLevel::Private).then(|| DataTls {
            config: self.svc.tls.config(),
            id: self.tls_id.clone(),
            require_reuse: self.svc.settings.require_session_reuse.then(|| self.svc.sessions.clone()),
        })
    }

    async fn port(&mut self, target: SocketAddr) -> Reply {
        if self.epsv_all {
            return Reply::new(501, "PORT and EPRT refused after EPSV ALL; use EPSV");
        }
        if let Err(r) = data::check_active(target, self.peer) {
            tracing::warn!(user = self.user_name(), client = %self.client, target = %target, "refused an active data connection: {}", r.text());
            return r;
        }
        self.drop_data().await;
        self.data = Some(DataSetup::Active(target));
        Reply::new(200, "PORT command successful; consider using PASV")
    }

    /// `arg` resolved against the working directory; a NUL byte is refused.
    pub(crate) fn resolve(&self, arg: &[u8]) -> Result<VPath, Reply> {
        VPath::checked(&self.cwd, arg).ok_or_else(|| fs_error_reply(&FsError::InvalidPath))
    }

    /// The user's filesystem. Only called for commands the login gate lets through after login.
    pub(crate) fn vfs(&self) -> Result<Arc<dyn Vfs>, Reply> {
        self.user
            .as_ref()
            .map(|u| u.vfs().clone())
            .ok_or_else(|| Reply::new(530, "Please log in with USER and PASS first"))
    }
}

impl<S> Session<S> {
    pub(crate) fn set_rename_from(&mut self, path: VPath) {
        self.rename_from = Some(path);
    }
}

pub(crate) fn too_long() -> Reply {
    Reply::new(500, format!("Command line too long (the limit is {} bytes)", crate::limits::MAX_LINE))
}

fn help() -> Reply {
    let body = HELP_VERBS.chunks(8).map(|row| format!(" {}", row.join(" ")).into_bytes()).collect();
    Reply::multi(214, "The following commands are recognized:", body, "Help OK")
}
