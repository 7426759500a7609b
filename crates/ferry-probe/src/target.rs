//! What the user typed: `HOST[:PORT]`, `[IPv6]:PORT`, or a bare IPv6 address.

use std::fmt;

/// The ports probed when a target names none: SSH/SFTP, FTP (explicit FTPS), implicit FTPS.
pub const DEFAULT_PORTS: [u16; 3] = [22, 21, 990];

/// The longest host name DNS allows (RFC 1035), so garbage is refused before it reaches the resolver.
const MAX_HOST_LEN: usize = 253;

/// One `HOST[:PORT]` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A name or an IP address, IPv6 without brackets.
    pub host: String,
    /// `None`: probe [`DEFAULT_PORTS`].
    pub port: Option<u16>,
}

/// Why an argument is not a target; the message is meant for the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError(String);

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// Parses `host`, `host:port`, `[::1]:22`, `[::1]` or `::1` (a bare IPv6 address has no port,
    /// since its last `:` is part of the address).
    pub fn parse(s: &str) -> Result<Target, TargetError> {
        let bad = |why: &str| TargetError(format!("`{s}` is not HOST[:PORT]: {why}"));
        let s = s.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("`[` without `]`"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("brackets are only for IPv6 addresses"));
            }
            match after {
                "" => (host, None),
                _ => {
                    let port = after.strip_prefix(':').ok_or_else(|| bad("expected `:PORT` after `]`"))?;
                    (host, Some(port))
                }
            }
        } else if s.matches(':').count() > 1 {
            // Several colons without brackets: only a whole IPv6 address makes sense.
            if s.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("write an IPv6 address with a port as [ADDR]:PORT"));
            }
            (s, None)
        } else {
            match s.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.len() > MAX_HOST_LEN {
            return Err(bad("host name too long"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '@') {
            return Err(bad("the host contains a character no host name has"));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
                Ok(n) => Some(n),
            },
        };
        Ok(Target { host: host.to_string(), port })
    }

    /// The ports to probe: the one given, or [`DEFAULT_PORTS`].
    pub fn ports(&self) -> Vec<u16> {
        match self.port {
            Some(p) => vec![p],
            None => DEFAULT_PORTS.to_vec(),
        }
    }
}

/// `host:port` as a user would type it back (brackets around IPv6).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => f.write_str(&host_port(&self.host, p)),
            None if self.host.contains(':') => write!(f, "[{}]", self.host),
            None => f.write_str(&self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, Option<u16>) {
        match Target::parse(s) {
            Ok(t) => (t.host, t.port),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn host_and_port_forms() {
        assert_eq!(ok("example.com"), ("example.com".into(), None));
        assert_eq!(ok("example.com:2222"), ("example.com".into(), Some(2222)));
        assert_eq!(ok("127.0.0.1:21"), ("127.0.0.1".into(), Some(21)));
        assert_eq!(ok("[::1]:22"), ("::1".into(), Some(22)));
        assert_eq!(ok("[::1]"), ("::1".into(), None));
        assert_eq!(ok("::1"), ("::1".into(), None));
        assert_eq!(ok("fe80::1:2"), ("fe80::1:2".into(), None));
        assert_eq!(ok("  host:990 "), ("host".into(), Some(990)));
    }

    #[test]
    fn refuses_what_is_not_a_target() {
        for s in [
            "",
            ":22",
            "host:",
            "host:0",
            "host:65536",
            "host:ssh",
            "[::1",
            "[::1]x",
            "[host]:22",
            "a:b:c",
            "user@host",
            "ho st",
            "[::1]:",
        ] {
            assert!(Target::parse(s).is_err(), "{s:?} parsed");
        }
        let long = "a".repeat(300);
        assert!(Target::parse(&long).is_err());
    }

    #[test]
    fn default_ports_and_display() {
        let t = Target::parse("h").expect("parse");
        assert_eq!(t.ports(), vec![22, 21, 990]);
        assert_eq!(t.to_string(), "h");
        let t = Target::parse("[::1]:2222").expect("parse");
        assert_eq!(t.ports(), vec![2222]);
        assert_eq!(t.to_string(), "[::1]:2222");
        assert_eq!(host_port("10.0.0.1", 21), "10.0.0.1:21");
    }
}
