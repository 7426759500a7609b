//! What each listener serves, its accept loop, and protocol detection for listeners that serve several
//! protocols on one port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_auth::Admission;
use ferry_config::{ListenerSpec, Protocol};
use ferry_core::proxy::{self, ProxyHeader, TrustedProxies};
use ferry_core::{Defender, Offence};
use ferry_ftp::{FtpMode, FtpService};
use ferry_sftp::{Activity, SshService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::detect::{classify, Opening};
use crate::gate::{Gate, Refusal};
use crate::prefixed::ClientStream;

/// What a listener serves. A listener with one protocol behaves exactly as that protocol's standard says;
/// with several, the client's first bytes (or its silence) decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerKind {
    pub sftp: bool,
    /// Explicit FTPS (`Explicit`), or explicit FTPS that also accepts logins without TLS (`Plain`).
    pub explicit: Option<FtpMode>,
    pub implicit: bool,
    /// Connections come through trusted load balancers, each starting with a PROXY protocol header.
    pub proxy_protocol: bool,
}

impl ListenerKind {
    /// `ftps,ftp` (or `ftp` alone) is an explicit-FTPS listener that also accepts logins without TLS.
    pub fn of(spec: &ListenerSpec) -> Result<ListenerKind, ServesNothing> {
        let has = |p| spec.protocols.contains(&p);
        let explicit = if has(Protocol::Ftp) {
            Some(FtpMode::Plain)
        } else if has(Protocol::Ftps) {
            Some(FtpMode::Explicit)
        } else {
            None
        };
        let kind = ListenerKind {
            sftp: has(Protocol::Sftp),
            explicit,
            implicit: has(Protocol::FtpsImplicit),
            proxy_protocol: spec.proxy_protocol,
        };
        if !kind.sftp && kind.explicit.is_none() && !kind.implicit {
            return Err(ServesNothing(spec.to_string()));
        }
        Ok(kind)
    }

    pub fn plain_ftp(&self) -> bool {
        self.explicit == Some(FtpMode::Plain)
    }

    fn serves(&self, o: Opening) -> bool {
        match o {
            Opening::Ssh => self.sftp,
            Opening::TlsClientHello => self.implicit,
            Opening::FtpCommand => self.explicit.is_some() || self.implicit,
            _ => false,
        }
    }
}

/// A listener that names no protocol Ferry serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServesNothing(pub String);

impl std::fmt::Display for ServesNothing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "listener {} serves no protocol", self.0)
    }
}

impl std::error::Error for ServesNothing {}

/// Where each protocol is served, for hints that send a client to the right port.
#[derive(Debug, Default)]
pub struct Directory(pub Vec<(Protocol, SocketAddr)>);

impl Directory {
    fn where_is(&self, p: Protocol) -> String {
        let addrs: Vec<String> = self.0.iter().filter(|(q, _)| *q == p).map(|(_, a)| a.to_string()).collect();
        let name = match p {
            Protocol::Sftp => "SFTP",
            Protocol::Ftps => "explicit FTPS",
            Protocol::FtpsImplicit => "implicit FTPS",
            Protocol::Ftp => "plain FTP",
        };
        if addrs.is_empty() {
            format!("no listener of this server serves {name}")
        } else {
            format!("{name} is served on {}", addrs.join(", "))
        }
    }
}

/// The services connections are handed to, and what detection needs to know.
pub struct Services {
    pub ssh: Arc<SshService>,
    pub ftp: Option<Arc<FtpService>>,
    pub directory: Directory,
    /// Silence this long means an FTP client waiting for the greeting.
    pub detect_wait: Duration,
    /// After the greeting on a port that also serves SFTP, silence this long means an SSH client that
    /// waits for the server's version line.
    pub ssh_wait: Duration,
    /// Bans at accept, and scores for limits hit and garbage.
    pub defender: Arc<Defender>,
    /// The transfers running, shared with `ssh` and `ftp`: shutdown waits for them.
    pub activity: Arc<Activity>,
    /// Who may connect to a `proxy_protocol` listener and name the client in a PROXY header.
    pub trusted_proxies: TrustedProxies,
}

/// Accepts connections on one listener until the task is aborted.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    kind: ListenerKind,
    services: Arc<Services>,
    gate: Arc<Gate>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(listener = %addr, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !kind.proxy_protocol {
            admit(stream, peer, addr, kind, &services, &gate);
            continue;
        }
        if !services.trusted_proxies.trusts(peer.ip()) {
            refuse_untrusted(&stream, peer, addr, kind, &services);
            continue;
        }
        // The header is read in the connection's own task: a slow balancer connection holds up no other.
        let (services, gate) = (services.clone(), gate.clone());
        tokio::spawn(async move {
            let mut stream = stream;
            match proxy::read_header(&mut stream).await {
                Ok(ProxyHeader::Client { source, .. }) => admit(stream, source, addr, kind, &services, &gate),
                // A health check, or a balancer that does not know the client: the balancer's own address.
                Ok(ProxyHeader::Local) => admit(stream, peer, addr, kind, &services, &gate),
                Err(e) => {
                    tracing::warn!(listener = %addr, proxy = %peer, "closed a connection from a load balancer: {e}")
                }
            }
        });
    }
}

/// Admits a connection from `peer` (the client, from a PROXY header where there is one) and serves it in
/// a task of its own; or closes it, saying why, when the address is banned or over a limit.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    addr: SocketAddr,
    kind: ListenerKind,
    services: &Arc<Services>,
    gate: &Arc<Gate>,
) {
    // A banned address is closed before anything else: no TLS, no key exchange, no detection.
    if services.defender.is_banned(peer.ip()) {
        services.defender.knocked(peer.ip());
        refuse_at_accept(&stream, kind, BANNED);
        return;
    }
    let (open, admission) = match gate.admit(peer.ip(), rand::random::<u32>() % 100) {
        Ok(a) => a,
        Err(why) => {
            gate.refused(why, peer.ip());
            if matches!(why, Refusal::PerSource | Refusal::PerIp) {
                services.defender.record(peer.ip(), Offence::LimitHit);
            }
            refuse_at_accept(&stream, kind, why.message());
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(addr);
    let services = services.clone();
    tokio::spawn(async move {
        let watch = admission.watch();
        let grace = admission.grace();
        // Every protocol enforces the deadline itself, with its own words (SSH disconnect, FTP 421);
        // this catches anything stuck where no protocol runs yet.
        let hard_stop = tokio::time::sleep_until(admission.deadline() + Duration::from_secs(5));
        tokio::select! {
            _ = serve(stream, peer, local, addr, kind, &services, admission) => {}
            _ = async { hard_stop.await; if watch.logged_in() { std::future::pending::<()>().await } } => {
                tracing::info!(client = %peer, "closing connection: no login within {}s", grace.as_secs());
            }
        }
        drop(open);
    });
}

/// What a client that bypasses the load balancer is told.
const NOT_THROUGH_PROXY: &str = "This port takes connections only through the load balancer";

/// A connection to a `proxy_protocol` listener from an address that is not a trusted balancer: whatever it
/// would send (a forged PROXY header naming someone else included) is never read. Scored as garbage, so a
/// flood of them ends in a ban.
fn refuse_untrusted(stream: &TcpStream, peer: SocketAddr, addr: SocketAddr, kind: ListenerKind, services: &Services) {
    if services.defender.is_banned(peer.ip()) {
        services.defender.knocked(peer.ip());
        return;
    }
    services.defender.record(peer.ip(), Offence::Garbage);
    tracing::warn!(
        listener = %addr, client = %peer,
        "hint: refused {}: listener {addr} has proxy_protocol = true and takes connections only from [server] trusted_proxies; add the balancer's address there, or give direct clients a listener without proxy_protocol",
        peer.ip()
    );
    refuse_at_accept(stream, kind, NOT_THROUGH_PROXY);
}

/// What a banned client is told.
const BANNED: &str = "Your address is banned for a while after repeated failed logins; try again later";

/// Tells a refused client why, in one write that never waits (a flood must not hold sockets open):
/// a `421` line where an FTP client may be listening, a plain line for SSH clients (they show it), and
/// nothing on an implicit-FTPS-only port, where the client expects TLS.
fn refuse_at_accept(stream: &TcpStream, kind: ListenerKind, why: &str) {
    let line = if kind.explicit.is_some() {
        format!("421 {why}\r\n")
    } else if kind.sftp {
        format!("{why}\r\n")
    } else {
        return;
    };
    let _ = stream.try_write(line.as_bytes());
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    listen: SocketAddr,
    kind: ListenerKind,
    svc: &Services,
    admission: Admission,
) {
    // One protocol, nothing to detect: exactly as the standard says, no delay. The first bytes are only
    // looked at afterwards, to tell the admin what a client that did not speak the protocol was.
    let (sniffer, seen) = ClientStream::sniffing(stream);
    match (kind.sftp, kind.explicit, kind.implicit, &svc.ftp) {
        (true, None, false, _) => svc.ssh.clone().serve_connection(sniffer, peer, admission).await,
        (false, Some(mode), false, Some(ftp)) => {
            ftp.clone().serve_connection(sniffer, peer, local, mode, admission).await
        }
        _ => return detect_and_serve(sniffer.into_inner(), peer, local, listen, kind, svc, admission).await,
    }
    let first = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let opening = classify(&first);
    if !first.is_empty() && !matches!(opening, Opening::NeedMore) && !kind.serves(opening) {
        hint_wrong_protocol(opening, peer, listen, svc, "single-protocol");
    }
}

/// Reads what the client sends first, for up to `wait`, until the bytes say which protocol it is.
async fn first_bytes(stream: &mut TcpStream, wait: Duration) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(64);
    let deadline = tokio::time::Instant::now() + wait;
    let mut chunk = [0u8; 64];
    while buf.len() < 64 && classify(&buf) == Opening::NeedMore {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(buf)
}

#[allow(clippy::too_many_arguments)]
async fn detect_and_serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    listen: SocketAddr,
    kind: ListenerKind,
    svc: &Services,
    admission: Admission,
) {
    let Ok(first) = first_bytes(&mut stream, svc.detect_wait).await else { return };
    if first.is_empty() {
        return served_silent_client(stream, peer, local, listen, kind, svc, admission).await;
    }
    // A client that has started to speak gets a little longer to finish its first line.
    let mut first = first;
    if classify(&first) == Opening::NeedMore {
        match first_bytes(&mut stream, Duration::from_secs(1)).await {
            Ok(more) => first.extend_from_slice(&more),
            Err(_) => return,
        }
    }
    dispatch(stream, first, peer, local, listen, kind, svc, false, admission).await;
}

/// A client that says nothing: an FTP client waiting for the greeting, or an SSH client waiting for the
/// server's version line. Greet it as FTP; if it then answers with an SSH version line (RFC 4253 lets a
/// server send text lines before its version, and SSH clients skip them) or stays silent, serve SFTP.
#[allow(clippy::too_many_arguments)]
async fn served_silent_client(
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    listen: SocketAddr,
    kind: ListenerKind,
    svc: &Services,
    admission: Admission,
) {
    let ftp_here = kind.explicit.is_some() || kind.implicit;
    if !ftp_here {
        // Only SFTP is left to try (a port serving SFTP and nothing FTP is never detected).
        return svc.ssh.clone().serve_connection(stream, peer, admission).await;
    }
    if kind.implicit && kind.explicit.is_none() {
        tracing::info!(
            client = %peer, listener = %listen,
            "hint: client sent nothing to the implicit FTPS port: it waits for a greeting, as explicit FTPS clients (and Python's ftplib.FTP_TLS) do; serving it explicit FTPS, AUTH TLS required"
        );
    }
    if stream.write_all(ferry_ftp::GREETING).await.is_err() {
        return;
    }
    if kind.sftp {
        match first_bytes(&mut stream, svc.ssh_wait).await {
            Ok(b) if b.is_empty() => return svc.ssh.clone().serve_connection(stream, peer, admission).await,
            Ok(b) if classify(&b) == Opening::Ssh => {
                return svc.ssh.clone().serve_connection(ClientStream::replaying(b, stream), peer, admission).await
            }
            Ok(b) => return dispatch(stream, b, peer, local, listen, kind, svc, true, admission).await,
            Err(_) => return,
        }
    }
    if let Some(ftp) = &svc.ftp {
        let mode = kind.explicit.unwrap_or(FtpMode::Explicit);
        ftp.clone().serve_greeted(stream, peer, local, mode, admission).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    stream: TcpStream,
    first: Vec<u8>,
    peer: SocketAddr,
    local: SocketAddr,
    listen: SocketAddr,
    kind: ListenerKind,
    svc: &Services,
    greeted: bool,
    admission: Admission,
) {
    let opening = classify(&first);
    if !kind.serves(opening) || (opening == Opening::FtpCommand && svc.ftp.is_none()) {
        return refuse(stream, opening, peer, listen, svc, greeted).await;
    }
    match opening {
        Opening::Ssh => svc.ssh.clone().serve_connection(ClientStream::replaying(first, stream), peer, admission).await,
        Opening::TlsClientHello => {
            if let Some(ftp) = &svc.ftp {
                ftp.clone()
                    .serve_connection(ClientStream::replaying(first, stream), peer, local, FtpMode::Implicit, admission)
                    .await;
            }
        }
        _ => {
            if let Some(ftp) = &svc.ftp {
                let mode = kind.explicit.unwrap_or(FtpMode::Explicit);
                let stream = ClientStream::replaying(first, stream);
                if greeted {
                    ftp.clone().serve_greeted(stream, peer, local, mode, admission).await;
                } else {
                    // An FTP client that spoke before the greeting: the session greets it, then reads what
                    // it already sent.
                    ftp.clone().serve_connection(stream, peer, local, mode, admission).await;
                }
            }
        }
    }
}

/// A client speaking a protocol this listener does not serve: one hint line for the admin, and the
/// clearest message its protocol allows for the person at the client.
async fn refuse(
    mut stream: TcpStream,
    opening: Opening,
    peer: SocketAddr,
    listen: SocketAddr,
    svc: &Services,
    greeted: bool,
) {
    let to_client: &[u8] = match opening {
        // An SSH client shows the text of a line that is not its version line only in debug output;
        // closing is all it understands, so the admin hint carries the explanation.
        Opening::Ssh => b"This port does not serve SFTP.\r\n",
        Opening::FtpCommand => b"530 This port does not serve FTP.\r\n",
        Opening::Http => b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nThis port serves file transfer (SFTP/FTPS), not HTTP.\r\n",
        // A TLS client understands only TLS alerts; closing says as much.
        _ => b"",
    };
    hint_wrong_protocol(opening, peer, listen, svc, if greeted { "after the FTP greeting" } else { "multi-protocol" });
    if !to_client.is_empty() {
        let _ = stream.write_all(to_client).await;
    }
    let _ = stream.shutdown().await;
}

/// The one log line an admin gets about a client on the wrong port: what it was, and where to send it;
/// a client that spoke no protocol at all is scored by the defender.
fn hint_wrong_protocol(opening: Opening, peer: SocketAddr, listen: SocketAddr, svc: &Services, how: &str) {
    // A client on the wrong port is confused, not hostile; bytes of no protocol at all are a probe.
    if opening == Opening::Unknown {
        svc.defender.record(peer.ip(), Offence::Garbage);
    }
    let (it_is, wanted) = match opening {
        Opening::TlsClientHello => {
            ("a TLS ClientHello: it is an implicit FTPS client (or HTTPS)", Some(Protocol::FtpsImplicit))
        }
        Opening::Ssh => ("an SSH identification line: it is an SFTP/SSH client", Some(Protocol::Sftp)),
        Opening::FtpCommand => ("an FTP command: it is an FTP client", Some(Protocol::Ftps)),
        Opening::Http => ("an HTTP request: it is a web browser or HTTP client", None),
        _ => ("bytes of no protocol Ferry knows", None),
    };
    let where_to = wanted.map(|p| format!("; {}", svc.directory.where_is(p))).unwrap_or_default();
    tracing::info!(
        client = %peer, listener = %listen, detection = how,
        "hint: client {} sent {it_is}, which listener {listen} does not serve{where_to}",
        peer.ip()
    );
}
