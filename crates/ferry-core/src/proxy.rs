//! The PROXY protocol (v1 text and v2 binary, as HAProxy defines them): a load balancer in front of Ferry
//! sends one header at the start of each connection naming the real client, and that address is the one
//! Ferry uses for logs, limits, bans, `--allow-from` and the FTP data-connection checks.
//!
//! The header is read exactly, byte for byte where it has no length field, so the stream after it is the
//! plain socket again: no buffered bytes to replay into SSH, TLS or an FTP data connection. Parsing is the
//! `ppp` crate's.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ferry_config::Cidr;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 header's first twelve bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// What a v2 header may carry after its fixed part: addresses and TLVs (HAProxy's TLS and unique-id TLVs
/// fit many times over). Anything longer is refused rather than buffered.
const V2_MAX_PAYLOAD: usize = 4096;
/// How long a trusted balancer gets to send the header: it sends it as soon as it connects.
pub const HEADER_WAIT: Duration = Duration::from_secs(5);

/// Who may send a PROXY header (`[server] trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(list: Vec<Cidr>) -> TrustedProxies {
        TrustedProxies(list)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The balancer relays a client: its address, and the address it connected to.
    Client { source: SocketAddr, destination: SocketAddr },
    /// The balancer speaks for itself (a v2 `LOCAL` health check) or does not know the client (v1
    /// `UNKNOWN`): the connection's own address stands.
    Local,
}

/// A connection that should have started with a header and did not, or sent a broken one.
#[derive(Debug)]
pub enum ProxyError {
    Io(std::io::Error),
    /// Not a header at all: the balancer does not send one (HAProxy needs `send-proxy-v2` on the server
    /// line), or something that is not the balancer is connecting.
    NotAHeader,
    Malformed(String),
    TimedOut,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Io(e) => write!(f, "connection failed while reading the PROXY header: {e}"),
            ProxyError::NotAHeader => f.write_str(
                "the connection did not start with a PROXY protocol header (HAProxy: add send-proxy-v2 to the server line)",
            ),
            ProxyError::Malformed(why) => write!(f, "malformed PROXY protocol header: {why}"),
            ProxyError::TimedOut => {
                write!(f, "no PROXY protocol header within {}s", HEADER_WAIT.as_secs())
            }
        }
    }
}

impl std::error::Error for ProxyError {}

impl From<std::io::Error> for ProxyError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProxyError::Malformed("the connection closed inside the header".into())
        } else {
            ProxyError::Io(e)
        }
    }
}

/// Whether a connection's first byte can start a header (`P` of v1's `PROXY `, `\r` of v2's signature).
/// TLS (0x16) and SSH (`S`) cannot, so a data connection can be told apart by one peeked byte.
pub fn may_start_header(first: u8) -> bool {
    first == b'P' || first == b'\r'
}

/// Reads one header from the start of `r` within [`HEADER_WAIT`], consuming exactly its bytes.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<ProxyHeader, ProxyError> {
    match tokio::time::timeout(HEADER_WAIT, read_exact_header(r)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::TimedOut),
    }
}

async fn read_exact_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<ProxyHeader, ProxyError> {
    // 15 bytes is the shortest header there is (`PROXY UNKNOWN\r\n`), so reading them never takes bytes
    // that belong to the client.
    let mut buf = vec![0u8; 15];
    r.read_exact(&mut buf).await?;
    if buf.starts_with(b"PROXY ") {
        // v1 has no length field: one byte at a time up to the CRLF (once per connection, at most 107).
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(ProxyError::Malformed(format!("a v1 header longer than {V1_MAX} bytes")));
            }
            buf.push(r.read_u8().await?);
        }
        return parse(&buf);
    }
    if buf.starts_with(V2_SIGNATURE) {
        buf.push(r.read_u8().await?);
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > V2_MAX_PAYLOAD {
            return Err(ProxyError::Malformed(format!("a v2 header announcing {len} bytes")));
        }
        let start = buf.len();
        buf.resize(start + len, 0);
        r.read_exact(&mut buf[start..]).await?;
        return parse(&buf);
    }
    Err(ProxyError::NotAHeader)
}

/// Parses one complete header (v1 or v2).
pub fn parse(bytes: &[u8]) -> Result<ProxyHeader, ProxyError> {
    if bytes.starts_with(V2_SIGNATURE) {
        let h = ppp::v2::Header::try_from(bytes).map_err(|e| ProxyError::Malformed(e.to_string()))?;
        if h.command == ppp::v2::Command::Local {
            return Ok(ProxyHeader::Local);
        }
        return Ok(match h.addresses {
            ppp::v2::Addresses::IPv4(a) => ProxyHeader::Client {
                source: SocketAddr::new(a.source_address.into(), a.source_port),
                destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
            },
            ppp::v2::Addresses::IPv6(a) => ProxyHeader::Client {
                source: SocketAddr::new(a.source_address.into(), a.source_port),
                destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
            },
            // A UNIX socket or an unspecified family names no client Ferry can use.
            _ => ProxyHeader::Local,
        });
    }
    let h = ppp::v1::Header::try_from(bytes).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    Ok(match h.addresses {
        ppp::v1::Addresses::Tcp4(a) => ProxyHeader::Client {
            source: SocketAddr::new(a.source_address.into(), a.source_port),
            destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
        },
        ppp::v1::Addresses::Tcp6(a) => ProxyHeader::Client {
            source: SocketAddr::new(a.source_address.into(), a.source_port),
            destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
        },
        ppp::v1::Addresses::Unknown => ProxyHeader::Local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn v2(source: &str, destination: &str) -> Vec<u8> {
        let addrs: ppp::v2::Addresses = (sa(source), sa(destination)).into();
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            addrs,
        )
        .build()
        .expect("header")
    }

    async fn read_then_rest(input: &[u8]) -> (Result<ProxyHeader, ProxyError>, Vec<u8>) {
        let mut r = input;
        let h = read_header(&mut r).await;
        (h, r.to_vec())
    }

    #[tokio::test]
    async fn v1_headers_leave_the_clients_bytes_untouched() {
        let (h, rest) = read_then_rest(b"PROXY TCP4 203.0.113.9 10.0.0.21 51234 2222\r\nSSH-2.0-OpenSSH_9.2\r\n").await;
        assert_eq!(
            h.expect("parsed"),
            ProxyHeader::Client { source: sa("203.0.113.9:51234"), destination: sa("10.0.0.21:2222") }
        );
        assert_eq!(rest, b"SSH-2.0-OpenSSH_9.2\r\n", "not one byte of the client's taken");
        let (h, rest) = read_then_rest(b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 21\r\n").await;
        assert_eq!(
            h.expect("v6"),
            ProxyHeader::Client { source: sa("[2001:db8::7]:4000"), destination: sa("[2001:db8::1]:21") }
        );
        assert!(rest.is_empty());
        let (h, rest) = read_then_rest(b"PROXY UNKNOWN\r\nX").await;
        assert_eq!((h.expect("unknown"), rest), (ProxyHeader::Local, b"X".to_vec()));
    }

    #[tokio::test]
    async fn v2_headers_leave_the_clients_bytes_untouched() {
        let mut input = v2("198.51.100.4:40000", "127.0.0.1:990");
        input.extend_from_slice(&[0x16, 0x03, 0x01]);
        let (h, rest) = read_then_rest(&input).await;
        assert_eq!(
            h.expect("v2"),
            ProxyHeader::Client { source: sa("198.51.100.4:40000"), destination: sa("127.0.0.1:990") }
        );
        assert_eq!(rest, [0x16, 0x03, 0x01], "the ClientHello that follows is the TLS server's to read");
        // HAProxy's health checks (check-send-proxy) say LOCAL: the balancer itself.
        let local = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .expect("header");
        assert_eq!(read_then_rest(&local).await.0.expect("local"), ProxyHeader::Local);
    }

    #[tokio::test]
    async fn v2_carries_ipv6_clients_and_payloads_up_to_the_bound() {
        let (h, rest) = read_then_rest(&v2("[2001:db8::7]:4000", "[2001:db8::1]:22")).await;
        assert_eq!(
            h.expect("v6"),
            ProxyHeader::Client { source: sa("[2001:db8::7]:4000"), destination: sa("[2001:db8::1]:22") }
        );
        assert!(rest.is_empty());
        // Padded with a NOOP TLV to exactly the largest payload read.
        let mut full = v2("198.51.100.4:40000", "127.0.0.1:990");
        let pad = V2_MAX_PAYLOAD - (full.len() - 16) - 3;
        full.push(0x04);
        full.extend_from_slice(&(pad as u16).to_be_bytes());
        full.resize(16 + V2_MAX_PAYLOAD, 0);
        full[14..16].copy_from_slice(&(V2_MAX_PAYLOAD as u16).to_be_bytes());
        full.push(b'X');
        let (h, rest) = read_then_rest(&full).await;
        assert!(matches!(h, Ok(ProxyHeader::Client { source, .. }) if source == sa("198.51.100.4:40000")), "{h:?}");
        assert_eq!(rest, b"X");
    }

    #[test]
    fn refusals_say_what_was_wrong_and_what_to_change() {
        assert_eq!(
            ProxyError::NotAHeader.to_string(),
            "the connection did not start with a PROXY protocol header (HAProxy: add send-proxy-v2 to the server line)"
        );
        assert_eq!(ProxyError::Malformed("x".into()).to_string(), "malformed PROXY protocol header: x");
        assert_eq!(
            ProxyError::TimedOut.to_string(),
            format!("no PROXY protocol header within {}s", HEADER_WAIT.as_secs())
        );
        let io = ProxyError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(io.to_string().starts_with("connection failed while reading the PROXY header: "), "{io}");
    }

    #[tokio::test]
    async fn what_is_not_a_header_is_refused() {
        // A balancer without send-proxy: the client's own first bytes.
        assert!(matches!(read_then_rest(b"SSH-2.0-OpenSSH_9.2\r\n").await.0, Err(ProxyError::NotAHeader)));
        assert!(matches!(read_then_rest(b"PROXY TCP4 1.2.3.4\r\n").await.0, Err(ProxyError::Malformed(_))));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(matches!(read_then_rest(long.as_bytes()).await.0, Err(ProxyError::Malformed(_))), "bounded");
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(read_then_rest(&huge).await.0, Err(ProxyError::Malformed(_))), "64 KiB not buffered");
        assert!(matches!(read_then_rest(b"PROXY TCP4 1.2.").await.0, Err(ProxyError::Malformed(_))), "cut short");
        let mut garbled = v2("198.51.100.4:40000", "127.0.0.1:990");
        garbled[12] = 0x31; // version 3
        assert!(matches!(read_then_rest(&garbled).await.0, Err(ProxyError::Malformed(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out() {
        let (_client, mut server) = tokio::io::duplex(64);
        assert!(matches!(read_header(&mut server).await, Err(ProxyError::TimedOut)));
    }

    #[test]
    fn one_byte_tells_a_header_from_tls_and_ssh() {
        assert!(may_start_header(b'P') && may_start_header(b'\r'));
        assert!(!may_start_header(0x16) && !may_start_header(b'S'));
        let t = TrustedProxies::new(vec![Cidr::parse("10.0.0.0/8").expect("cidr")]);
        assert!(t.trusts("10.9.8.7".parse().expect("ip")) && !t.trusts("11.0.0.1".parse().expect("ip")));
        assert!(!TrustedProxies::default().trusts("127.0.0.1".parse().expect("ip")));
    }
}
