//! Data connection addresses: PORT and PASV (RFC 959, IPv4 only), EPRT and EPSV (RFC 2428).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why an address argument was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrError {
    /// Malformed: 501.
    Syntax(&'static str),
    /// EPRT/EPSV with a network protocol other than 1 (IPv4) or 2 (IPv6): 522.
    UnknownProtocol,
}

/// `h1,h2,h3,h4,p1,p2`.
pub fn parse_port(arg: &[u8]) -> Result<SocketAddr, AddrError> {
    let text = std::str::from_utf8(arg).map_err(|_| AddrError::Syntax("PORT needs h1,h2,h3,h4,p1,p2"))?;
    let nums: Vec<u8> = text
        .trim()
        .split(',')
        .map(|p| p.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| AddrError::Syntax("PORT needs six numbers from 0 to 255: h1,h2,h3,h4,p1,p2"))?;
    let [a, b, c, d, p1, p2] = nums[..] else {
        return Err(AddrError::Syntax("PORT needs six numbers from 0 to 255: h1,h2,h3,h4,p1,p2"));
    };
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), u16::from_be_bytes([p1, p2])))
}

/// `<d>proto<d>address<d>port<d>`, where `d` is any printable ASCII character (usually `|`).
pub fn parse_eprt(arg: &[u8]) -> Result<SocketAddr, AddrError> {
    const USAGE: &str = "EPRT needs |protocol|address|port|, e.g. |1|192.0.2.7|50000|";
    let text = std::str::from_utf8(arg).map_err(|_| AddrError::Syntax(USAGE))?.trim();
    let delim = text.chars().next().ok_or(AddrError::Syntax(USAGE))?;
    if !delim.is_ascii_graphic() || delim.is_ascii_alphanumeric() || delim == '.' || delim == ':' {
        return Err(AddrError::Syntax(USAGE));
    }
    let fields: Vec<&str> = text.split(delim).collect();
    // "|1|a|p|" splits into ["", "1", "a", "p", ""].
    let ["", proto, addr, port, ""] = fields[..] else {
        return Err(AddrError::Syntax(USAGE));
    };
    let port: u16 = port.parse().map_err(|_| AddrError::Syntax(USAGE))?;
    let ip: IpAddr = match proto {
        "1" => IpAddr::V4(addr.parse().map_err(|_| AddrError::Syntax("EPRT: not an IPv4 address"))?),
        "2" => IpAddr::V6(addr.parse().map_err(|_| AddrError::Syntax("EPRT: not an IPv6 address"))?),
        _ => return Err(AddrError::UnknownProtocol),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The argument of EPSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    /// No argument: the control connection's protocol.
    Any,
    /// 1 (IPv4) or 2 (IPv6).
    Proto(u8),
    /// `EPSV ALL`: from now on only EPSV sets up data connections.
    All,
}

pub fn parse_epsv(arg: Option<&[u8]>) -> Result<EpsvArg, AddrError> {
    match arg.map(|a| a.trim_ascii()) {
        None | Some(b"") => Ok(EpsvArg::Any),
        Some(a) if a.eq_ignore_ascii_case(b"ALL") => Ok(EpsvArg::All),
        Some(b"1") => Ok(EpsvArg::Proto(1)),
        Some(b"2") => Ok(EpsvArg::Proto(2)),
        Some(a) if a.iter().all(u8::is_ascii_digit) => Err(AddrError::UnknownProtocol),
        Some(_) => Err(AddrError::Syntax("EPSV takes no argument, a protocol number (1 or 2), or ALL")),
    }
}

/// The text of a 227 reply.
pub fn format_pasv(ip: Ipv4Addr, port: u16) -> String {
    let [a, b, c, d] = ip.octets();
    let [p1, p2] = port.to_be_bytes();
    format!("Entering Passive Mode ({a},{b},{c},{d},{p1},{p2}).")
}

/// The text of a 229 reply.
pub fn format_epsv(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

/// The address with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into IPv4, so that a dual-stack
/// listener's peers compare equal to what they announce in PORT.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn port() {
        assert_eq!(parse_port(b"127,0,0,1,195,80"), Ok(sa("127.0.0.1:50000")));
        assert_eq!(parse_port(b" 10,1,2,3,0,21 "), Ok(sa("10.1.2.3:21")));
        for bad in [&b""[..], b"1,2,3,4,5", b"1,2,3,4,5,6,7", b"256,0,0,1,1,1", b"a,b,c,d,e,f", b"1,2,3,4,-1,2"] {
            assert!(parse_port(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn eprt() {
        assert_eq!(parse_eprt(b"|1|132.235.1.2|6275|"), Ok(sa("132.235.1.2:6275")));
        assert_eq!(parse_eprt(b"|2|1080::8:800:200C:417A|5282|"), Ok(sa("[1080::8:800:200C:417A]:5282")));
        assert_eq!(parse_eprt(b"!1!10.0.0.1!21!"), Ok(sa("10.0.0.1:21")));
        assert_eq!(parse_eprt(b"|3|x|1|"), Err(AddrError::UnknownProtocol));
        for bad in [&b""[..], b"|1|10.0.0.1|21", b"|1|::1|21|", b"|2|10.0.0.1|21|", b"|1|10.0.0.1|70000|", b"1.1.1.1"] {
            assert!(matches!(parse_eprt(bad), Err(AddrError::Syntax(_))), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn epsv() {
        assert_eq!(parse_epsv(None), Ok(EpsvArg::Any));
        assert_eq!(parse_epsv(Some(b"all")), Ok(EpsvArg::All));
        assert_eq!(parse_epsv(Some(b"2")), Ok(EpsvArg::Proto(2)));
        assert_eq!(parse_epsv(Some(b"3")), Err(AddrError::UnknownProtocol));
        assert!(matches!(parse_epsv(Some(b"x")), Err(AddrError::Syntax(_))));
    }

    #[test]
    fn formats() {
        assert_eq!(format_pasv(Ipv4Addr::new(192, 0, 2, 7), 50000), "Entering Passive Mode (192,0,2,7,195,80).");
        assert_eq!(format_epsv(50001), "Entering Extended Passive Mode (|||50001|)");
        assert_eq!(canonical("::ffff:10.0.0.1".parse().expect("ip")), "10.0.0.1".parse::<IpAddr>().expect("ip"));
    }
}
