use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A protocol a listener can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Sftp,
    /// Explicit FTPS: plain greeting, then AUTH TLS.
    Ftps,
    /// Implicit FTPS: TLS from the first byte.
    FtpsImplicit,
    /// Plain FTP with no TLS: credentials in clear text, only when an admin asks for it.
    Ftp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Sftp => "sftp",
            Protocol::Ftps => "ftps",
            Protocol::FtpsImplicit => "ftps-implicit",
            Protocol::Ftp => "ftp",
        }
    }

    /// Whether the protocol starts with TLS, FTP-style, or SSH: what a listener must be able to tell apart
    /// to serve several on one port.
    pub fn is_ftp(self) -> bool {
        matches!(self, Protocol::Ftps | Protocol::FtpsImplicit | Protocol::Ftp)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A listener: one address and the protocols it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub protocols: Vec<Protocol>,
    pub addr: SocketAddr,
    /// Connections arrive through a load balancer that sends a PROXY protocol header (v1 or v2) first;
    /// only `[server] trusted_proxies` may connect, and the client address in the header is the one used.
    pub proxy_protocol: bool,
}

impl ListenerSpec {
    pub fn new(protocols: Vec<Protocol>, addr: SocketAddr) -> ListenerSpec {
        ListenerSpec { protocols, addr, proxy_protocol: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// Parses a protocol list such as `sftp`, `sftp,ftps` or `any`.
pub fn parse_protocols(list: &str) -> Result<Vec<Protocol>, SpecError> {
    let mut out = Vec::new();
    for word in list.split(',').map(str::trim) {
        let ps: &[Protocol] = match word {
            "sftp" => &[Protocol::Sftp],
            "ftps" => &[Protocol::Ftps],
            "ftps-implicit" => &[Protocol::FtpsImplicit],
            "ftp" => &[Protocol::Ftp],
            "any" => &[Protocol::Sftp, Protocol::Ftps, Protocol::FtpsImplicit],
            other => {
                return Err(SpecError(format!(
                    "unknown protocol {other:?}: use sftp, ftps, ftps-implicit, ftp or any (comma-separated)"
                )))
            }
        };
        for p in ps {
            if !out.contains(p) {
                out.push(*p);
            }
        }
    }
    out.sort();
    Ok(out)
}

impl FromStr for ListenerSpec {
    type Err = SpecError;

    /// `PROTOCOLS=ADDR`, for example `sftp=127.0.0.1:2300` or `any=[::]:2222`.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let (protos, addr) = s.split_once('=').ok_or_else(|| {
            SpecError(format!("listener {s:?} must look like PROTOCOLS=ADDRESS:PORT, e.g. sftp=0.0.0.0:2222"))
        })?;
        let protocols = parse_protocols(protos)?;
        let addr = addr.parse().map_err(|_| {
            SpecError(format!("{addr:?} is not an address with a port, e.g. 0.0.0.0:2222 or [::]:2222"))
        })?;
        Ok(ListenerSpec::new(protocols, addr))
    }
}

impl fmt::Display for ListenerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.protocols.iter().map(|p| p.name()).collect();
        write!(f, "{}={}", names.join(","), self.addr)?;
        if self.proxy_protocol {
            f.write_str(" (PROXY protocol)")?;
        }
        Ok(())
    }
}

/// An inclusive port range such as `50000-51000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = || SpecError(format!("{s:?} is not a port range like 50000-51000 (low-high, 1-65535)"));
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_specs() {
        let l: ListenerSpec = "sftp=127.0.0.1:2300".parse().expect("ok");
        assert_eq!(l.protocols, vec![Protocol::Sftp]);
        assert_eq!(l.addr.port(), 2300);
        let l: ListenerSpec = "any=[::1]:0".parse().expect("ok");
        assert_eq!(l.protocols, vec![Protocol::Sftp, Protocol::Ftps, Protocol::FtpsImplicit]);
        let l: ListenerSpec = "ftps, sftp=0.0.0.0:21".parse().expect("ok");
        assert_eq!(l.to_string(), "sftp,ftps=0.0.0.0:21");
        assert!("sftp".parse::<ListenerSpec>().is_err());
        assert!("scp=1.2.3.4:22".parse::<ListenerSpec>().is_err());
        assert!("sftp=localhost".parse::<ListenerSpec>().is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!("50000-51000".parse(), Ok(PortRange { first: 50000, last: 51000 }));
        assert!("51000-50000".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("5".parse::<PortRange>().is_err());
        // One port is a range too (a firewall that opens exactly one passive port).
        assert_eq!("2121-2121".parse(), Ok(PortRange { first: 2121, last: 2121 }));
        let r: PortRange = " 40000 - 40099 ".parse().expect("spaces around the numbers");
        assert_eq!(r.to_string(), "40000-40099", "printed as `passive ports 40000-40099` and in firewall rules");
    }

    #[test]
    fn which_protocols_need_ftp_and_how_they_are_named() {
        // `serve` makes a TLS certificate (and `config check` inspects it) exactly when an FTP protocol is served.
        assert!(!Protocol::Sftp.is_ftp());
        assert!(Protocol::Ftps.is_ftp() && Protocol::FtpsImplicit.is_ftp() && Protocol::Ftp.is_ftp());
        // `listening ftps-implicit on ...`: the names scripts read from stdout.
        let shown: Vec<String> = [Protocol::Sftp, Protocol::Ftps, Protocol::FtpsImplicit, Protocol::Ftp]
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(shown, ["sftp", "ftps", "ftps-implicit", "ftp"]);
        let e = "gopher=0.0.0.0:70".parse::<ListenerSpec>().expect_err("unknown protocol");
        assert!(e.to_string().starts_with("unknown protocol \"gopher\""), "{e}");
    }
}
