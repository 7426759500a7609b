//! Address ranges, for account rules (`--allow-from`) and the defender's safelist.

use std::net::IpAddr;

/// An address range, `203.0.113.0/24` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not an address or CIDR range"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{text:?}: bad prefix length"))?
            }
            None => max,
        };
        Ok(Cidr { net, prefix })
    }

    pub fn is_ipv6(&self) -> bool {
        self.net.is_ipv6()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("203.0.113.0/24").expect("ok");
        assert!(c.contains("203.0.113.9".parse().expect("ip")));
        assert!(c.contains("::ffff:203.0.113.9".parse().expect("ip")));
        assert!(!c.contains("203.0.114.9".parse().expect("ip")));
        assert!(Cidr::parse("10.1.2.3").expect("ok").contains("10.1.2.3".parse().expect("ip")));
        assert!(Cidr::parse("0.0.0.0/0").expect("ok").contains("8.8.8.8".parse().expect("ip")));
        assert!(Cidr::parse("2001:db8::/32").expect("ok").contains("2001:db8:1::5".parse().expect("ip")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }
}
