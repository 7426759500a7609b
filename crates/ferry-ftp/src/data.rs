//! Opening data connections: passive (a listener from the shared range, waiting for the client) or active
//! (PORT/EPRT: we connect to the client).
//!
//! Both only ever talk to the control connection's own client: a passive listener closes connections from
//! any other address (and keeps waiting for the right one), and PORT/EPRT to another address is refused
//! when the command arrives (the FTP bounce attack, RFC 2577).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use ferry_core::proxy::{may_start_header, read_header, ProxyError, ProxyHeader, TrustedProxies};

use crate::limits::{DATA_CONNECT_TIMEOUT, PASSIVE_ACCEPT_TIMEOUT, TLS_HANDSHAKE_TIMEOUT};
use crate::ports::{PassiveListener, PassivePorts, PortError};
use crate::proto::addr::canonical;
use crate::proto::Reply;
use crate::stream::DataConn;
use crate::tls::{accept_data, DataTls, DataTlsError};

/// Opens a passive listener on the control connection's local IP.
pub(crate) fn listen(ports: &Arc<PassivePorts>, local_ip: IpAddr) -> Result<PassiveListener, Reply> {
    match ports.listen(canonical(local_ip)) {
        Ok(l) => Ok(l),
        Err(PortError::Exhausted { lo, hi }) => {
            tracing::warn!(
                "hint: passive port range {lo}-{hi} is exhausted; widen it with --passive-ports or passive_ports in the config"
            );
            Err(Reply::new(
                425,
                format!("No passive port available (all {} ports of the range are in use)", ports.size()),
            ))
        }
        Err(PortError::Bind(e)) => {
            tracing::error!(address = %local_ip, "cannot open a passive data listener: {e}");
            Err(Reply::new(425, "Cannot open a passive data listener"))
        }
    }
}

/// Checks a PORT/EPRT address before accepting it.
pub(crate) fn check_active(target: SocketAddr, peer: SocketAddr) -> Result<(), Reply> {
    if canonical(target.ip()) != canonical(peer.ip()) {
        return Err(Reply::new(500, "refused: PORT to a foreign address (FTP bounce)"));
    }
    if target.port() < 1024 {
        return Err(Reply::new(501, "refused: PORT to a privileged port (below 1024)"));
    }
    Ok(())
}

/// How the next transfer gets its data connection.
pub(crate) enum DataSetup {
    Passive(PassiveWait),
    Active(SocketAddr),
}

/// What the transfer command tells a waiting passive connection.
pub(crate) struct Go {
    pub(crate) upload: bool,
    /// Set when the data connection is private (PROT P).
    pub(crate) tls: Option<DataTls>,
}

/// Progress of a passive data connection, reported by its task.
enum Event {
    /// The client's TCP connection is in.
    Accepted,
    /// The connection is ready for bytes (after the TLS handshake when private).
    Ready(Result<DataConn, DataTlsError>),
}

/// A passive listener whose task accepts the client's data connection as soon as it arrives, and starts
/// the TLS handshake as soon as the client sends its ClientHello, even before the transfer command.
///
/// curl (7.88) starts the data connection's TLS handshake right after connecting, before it sends RETR,
/// and until the handshake completes it waits only on the data socket: a server that accepts at RETR
/// time, as vsftpd does, leaves curl hanging 0.2 to 1.4 s per transfer. Clients that start the handshake
/// after the 150 reply (Python's ftplib) are served when the transfer command says what it is.
pub(crate) struct PassiveWait {
    go: Option<oneshot::Sender<Go>>,
    events: mpsc::Receiver<Event>,
    task: JoinHandle<()>,
}

impl Drop for PassiveWait {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a data connection could not be used; the session turns it into a reply.
pub(crate) enum DataError {
    /// No connection within the timeout (425, before any 150).
    NoConnection(Reply),
    Tls(DataTlsError),
}

impl PassiveWait {
    /// Stops waiting and closes the listener before returning, so its port can be bound again at once
    /// (dropping only asks the runtime to cancel the task, which happens a moment later).
    pub(crate) async fn close(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Starts waiting on `pl` for a connection from `peer`. `tls` is set when data connections are
    /// private at PASV time: then a ClientHello that arrives before the transfer command is answered at once.
    /// `proxies` are the load balancers whose data connections start with a PROXY header naming the client.
    pub(crate) fn start(
        pl: PassiveListener,
        peer: SocketAddr,
        client: String,
        tls: Option<DataTls>,
        proxies: TrustedProxies,
    ) -> PassiveWait {
        let (go_tx, go_rx) = oneshot::channel();
        let (ev_tx, ev_rx) = mpsc::channel(2);
        let task = tokio::spawn(passive_task(pl, peer, client, tls, proxies, go_rx, ev_tx));
        PassiveWait { go: Some(go_tx), events: ev_rx, task }
    }

    /// Tells the task what the transfer is, then waits for the client's TCP connection.
    pub(crate) async fn accepted(&mut self, go: Go) -> Result<(), DataError> {
        if let Some(tx) = self.go.take() {
            let _ = tx.send(go);
        }
        let deadline = Instant::now() + DATA_CONNECT_TIMEOUT;
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Ok(Some(Event::Accepted)) => Ok(()),
            Ok(Some(Event::Ready(_))) | Ok(None) => Err(DataError::NoConnection(failed())),
            Err(_) => Err(DataError::NoConnection(no_connection())),
        }
    }

    /// Waits until the connection is ready for bytes.
    pub(crate) async fn ready(&mut self) -> Result<DataConn, DataError> {
        // The task bounds the handshake by TLS_HANDSHAKE_TIMEOUT; this bound only guards against a bug.
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT * 2, self.events.recv()).await {
            Ok(Some(Event::Ready(r))) => r.map_err(DataError::Tls),
            _ => Err(DataError::NoConnection(failed())),
        }
    }
}

fn no_connection() -> Reply {
    Reply::new(425, format!("Failed to establish data connection: none within {}s", DATA_CONNECT_TIMEOUT.as_secs()))
}

fn failed() -> Reply {
    Reply::new(425, "Failed to establish data connection")
}

async fn passive_task(
    pl: PassiveListener,
    peer: SocketAddr,
    client: String,
    eager: Option<DataTls>,
    proxies: TrustedProxies,
    mut go: oneshot::Receiver<Go>,
    events: mpsc::Sender<Event>,
) {
    // A port nobody connects to goes back to the pool (vsftpd's accept_timeout): a client that sends
    // PASV after PASV, or PASV and nothing else, cannot hold the range.
    let tcp = match tokio::time::timeout(PASSIVE_ACCEPT_TIMEOUT, accept_from(&pl, peer, &client, &proxies)).await {
        Ok(Some(tcp)) => tcp,
        Ok(None) => return,
        Err(_) => {
            tracing::debug!(
                client,
                port = pl.port,
                "released a passive port: no data connection within {}s",
                PASSIVE_ACCEPT_TIMEOUT.as_secs()
            );
            return;
        }
    };
    // The port goes back to the pool; the connection keeps its own socket.
    drop(pl);
    if events.send(Event::Accepted).await.is_err() {
        return;
    }
    let (upload, tls) = tokio::select! {
        biased;
        g = &mut go => match g {
            Ok(g) => (g.upload, g.tls),
            Err(_) => return,
        },
        // Bytes before the transfer command on a private connection: the client's ClientHello. Without
        // knowing the direction yet, send no session tickets (see crate::tls).
        Ok(n) = peek(&tcp), if eager.is_some() => {
            if n == 0 {
                // The client closed the connection already; the transfer will say so.
                match go.await {
                    Ok(g) => (g.upload, g.tls),
                    Err(_) => return,
                }
            } else {
                (true, eager)
            }
        }
    };
    let ready = match tls {
        Some(t) => accept_data(t, tcp, upload).await.map(|s| DataConn::Tls(Box::new(s))),
        None => Ok(DataConn::Plain(tcp)),
    };
    let _ = events.send(Event::Ready(ready)).await;
}

/// Waits until the client has sent something (or closed), without consuming it. Unlike `readable()`,
/// which may report readiness spuriously, this only returns for real bytes or end of stream.
async fn peek(tcp: &TcpStream) -> io::Result<usize> {
    let mut b = [0u8; 1];
    tcp.peek(&mut b).await
}

/// Accepts connections until one comes from the client's own address: directly, or through a trusted
/// load balancer whose PROXY header names that address.
async fn accept_from(
    pl: &PassiveListener,
    peer: SocketAddr,
    client: &str,
    proxies: &TrustedProxies,
) -> Option<TcpStream> {
    loop {
        match pl.listener.accept().await {
            Ok((mut tcp, tcp_from)) => {
                let from = if proxies.trusts(tcp_from.ip()) {
                    match proxied_source(&mut tcp, tcp_from).await {
                        Ok(from) => from,
                        Err(e) => {
                            tracing::warn!(client, from = %tcp_from, port = pl.port, "closed a data connection: {e}");
                            continue;
                        }
                    }
                } else {
                    tcp_from
                };
                if canonical(from.ip()) == canonical(peer.ip()) {
                    no_delay(&tcp);
                    return Some(tcp);
                }
                drop(tcp);
                tracing::warn!(
                    client,
                    from = %from,
                    port = pl.port,
                    "hint: closed a data connection from another address than the client's; a NAT or proxy that \
                     uses several public addresses breaks FTP's data connections (use one outgoing address), \
                     or someone tried to steal a transfer"
                );
            }
            Err(e) if transient(&e) => {
                tracing::debug!(client, "accept on passive port {}: {e}", pl.port);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => {
                tracing::warn!(client, "accept on passive port {} failed: {e}", pl.port);
                return None;
            }
        }
    }
}

/// How long a data connection from a trusted balancer's address is watched for a PROXY header. A balancer
/// sends it as it connects; a TLS client sends its ClientHello at once; only a clear-text download from a
/// client that shares the balancer's address waits this long.
const DATA_HEADER_PEEK: std::time::Duration = std::time::Duration::from_secs(2);

/// The client a data connection from a trusted balancer's address speaks for: the PROXY header's source
/// when the connection starts with one (consumed, so TLS starts right after it), else the connection's own
/// address (a client that shares the balancer's address and connects directly).
async fn proxied_source(tcp: &mut TcpStream, tcp_from: SocketAddr) -> Result<SocketAddr, ProxyError> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(DATA_HEADER_PEEK, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if may_start_header(first[0]) => {}
        Ok(Ok(_)) | Err(_) => return Ok(tcp_from),
        Ok(Err(e)) => return Err(ProxyError::Io(e)),
    }
    match read_header(tcp).await? {
        ProxyHeader::Client { source, .. } => Ok(source),
        ProxyHeader::Local => Ok(tcp_from),
    }
}

/// Active mode: connects to the client within the timeout.
pub(crate) async fn dial_client(local: SocketAddr, target: SocketAddr, client: &str) -> Result<TcpStream, Reply> {
    match tokio::time::timeout(DATA_CONNECT_TIMEOUT, dial(local.ip(), target)).await {
        Err(_) => Err(no_connection()),
        Ok(Ok(tcp)) => {
            no_delay(&tcp);
            Ok(tcp)
        }
        Ok(Err(e)) => {
            tracing::info!(client, target = %target, "active data connection failed: {e}");
            Err(Reply::new(425, format!("Failed to establish data connection: {}", e.kind())))
        }
    }
}

/// Data connections send without Nagle's delay too. Bulk data goes out in large writes anyway, but the
/// small ones (the TLS session ticket, a short file, close_notify) would otherwise wait for the client's
/// delayed ACK: 40 ms per transfer, which made mirroring many small files crawl.
fn no_delay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY on a data connection: {e}");
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
        || e.raw_os_error().is_some_and(|c| c == 24 || c == 23) // EMFILE, ENFILE: try again shortly
}

/// Connects from the control connection's local IP (same family as the target), any port.
async fn dial(local_ip: IpAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let local_ip = canonical(local_ip);
    let socket = if target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if local_ip.is_ipv4() == target.is_ipv4() {
        socket.bind(SocketAddr::new(local_ip, 0))?;
    }
    socket.connect(target).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn bounce_refused() {
        assert!(check_active(sa("10.0.0.5:40000"), sa("10.0.0.5:1234")).is_ok());
        assert!(check_active(sa("10.0.0.5:40000"), sa("[::ffff:10.0.0.5]:1234")).is_ok());
        let r = check_active(sa("10.0.0.6:40000"), sa("10.0.0.5:1234")).expect_err("bounce");
        assert_eq!(r.code, 500);
        assert!(r.text().contains("FTP bounce"));
        assert_eq!(check_active(sa("10.0.0.5:25"), sa("10.0.0.5:1234")).map_err(|r| r.code), Err(501));
        assert_eq!(check_active(sa("10.0.0.5:1023"), sa("10.0.0.5:1234")).map_err(|r| r.code), Err(501));
        assert!(check_active(sa("10.0.0.5:1024"), sa("10.0.0.5:1234")).is_ok(), "1024 is not privileged");
    }

    #[test]
    fn which_accept_errors_are_worth_retrying() {
        use io::ErrorKind as K;
        for kind in [K::ConnectionAborted, K::ConnectionReset, K::Interrupted] {
            assert!(transient(&io::Error::from(kind)), "{kind:?}");
        }
        assert!(transient(&io::Error::from_raw_os_error(24)), "EMFILE: out of file descriptors for a moment");
        assert!(transient(&io::Error::from_raw_os_error(23)), "ENFILE");
        assert!(!transient(&io::Error::from(K::PermissionDenied)));
        assert!(!transient(&io::Error::from_raw_os_error(22)), "EINVAL: the listener is broken");
    }

    #[tokio::test]
    async fn passive_closes_connections_from_another_address_and_waits_for_the_client() {
        let ports = Arc::new(PassivePorts::new((1024, 65535)));
        let l = listen(&ports, "127.0.0.1".parse().expect("ip")).map_err(|r| r.text()).expect("listener");
        let port = l.port;
        let mut w = PassiveWait::start(l, sa("127.0.0.1:1"), "t".into(), None, TrustedProxies::default());
        let thief = TcpSocket::new_v4().expect("socket");
        thief.bind(sa("127.0.0.2:0")).expect("bind 127.0.0.2");
        let mut thief = thief.connect(sa(&format!("127.0.0.1:{port}"))).await.expect("connect");
        let mut b = [0u8; 1];
        let n =
            tokio::time::timeout(std::time::Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut thief, &mut b))
                .await
                .expect("closed in time");
        assert!(matches!(n, Ok(0) | Err(_)), "a data connection from another address was kept");
        let _c = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        assert!(w.accepted(Go { upload: false, tls: None }).await.is_ok());
        match w.ready().await {
            Ok(DataConn::Plain(tcp)) => {
                assert!(tcp.nodelay().expect("nodelay"), "small transfers must not wait for delayed ACKs");
                assert_eq!(tcp.peer_addr().expect("peer").ip(), sa("127.0.0.1:1").ip());
            }
            _ => panic!("no data connection"),
        }
    }

    #[tokio::test]
    async fn a_dropped_passive_wait_gives_its_port_back_at_once() {
        let ports = Arc::new(PassivePorts::new((1024, 65535)));
        let l = listen(&ports, "127.0.0.1".parse().expect("ip")).map_err(|r| r.text()).expect("listener");
        let port = l.port;
        drop(PassiveWait::start(l, sa("127.0.0.1:1"), "t".into(), None, TrustedProxies::default()));
        let free = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            loop {
                if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(free.is_ok(), "passive port {port} still held after its wait was dropped");
    }

    #[tokio::test]
    async fn active_connections_come_from_the_control_connections_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let target = listener.local_addr().expect("addr");
        let (dialed, accepted) = tokio::join!(dial_client(sa("127.0.0.2:21"), target, "t"), listener.accept());
        assert!(dialed.is_ok());
        assert_eq!(accepted.expect("accepted").1.ip(), sa("127.0.0.2:0").ip(), "not from the server's FTP address");
    }

    #[tokio::test]
    async fn passive_accepts_only_the_client() {
        let ports = Arc::new(PassivePorts::new((1024, 65535)));
        let l = listen(&ports, "127.0.0.1".parse().expect("ip")).map_err(|r| r.text()).expect("listener");
        let port = l.port;
        let mut w = PassiveWait::start(l, sa("127.0.0.1:1"), "t".into(), None, TrustedProxies::default());
        let _c = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        assert!(w.accepted(Go { upload: false, tls: None }).await.is_ok());
        assert!(matches!(w.ready().await, Ok(DataConn::Plain(_))));
    }

    #[tokio::test]
    async fn passive_times_out_without_client() {
        tokio::time::pause();
        let ports = Arc::new(PassivePorts::new((1024, 65535)));
        let l = listen(&ports, "127.0.0.1".parse().expect("ip")).map_err(|r| r.text()).expect("listener");
        let mut w = PassiveWait::start(l, sa("127.0.0.1:1"), "t".into(), None, TrustedProxies::default());
        match w.accepted(Go { upload: false, tls: None }).await {
            Err(DataError::NoConnection(r)) => assert_eq!(r.code, 425),
            _ => panic!("expected a timeout"),
        }
    }
}
