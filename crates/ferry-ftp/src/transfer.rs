//! Data transfers (RETR, STOR, APPE, STOU, LIST, NLST, MLSD): prepare the file or listing, open the data
//! connection, answer 150, secure the connection with TLS when PROT P, move the bytes while still reading
//! the control connection (for ABOR and STAT), and answer 226, 426 or the file error.
//!
//! Choices where the RFCs leave room:
//! - ABOR during a transfer stops it at once: 426 for the transfer, then 226 for the ABOR (RFC 959). Other
//!   commands sent during a transfer wait until it is over (QUIT too: the transfer's reply comes first).
//! - An upload whose TLS data connection ends without close_notify is cut off, not complete (vsftpd's
//!   `strict_ssl_read_eof=YES`): without close_notify nothing tells a clean end from a killed client or a
//!   forged TCP FIN, and answering 226 would put a partial file in place of a good one. Every client we
//!   test with (curl, lftp, rclone, Python's ftplib, FileZilla) sends it. Plain FTP, which an admin must
//!   turn on, has no such signal: there the end of the connection is the end of the file. A connection
//!   that breaks (reset, timeout) or an ABOR also undoes the upload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ferry_vfs::activity::FileGuard;
use ferry_vfs::{FileHandle, FileKind, FsError, OpenOptions, VPath};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::data::{self, DataError, DataSetup, Go};
use crate::fs_cmds::{listing, ListKind};
use crate::proto::{fs_error_reply, Command, FtpMode, Line, ProtLevel, Reply, TransferType};
use crate::pump::{finish, receive_file, send_bytes, send_file, PumpError, UploadEnd};
use crate::session::{too_long, Flow, Session};
use crate::stream::DataConn;
use crate::tls::{accept_data, DataTlsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    Stor,
    Appe,
    Stou,
}

/// What goes over the data connection.
enum Job {
    Listing(Vec<u8>),
    Download {
        file: Box<dyn FileHandle>,
        offset: u64,
        path: VPath,
    },
    /// `atomic`: the upload replaces the file only when complete (STOR without REST, STOU).
    Upload {
        file: Box<dyn FileHandle>,
        offset: u64,
        path: VPath,
        atomic: bool,
    },
}

/// How the bytes moved.
enum Moved {
    Sent(u64),
    Received { bytes: u64, end: UploadEnd },
}

/// How the transfer ended while the control connection was watched.
enum Ended {
    Pumped(Result<Moved, (PumpError, u64)>),
    Aborted,
    ControlGone,
    /// The server ended the session (account removed, disabled or changed).
    ByServer(String),
}

fn mode_name(t: TransferType) -> &'static str {
    match t {
        TransferType::Ascii => "ASCII",
        TransferType::Image => "BINARY",
    }
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Whether a transfer command can be served at all; checked before any file is opened.
    fn data_ready(&mut self) -> Result<(), Reply> {
        if self.data.is_none() {
            return Err(Reply::new(425, "Use PASV, EPSV, PORT or EPRT first"));
        }
        if self.prot != ProtLevel::Private && self.login.mode() != FtpMode::Plain {
            return Err(Reply::new(521, "Data connections must be encrypted: send PBSZ 0 and PROT P first"));
        }
        Ok(())
    }

    /// Answers `r` and forgets the data setup (one PASV/PORT serves one transfer command).
    async fn refuse(&mut self, r: Reply) -> Flow {
        self.drop_data().await;
        self.send(r).await
    }

    pub(crate) async fn list(&mut self, kind: ListKind, arg: Option<Vec<u8>>) -> Flow {
        self.rest = 0;
        if let Err(r) = self.data_ready() {
            return self.refuse(r).await;
        }
        let lines = match self.vfs() {
            Ok(vfs) => listing(&*vfs, &self.cwd, arg.as_deref(), kind, self.user_name(), &self.facts).await,
            Err(r) => Err(r),
        };
        let lines = match lines {
            Ok(l) => l,
            Err(r) => return self.refuse(r).await,
        };
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 2).sum());
        for l in lines {
            bytes.extend_from_slice(&l);
            bytes.extend_from_slice(b"\r\n");
        }
        self.transfer(Job::Listing(bytes), Reply::new(150, "Here comes the directory listing")).await
    }

    pub(crate) async fn retr(&mut self, arg: &[u8]) -> Flow {
        let offset = std::mem::take(&mut self.rest);
        if let Err(r) = self.data_ready() {
            return self.refuse(r).await;
        }
        let opened = async {
            let path = self.resolve(arg)?;
            let vfs = self.vfs()?;
            let file = vfs
                .open(&path, OpenOptions { read: true, ..Default::default() })
                .await
                .map_err(|e| fs_error_reply(&e))?;
            let meta = file.metadata().await.map_err(|e| fs_error_reply(&e))?;
            if meta.kind == FileKind::Dir {
                return Err(fs_error_reply(&FsError::IsADirectory));
            }
            Ok((path, file, meta.size))
        }
        .await;
        let (path, file, size) = match opened {
            Ok(o) => o,
            Err(r) => return self.refuse(r).await,
        };
        let mut text = format!("Opening {} mode data connection for ", mode_name(self.ttype)).into_bytes();
        text.extend_from_slice(path.file_name().unwrap_or(b"/"));
        text.extend_from_slice(format!(" ({size} bytes)").as_bytes());
        self.transfer(Job::Download { file, offset, path }, Reply::new(150, text)).await
    }

    pub(crate) async fn store(&mut self, kind: StoreKind, arg: Option<&[u8]>) -> Flow {
        let rest = std::mem::take(&mut self.rest);
        if let Err(r) = self.data_ready() {
            return self.refuse(r).await;
        }
        let opened = match kind {
            StoreKind::Stou => self.open_unique(arg).await,
            StoreKind::Stor | StoreKind::Appe => {
                let opts = match (kind, rest) {
                    (StoreKind::Appe, _) => {
                        OpenOptions { write: true, create: true, append: true, ..Default::default() }
                    }
                    // REST n + STOR: resume in place at n; the file is not truncated.
                    (_, n) if n > 0 => OpenOptions { write: true, create: true, ..Default::default() },
                    // A plain STOR replaces the file atomically when the upload completes.
                    _ => OpenOptions { write: true, create: true, truncate: true, ..Default::default() },
                };
                async {
                    let path = self.resolve(arg.unwrap_or_default())?;
                    let vfs = self.vfs()?;
                    let file = vfs.open(&path, opts).await.map_err(|e| fs_error_reply(&e))?;
                    Ok((path, file))
                }
                .await
            }
        };
        let (path, file) = match opened {
            Ok(o) => o,
            Err(r) => return self.refuse(r).await,
        };
        let opening = match kind {
            StoreKind::Stou => {
                let mut t = b"FILE: ".to_vec();
                t.extend_from_slice(path.file_name().unwrap_or_default());
                Reply::new(150, t)
            }
            _ => Reply::new(150, "Ok to send data"),
        };
        let offset = if kind == StoreKind::Stor { rest } else { 0 };
        let atomic = kind == StoreKind::Stou || (kind == StoreKind::Stor && rest == 0);
        self.transfer(Job::Upload { file, offset, path, atomic }, opening).await
    }

    /// STOU: a new file that did not exist, named after the argument (`name`, `name.1`, ...) or `stou.N`.
    async fn open_unique(&self, arg: Option<&[u8]>) -> Result<(VPath, Box<dyn FileHandle>), Reply> {
        let vfs = self.vfs()?;
        let base = match arg {
            Some(a) => self.resolve(a)?,
            None => self.cwd.join(b"stou"),
        };
        let opts = OpenOptions { write: true, create: true, exclusive: true, ..Default::default() };
        for i in 0..crate::limits::STOU_ATTEMPTS {
            let candidate = if i == 0 && arg.is_some() {
                base.clone()
            } else {
                let mut name = base.file_name().unwrap_or(b"stou").to_vec();
                name.extend_from_slice(format!(".{}", if arg.is_some() { i } else { i + 1 }).as_bytes());
                base.parent().join(&name)
            };
            match vfs.symlink_metadata(&candidate).await {
                Ok(_) => continue,
                Err(FsError::NotFound) => {}
                Err(e) => return Err(fs_error_reply(&e)),
            }
            match vfs.open(&candidate, opts).await {
                Ok(f) => return Ok((candidate, f)),
                Err(FsError::AlreadyExists) => continue,
                Err(e) => return Err(fs_error_reply(&e)),
            }
        }
        Err(Reply::new(553, "Could not find a unique file name"))
    }

    /// Runs one transfer whose file or listing is ready.
    async fn transfer(&mut self, job: Job, opening: Reply) -> Flow {
        let Some(setup) = self.data.take() else {
            return self.send(Reply::new(425, "Use PASV, EPSV, PORT or EPRT first")).await;
        };
        let upload = matches!(job, Job::Upload { .. });
        let conn = match setup {
            DataSetup::Passive(mut wait) => {
                if let Err(e) = wait.accepted(Go { upload, tls: self.data_tls() }).await {
                    return self.data_error(e).await;
                }
                if self.reply(opening).await.is_err() {
                    return Flow::Close;
                }
                match wait.ready().await {
                    Ok(c) => c,
                    Err(e) => return self.data_error(e).await,
                }
            }
            DataSetup::Active(target) => {
                let tcp = match data::dial_client(self.local, target, &self.client).await {
                    Ok(t) => t,
                    Err(r) => return self.send(r).await,
                };
                if self.reply(opening).await.is_err() {
                    return Flow::Close;
                }
                match self.data_tls() {
                    Some(t) => match accept_data(t, tcp, upload).await {
                        Ok(tls) => DataConn::Tls(Box::new(tls)),
                        Err(e) => return self.data_error(DataError::Tls(e)).await,
                    },
                    None => DataConn::Plain(tcp),
                }
            }
        };
        let (log_path, is_file) = match &job {
            Job::Listing(_) => (None, false),
            Job::Download { path, .. } | Job::Upload { path, .. } => (Some(path.clone()), true),
        };
        let atomic_upload = matches!(job, Job::Upload { atomic: true, .. });
        let outcome = match &job {
            Job::Upload { atomic: true, .. } => "; the upload was undone, any previous file is kept",
            Job::Upload { atomic: false, .. } => "; the bytes received so far were kept (resume with REST)",
            _ => "",
        };
        let _guard = is_file.then(|| FileGuard::new(&self.svc.activity));
        let started = Instant::now();
        let progress = AtomicU64::new(0);
        let ended = self.pump_watching_control(conn, &job, &progress).await;
        // An upload's file is finished here, after the pump, so that the reply follows the commit or undo.
        let upload_file = match job {
            Job::Upload { file, .. } => Some(file),
            _ => None,
        };
        let moved = progress.load(Ordering::Relaxed);
        let (bytes_read, bytes_written) = if upload { (0, moved) } else { (moved, 0) };
        let path = log_path.as_ref();
        let interrupted =
            |s: &Self, why: &str| s.note(path, bytes_read, bytes_written, started, Some(&format!("{why}{outcome}")));
        match ended {
            Ended::Pumped(Ok(Moved::Sent(n))) => {
                self.note(path, n, 0, started, None);
                self.send(Reply::new(226, "Transfer complete")).await
            }
            Ended::Pumped(Ok(Moved::Received { bytes, end: UploadEnd::NoCloseNotify })) => {
                abort(upload_file).await;
                self.note(
                    path,
                    0,
                    bytes,
                    started,
                    Some(&format!(
                        "the TLS data connection ended without close_notify (client killed or connection cut){outcome}"
                    )),
                );
                let text = if atomic_upload {
                    "Data connection closed without TLS close_notify: the upload is incomplete and was discarded"
                } else {
                    "Data connection closed without TLS close_notify: the upload is incomplete"
                };
                self.send(Reply::new(426, text)).await
            }
            Ended::Pumped(Ok(Moved::Received { bytes, end: UploadEnd::Clean })) => match close(upload_file).await {
                Ok(()) => {
                    self.note(path, 0, bytes, started, None);
                    self.send(Reply::new(226, "Transfer complete")).await
                }
                Err(e) => {
                    self.note(
                        path,
                        0,
                        bytes,
                        started,
                        Some(&format!("the upload could not be completed ({e}); the previous file is kept")),
                    );
                    self.send(fs_error_reply(&e)).await
                }
            },
            Ended::Pumped(Err((PumpError::Network(e), _))) => {
                abort(upload_file).await;
                interrupted(self, &format!("data connection: {e}"));
                self.send(Reply::new(426, "Connection closed; transfer aborted")).await
            }
            Ended::Pumped(Err((PumpError::File(e), _))) => {
                abort(upload_file).await;
                interrupted(self, &format!("the file could not be written or read ({e})"));
                self.send(fs_error_reply(&e)).await
            }
            Ended::Aborted => {
                abort(upload_file).await;
                interrupted(self, "aborted by the client (ABOR)");
                if self.reply(Reply::new(426, "Transfer aborted")).await.is_err() {
                    return Flow::Close;
                }
                self.send(Reply::new(226, "ABOR successful")).await
            }
            Ended::ControlGone => {
                abort(upload_file).await;
                interrupted(self, "control connection closed");
                Flow::Close
            }
            Ended::ByServer(reason) => {
                abort(upload_file).await;
                interrupted(self, &format!("session ended by the server: {reason}"));
                let _ = self.reply(Reply::new(426, "Transfer aborted")).await;
                let _ = self.reply(Reply::new(421, format!("Session ended by the server: {reason}"))).await;
                Flow::Close
            }
        }
    }

    /// A file transfer on the event stream: complete (`why` is `None`) or cut off. Listings are not.
    fn note(&self, path: Option<&VPath>, read: u64, written: u64, started: Instant, why: Option<&str>) {
        if let (Some(path), Some(session)) = (path, &self.user) {
            match why {
                None => session.transfer(path, read, written, started),
                Some(why) => session.interrupted(path, read, written, started, why),
            }
        }
    }

    /// Answers a data connection that could not be opened or secured.
    async fn data_error(&mut self, e: DataError) -> Flow {
        match e {
            DataError::NoConnection(r) => self.send(r).await,
            DataError::Tls(DataTlsError::NotResumed) => {
                tracing::warn!(
                    user = self.user_name(), client = %self.client,
                    "hint: refused a data connection that did not resume the control connection's TLS session; \
                     the client does not support session reuse (Python's ftplib does not): turn off \
                     require_session_reuse in the config if such clients must work"
                );
                self.send(Reply::new(
                    425,
                    "TLS session reuse required: the data connection must resume the control connection's TLS session",
                ))
                .await
            }
            DataError::Tls(DataTlsError::Handshake(e)) => {
                tracing::info!(user = self.user_name(), client = %self.client, "TLS handshake on a data connection failed: {e}");
                self.send(Reply::new(425, "TLS handshake on the data connection failed")).await
            }
        }
    }

    /// Moves the bytes while reading the control connection: ABOR stops the transfer, STAT reports on it,
    /// any other command waits in `self.pending` until the transfer is over.
    async fn pump_watching_control(&mut self, conn: DataConn, job: &Job, progress: &AtomicU64) -> Ended {
        let pump = run_job(conn, job, progress);
        tokio::pin!(pump);
        let mut ended: std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>> = match &self.user {
            Some(u) => Box::pin(u.ended()),
            None => Box::pin(std::future::pending()),
        };
        loop {
            tokio::select! {
                biased;
                r = &mut pump => return Ended::Pumped(r),
                Some(reason) = &mut ended => return Ended::ByServer(reason),
                line = self.read_line(), if self.pending.is_none() => {
                    let bytes = match line {
                        Ok(Some(Line::Command(b))) => b,
                        Ok(Some(Line::TooLong)) => {
                            if self.reply(too_long()).await.is_err() {
                                return Ended::ControlGone;
                            }
                            continue;
                        }
                        Ok(None) | Err(_) => return Ended::ControlGone,
                    };
                    match Command::parse(&bytes) {
                        Ok(Command::Abor) => return Ended::Aborted,
                        Ok(Command::Stat(None)) => {
                            let r = Reply::new(213, format!("Transfer in progress: {} bytes so far", progress.load(Ordering::Relaxed)));
                            if self.reply(r).await.is_err() {
                                return Ended::ControlGone;
                            }
                        }
                        _ => self.pending = Some(bytes),
                    }
                }
            }
        }
    }
}

/// Gives up on an upload's file (undoing the upload) before the reply goes out.
async fn abort(file: Option<Box<dyn FileHandle>>) {
    if let Some(f) = file {
        f.abort().await;
    }
}

async fn close(file: Option<Box<dyn FileHandle>>) -> ferry_vfs::FsResult<()> {
    match file {
        Some(f) => f.close().await,
        None => Ok(()),
    }
}

/// The transfer itself, from the first byte to the end of the data connection.
async fn run_job(mut conn: DataConn, job: &Job, progress: &AtomicU64) -> Result<Moved, (PumpError, u64)> {
    let failed = |e: PumpError| (e, progress.load(Ordering::Relaxed));
    match job {
        Job::Listing(bytes) => {
            let n = send_bytes(&mut conn, bytes, progress).await.map_err(failed)?;
            finish(conn).await.map_err(|e| failed(PumpError::Network(e)))?;
            Ok(Moved::Sent(n))
        }
        Job::Download { file, offset, .. } => {
            let n = send_file(&mut conn, &**file, *offset, progress).await.map_err(failed)?;
            finish(conn).await.map_err(|e| failed(PumpError::Network(e)))?;
            Ok(Moved::Sent(n))
        }
        Job::Upload { file, offset, .. } => {
            let (bytes, end) = receive_file(&mut conn, &**file, *offset, progress).await.map_err(failed)?;
            // Answer the client's close_notify with ours; the upload is complete whatever happens here.
            let _ = finish(conn).await;
            Ok(Moved::Received { bytes, end })
        }
    }
}
