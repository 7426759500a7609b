//! The FTPS login check: TLS (explicit or implicit), USER/PASS, PBSZ/PROT P, then LIST, STOR,
//! RETR and DELE through passive data connections, telling a blocked passive port apart from
//! other failures.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::control::{tls_error_words, Control, FtpError};
use super::reply::{parse_epsv, parse_pasv, Reply};
use crate::classify::explain_connect;
use crate::net::connect;
use crate::report::{Check, TransferInfo};
use crate::tls::{client_config, server_name_or_ip};
use crate::transfer::{mb_per_s, test_data, test_file_name, Credentials, TEST_FILE_BYTES};

/// A listing longer than this is cut off: the probe only needs to know that listing works.
const MAX_LISTING_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain greeting, then AUTH TLS.
    Explicit,
    /// TLS from the first byte.
    Implicit,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Explicit => "ftps",
            Mode::Implicit => "ftps-implicit",
        }
    }
}

type Ctl = Control<TlsStream<TcpStream>>;

/// Everything a data connection needs from the session.
struct Session {
    ctl: Ctl,
    peer: IpAddr,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    timeout: Duration,
    prefix: &'static str,
    /// Did every data connection resume the control connection's TLS session?
    resumed: Option<bool>,
    last_port: Option<u16>,
    /// A PASV address that differs from the server's, reported once.
    pasv_mismatch: Option<String>,
}

/// Why a data transfer failed.
enum DataError {
    /// The control connection failed (timeout, closed, ...).
    Control(FtpError),
    /// EPSV and PASV were both refused or unreadable.
    NoPassive(String),
    /// Connecting to the passive port failed.
    Blocked { port: u16, why: String },
    /// The server refused the command (e.g. `550 Permission denied`).
    Refused(Reply),
    /// The TLS handshake on the data connection failed; the control reply, when one came.
    Tls { port: u16, why: String, reply: Option<Reply> },
    /// The transfer itself broke.
    Transfer(String),
}

impl From<FtpError> for DataError {
    fn from(e: FtpError) -> DataError {
        DataError::Control(e)
    }
}

impl DataError {
    fn into_check(self, name: String) -> Check {
        match self {
            DataError::Control(e) => Check::fail(name, format!("the control connection failed: {e}")),
            DataError::NoPassive(why) => Check::fail(name, format!("no passive mode: {why}"))
                .hint("this probe (like most clients behind NAT) needs EPSV or PASV"),
            DataError::Blocked { port, why } => Check::fail(
                name,
                format!(
                    "the control connection works but the passive data port {port} is blocked ({why}): open the \
                     passive range in the firewall"
                ),
            )
            .hint("open the server's passive port range (Ferry: `ferry firewall` prints the rules; vsftpd: pasv_min_port/pasv_max_port)"),
            DataError::Refused(r) => Check::fail(name, format!("the server refused: {}", r.summary())),
            DataError::Tls { port, why, reply } => {
                let said = reply.map(|r| format!("; the server said {}", r.summary())).unwrap_or_default();
                let reuse = said.to_ascii_lowercase().contains("reuse");
                let c = Check::fail(name, format!("TLS on the data connection (port {port}) failed: {why}{said}"));
                if reuse {
                    c.hint("the server requires TLS session reuse on data connections and the session was not resumed")
                } else {
                    c
                }
            }
            DataError::Transfer(why) => Check::fail(name, why),
        }
    }
}

impl Session {
    /// EPSV (or PASV), connect, send `cmd`, read its preliminary reply, TLS on the data connection.
    async fn open_data(&mut self, cmd: &str) -> Result<(TlsStream<TcpStream>, u16), DataError> {
        let epsv = self.ctl.cmd("EPSV").await?;
        let port = match parse_epsv(&epsv) {
            Some(p) => p,
            None => {
                let pasv = self.ctl.cmd("PASV").await?;
                let Some((ip, p)) = parse_pasv(&pasv) else {
                    return Err(DataError::NoPassive(format!("EPSV: {}; PASV: {}", epsv.summary(), pasv.summary())));
                };
                // Connect to the control connection's address, as curl and lftp do, but say when
                // the server advertises another one: clients that trust it will fail.
                if IpAddr::V4(ip) != self.peer && self.pasv_mismatch.is_none() {
                    self.pasv_mismatch = Some(format!(
                        "PASV gives the address {ip}, but the server is at {}: clients that use the PASV address fail",
                        self.peer
                    ));
                }
                p
            }
        };
        self.last_port = Some(port);
        let tcp = connect(SocketAddr::new(self.peer, port), self.timeout)
            .await
            .map_err(|f| DataError::Blocked { port, why: explain_connect(&f, port).0 })?;
        self.ctl.send(cmd).await?;
        // The server may wait for the TLS handshake before it replies, or reply before it takes
        // the handshake: run both at once.
        let connector = TlsConnector::from(self.config.clone());
        let name = self.name.clone();
        let timeout = self.timeout;
        let handshake = tokio::spawn(async move { tokio::time::timeout(timeout, connector.connect(name, tcp)).await });
        let pre = match self.ctl.reply().await {
            Ok(r) => r,
            Err(e) => {
                handshake.abort();
                return Err(e.into());
            }
        };
        if !pre.is_positive_preliminary() {
            handshake.abort();
            return Err(DataError::Refused(pre));
        }
        let tls = match handshake.await {
            Ok(Ok(Ok(s))) => s,
            Ok(Ok(Err(e))) => {
                let reply = self.ctl.reply_within(Duration::from_secs(1)).await.ok();
                return Err(DataError::Tls { port, why: tls_error_words(&e), reply });
            }
            Ok(Err(_)) | Err(_) => {
                let reply = self.ctl.reply_within(Duration::from_secs(1)).await.ok();
                return Err(DataError::Tls { port, why: "the handshake timed out".into(), reply });
            }
        };
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        self.resumed = Some(self.resumed.unwrap_or(true) && resumed);
        Ok((tls, port))
    }

    /// The final reply of a transfer (226 or 250).
    async fn finish(&mut self) -> Result<Reply, DataError> {
        let r = self.ctl.reply().await?;
        if r.is_success() {
            Ok(r)
        } else {
            Err(DataError::Refused(r))
        }
    }

    async fn read_all(&mut self, cmd: &str, limit: usize) -> Result<Vec<u8>, DataError> {
        let (mut data, _) = self.open_data(cmd).await?;
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(self.timeout, data.read(&mut chunk)).await {
                Err(_) => return Err(DataError::Transfer("the data connection stalled (timed out)".into())),
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => {
                    out.extend_from_slice(&chunk[..n]);
                    if out.len() > limit {
                        break;
                    }
                }
                // Some servers close the data connection without a TLS close_notify; the final
                // reply on the control connection says whether the transfer completed.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Ok(Err(e)) => return Err(DataError::Transfer(format!("the data connection broke: {e}"))),
            }
        }
        drop(data);
        self.finish().await?;
        Ok(out)
    }

    async fn write_all(&mut self, cmd: &str, bytes: &[u8]) -> Result<(), DataError> {
        let (mut data, _) = self.open_data(cmd).await?;
        let send = async {
            data.write_all(bytes).await?;
            // close_notify, then FIN: the end of the file.
            data.shutdown().await?;
            // Then wait for the server to close its side. Closing a socket with unread bytes (a
            // TLS 1.3 session ticket, the server's close_notify) sends a reset, which can make
            // the server lose the end of the upload (vsftpd: `426 Failure reading network stream`).
            let mut sink = [0u8; 4096];
            loop {
                match data.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            Ok::<(), std::io::Error>(())
        };
        match tokio::time::timeout(self.timeout * 4, send).await {
            Err(_) => return Err(DataError::Transfer("the upload stalled (timed out)".into())),
            Ok(Err(e)) => return Err(DataError::Transfer(format!("the data connection broke during the upload: {e}"))),
            Ok(Ok(())) => {}
        }
        drop(data);
        self.finish().await?;
        Ok(())
    }
}

/// Connects and logs in; the control connection in TLS, ready for commands.
async fn login(
    addr: SocketAddr,
    host: &str,
    mode: Mode,
    user: &str,
    password: &str,
    timeout: Duration,
) -> Result<(Ctl, Arc<ClientConfig>, ServerName<'static>), Check> {
    let prefix = mode.name();
    let fail = |detail: String| Check::fail(format!("{prefix}.login"), detail);
    let config = client_config().map_err(|e| fail(format!("TLS set-up failed: {e}")))?;
    let name = server_name_or_ip(host, addr.ip());
    let tcp = connect(addr, timeout).await.map_err(|f| {
        let (detail, hint) = explain_connect(&f, addr.port());
        fail(detail).hint(hint)
    })?;
    let mut ctl = match mode {
        Mode::Explicit => {
            let mut plain = Control::new(tcp, Vec::new(), timeout);
            let greeting = plain.reply().await.map_err(|e| fail(format!("no greeting: {e}")))?;
            if greeting.code != 220 {
                return Err(fail(format!("the server does not accept clients: {}", greeting.summary())));
            }
            let auth = plain.cmd("AUTH TLS").await.map_err(|e| fail(format!("AUTH TLS: {e}")))?;
            if auth.code != 234 {
                return Err(fail(format!(
                    "not logging in: the server refuses AUTH TLS ({}), so the password would cross the network in clear",
                    auth.summary()
                )));
            }
            plain.start_tls(config.clone(), name.clone()).await.map_err(fail)?
        }
        Mode::Implicit => {
            let tls = match tokio::time::timeout(timeout, TlsConnector::from(config.clone()).connect(name.clone(), tcp))
                .await
            {
                Err(_) => return Err(fail("the TLS handshake timed out".into())),
                Ok(Err(e)) => return Err(fail(format!("the TLS handshake failed: {}", tls_error_words(&e)))),
                Ok(Ok(s)) => s,
            };
            let mut ctl = Control::new(tls, Vec::new(), timeout);
            let greeting = ctl.reply().await.map_err(|e| fail(format!("no greeting inside TLS: {e}")))?;
            if greeting.code != 220 {
                return Err(fail(format!("the server does not accept clients: {}", greeting.summary())));
            }
            ctl
        }
    };
    let r = ctl.cmd(&format!("USER {user}")).await.map_err(|e| fail(format!("USER: {e}")))?;
    let r = match r.code {
        230 => r,
        331 | 332 => ctl.cmd(&format!("PASS {password}")).await.map_err(|e| fail(format!("PASS: {e}")))?,
        _ => return Err(fail(format!("the server refused the user {user}: {}", r.summary()))),
    };
    if r.code != 230 && r.code != 202 {
        return Err(fail(format!("the server refused the login of {user}: {}", r.summary()))
            .hint("check the user name and password"));
    }
    Ok((ctl, config, name))
}

/// Runs the whole check; checks are named `ftps.*` or `ftps-implicit.*`.
pub async fn check(
    addr: SocketAddr,
    host: &str,
    mode: Mode,
    creds: &Credentials,
    timeout: Duration,
) -> (Vec<Check>, Option<TransferInfo>) {
    let prefix = mode.name();
    let mut checks = Vec::new();
    let Some(password) = &creds.password else {
        checks.push(Check::warn(
            format!("{prefix}.login"),
            "skipped: FTPS logs in with a password (--password-stdin); --key is for SFTP",
        ));
        return (checks, None);
    };
    let (ctl, config, name) = match login(addr, host, mode, &creds.user, password, timeout).await {
        Ok(v) => v,
        Err(c) => {
            checks.push(c);
            return (checks, None);
        }
    };
    checks.push(Check::pass(format!("{prefix}.login"), format!("logged in as {}", creds.user)));
    let mut s = Session {
        ctl,
        peer: addr.ip(),
        config,
        name,
        timeout,
        prefix,
        resumed: None,
        last_port: None,
        pasv_mismatch: None,
    };
    let info = transfers(&mut s, creds, &mut checks).await;
    if let Some(m) = s.pasv_mismatch.take() {
        checks.push(
            Check::warn(format!("{prefix}.pasv_address"), m)
                .hint("set the server's external passive address (vsftpd: pasv_address; ProFTPD: MasqueradeAddress)"),
        );
    }
    s.ctl.quit().await;
    (checks, info)
}

async fn transfers(s: &mut Session, creds: &Credentials, checks: &mut Vec<Check>) -> Option<TransferInfo> {
    let prefix = s.prefix;
    for (cmd, what) in
        [("PBSZ 0", "PBSZ"), ("PROT P", "PROT P (encrypted data connections)"), ("TYPE I", "binary mode")]
    {
        match s.ctl.cmd(cmd).await {
            Ok(r) if r.is_success() => {}
            Ok(r) => {
                checks.push(Check::fail(
                    format!("{prefix}.session"),
                    format!("the server refuses {what}: {}", r.summary()),
                ));
                return None;
            }
            Err(e) => {
                checks.push(Check::fail(format!("{prefix}.session"), format!("{cmd}: {e}")));
                return None;
            }
        }
    }
    let listed = match s.read_all("LIST", MAX_LISTING_BYTES).await {
        Ok(listing) => {
            let n = listing.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
            let port = s.last_port.map(|p| format!(" (passive port {p})")).unwrap_or_default();
            checks.push(Check::pass(format!("{prefix}.list"), format!("{n} entries{port}")));
            Some(n)
        }
        Err(e) => {
            // Without a working data connection nothing else can work: stop here.
            checks.push(e.into_check(format!("{prefix}.list")));
            return None;
        }
    };
    let name = test_file_name();
    let data = test_data();
    let started = Instant::now();
    if let Err(e) = s.write_all(&format!("STOR {name}"), &data).await {
        checks.push(e.into_check(format!("{prefix}.upload")));
        let _ = s.ctl.cmd(&format!("DELE {name}")).await;
        return None;
    }
    let up = started.elapsed();
    checks.push(Check::pass(
        format!("{prefix}.upload"),
        format!("{} bytes to {name} at {} MB/s", data.len(), mb_per_s(data.len(), up)),
    ));
    let started = Instant::now();
    let down = match s.read_all(&format!("RETR {name}"), TEST_FILE_BYTES + 1).await {
        Ok(back) if back == data => {
            let took = started.elapsed();
            checks.push(Check::pass(
                format!("{prefix}.download"),
                format!("{} bytes at {} MB/s, contents match", back.len(), mb_per_s(back.len(), took)),
            ));
            Some(took)
        }
        Ok(back) => {
            checks.push(Check::fail(
                format!("{prefix}.download"),
                format!(
                    "the file read back ({} bytes) differs from the one written ({} bytes)",
                    back.len(),
                    data.len()
                ),
            ));
            None
        }
        Err(e) => {
            checks.push(e.into_check(format!("{prefix}.download")));
            None
        }
    };
    match s.ctl.cmd(&format!("DELE {name}")).await {
        Ok(r) if r.is_success() => checks.push(Check::pass(format!("{prefix}.remove"), format!("removed {name}"))),
        Ok(r) => checks.push(
            Check::fail(format!("{prefix}.remove"), format!("cannot remove {name}: {}", r.summary()))
                .hint("remove it by hand"),
        ),
        Err(e) => checks.push(Check::fail(format!("{prefix}.remove"), format!("DELE: {e}")).hint("remove it by hand")),
    }
    let down = down?;
    Some(TransferInfo {
        data_port: s.last_port,
        data_tls_resumed: s.resumed,
        ..TransferInfo::measured(prefix, &creds.user, name, data.len(), listed, up, down)
    })
}
