//! `ferry firewall`: the rules a configuration needs, printed for iptables, nftables or ufw. It reads the
//! same `--config`, `--listen` and `--passive-ports` as `serve`, so it describes exactly what `serve`
//! with those options opens.

use std::net::SocketAddr;

use ferry_config::{Cidr, Config, PortRange, Protocol};

use crate::cli::{FirewallArgs, FirewallFormat, GlobalArgs};
use crate::CliError;

/// One port (or range) to open, with what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Opening {
    /// None: any local address.
    addr: Option<std::net::IpAddr>,
    first: u16,
    last: u16,
    ipv6: bool,
    /// Who may connect: empty for anyone; the trusted balancers for a `proxy_protocol` listener, which
    /// refuses everyone else anyway (the firewall then keeps them from even reaching it).
    from: Vec<Cidr>,
    what: String,
}

impl Opening {
    /// One rule per allowed source range, or one rule for anyone (`None`).
    fn sources(&self) -> Vec<Option<Cidr>> {
        if self.from.is_empty() {
            vec![None]
        } else {
            self.from.iter().copied().map(Some).collect()
        }
    }

    /// The port, or the range joined by `sep` (iptables and ufw want `:`, nftables `-`).
    fn ports(&self, sep: char) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}{sep}{}", self.first, self.last)
        }
    }
}

fn describe(protocols: &[Protocol]) -> String {
    let names: Vec<&str> = protocols
        .iter()
        .map(|p| match p {
            Protocol::Sftp => "SFTP (SSH)",
            Protocol::Ftps => "explicit FTPS (AUTH TLS)",
            Protocol::FtpsImplicit => "implicit FTPS",
            Protocol::Ftp => "plain FTP",
        })
        .collect();
    names.join(" + ")
}

fn openings(config: &Config) -> Vec<Opening> {
    let mut out = Vec::new();
    let mut ftp_addrs: Vec<SocketAddr> = Vec::new();
    for l in &config.server.listeners {
        let ip = l.addr.ip();
        out.push(Opening {
            addr: (!ip.is_unspecified()).then_some(ip),
            first: l.addr.port(),
            last: l.addr.port(),
            ipv6: ip.is_ipv6(),
            from: if l.proxy_protocol {
                // Only the balancers of the listener's own family can reach it.
                config.server.trusted_proxies.iter().filter(|c| c.is_ipv6() == ip.is_ipv6()).copied().collect()
            } else {
                Vec::new()
            },
            what: if l.proxy_protocol {
                format!("Ferry {} on {}, through the load balancer (PROXY protocol)", describe(&l.protocols), l.addr)
            } else {
                format!("Ferry {} on {}", describe(&l.protocols), l.addr)
            },
        });
        if l.protocols.iter().any(|p| p.is_ftp()) {
            ftp_addrs.push(l.addr);
        }
    }
    // Passive data connections arrive on the address of the control connection, for each family used.
    let PortRange { first, last } = config.server.passive_ports;
    for ipv6 in [false, true] {
        let family: Vec<&SocketAddr> = ftp_addrs.iter().filter(|a| a.is_ipv6() == ipv6).collect();
        if family.is_empty() {
            continue;
        }
        let addr = match family.as_slice() {
            [one] if !one.ip().is_unspecified() => Some(one.ip()),
            _ => None,
        };
        out.push(Opening {
            addr,
            first,
            last,
            ipv6,
            from: Vec::new(),
            what: format!("Ferry FTPS passive data connections ({first}-{last})"),
        });
    }
    out
}

fn render(openings: &[Opening], format: FirewallFormat) -> String {
    let mut s = String::new();
    match format {
        FirewallFormat::Iptables => {
            s.push_str("# Ferry: rules for iptables (ip6tables for IPv6 listeners); run as root.\n");
            for o in openings {
                let cmd = if o.ipv6 { "ip6tables" } else { "iptables" };
                let dest = o.addr.map(|a| format!(" -d {a}")).unwrap_or_default();
                let port = o.ports(':');
                s.push_str(&format!("# {}\n", o.what));
                for src in o.sources() {
                    let src = src.map(|c| format!(" -s {c}")).unwrap_or_default();
                    s.push_str(&format!(
                        "{cmd} -A INPUT -p tcp{src}{dest} --dport {port} -m conntrack --ctstate NEW -j ACCEPT -m comment --comment \"{}\"\n",
                        o.what.replace('"', "'")
                    ));
                }
            }
        }
        FirewallFormat::Nftables => {
            s.push_str("# Ferry: rules for nftables, added to the usual `inet filter input` chain; run as root.\n");
            for o in openings {
                let dest = match o.addr {
                    Some(a) if a.is_ipv6() => format!("ip6 daddr {a} "),
                    Some(a) => format!("ip daddr {a} "),
                    None => String::new(),
                };
                let port = o.ports('-');
                for src in o.sources() {
                    let src = match src {
                        Some(c) if c.is_ipv6() => format!("ip6 saddr {c} "),
                        Some(c) => format!("ip saddr {c} "),
                        None => String::new(),
                    };
                    s.push_str(&format!(
                        "nft add rule inet filter input {src}{dest}tcp dport {port} ct state new accept comment \"{}\"\n",
                        o.what.replace('"', "'")
                    ));
                }
            }
        }
        FirewallFormat::Ufw => {
            s.push_str("# Ferry: rules for ufw; run as root.\n");
            for o in openings {
                let to = o.addr.map(|a| a.to_string()).unwrap_or_else(|| "any".into());
                let port = o.ports(':');
                for src in o.sources() {
                    let src = src.map(|c| format!("from {c} ")).unwrap_or_default();
                    s.push_str(&format!(
                        "ufw allow proto tcp {src}to {to} port {port} comment '{}'\n",
                        o.what.replace('\'', "")
                    ));
                }
            }
        }
    }
    s
}

pub fn run(global: &GlobalArgs, args: &FirewallArgs) -> Result<(), CliError> {
    let env = crate::bootstrap::load(global)?;
    let config = crate::serve::settle(env.config, &args.serve)?;
    print!("{}", render(&openings(&config), args.format));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_config::ListenerSpec;

    fn config(listeners: &[&str]) -> Config {
        let mut c = Config::default();
        c.server.listeners = listeners.iter().map(|l| l.parse::<ListenerSpec>().expect("spec")).collect();
        c
    }

    #[test]
    fn default_config_opens_three_ports_and_the_passive_range() {
        let text = render(&openings(&Config::default()), FirewallFormat::Iptables);
        for needle in ["--dport 2222 ", "--dport 2121 ", "--dport 9990 ", "--dport 50000:51000 ", "implicit FTPS"] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
    }

    #[test]
    fn sftp_only_has_no_passive_range() {
        let text = render(&openings(&config(&["sftp=192.0.2.1:22"])), FirewallFormat::Nftables);
        assert!(text.contains("ip daddr 192.0.2.1 tcp dport 22 ct state new accept"), "{text}");
        assert!(!text.contains("passive"), "{text}");
    }

    #[test]
    fn ipv6_and_ufw() {
        let text = render(&openings(&config(&["ftps=[::]:21"])), FirewallFormat::Ufw);
        assert!(text.contains("ufw allow proto tcp to any port 21 "), "{text}");
        assert!(text.contains("port 50000:51000 "), "{text}");
        let text = render(&openings(&config(&["ftps=[::]:21"])), FirewallFormat::Iptables);
        assert!(text.contains("ip6tables -A INPUT -p tcp --dport 21 "), "{text}");
    }

    #[test]
    fn proxy_listeners_are_opened_to_the_balancers_only() {
        let mut c = config(&["sftp=10.0.0.21:2222", "ftps=10.0.0.21:2121"]);
        c.server.listeners[0].proxy_protocol = true;
        c.server.trusted_proxies =
            vec![Cidr::parse("10.0.0.5").expect("cidr"), Cidr::parse("10.0.1.0/24").expect("cidr")];
        let text = render(&openings(&c), FirewallFormat::Iptables);
        assert!(text.contains("iptables -A INPUT -p tcp -s 10.0.0.5/32 -d 10.0.0.21 --dport 2222 "), "{text}");
        assert!(text.contains("iptables -A INPUT -p tcp -s 10.0.1.0/24 -d 10.0.0.21 --dport 2222 "), "{text}");
        assert!(
            text.contains("iptables -A INPUT -p tcp -d 10.0.0.21 --dport 2121 "),
            "a direct listener: anyone\n{text}"
        );
        let text = render(&openings(&c), FirewallFormat::Nftables);
        assert!(text.contains("ip saddr 10.0.0.5/32 ip daddr 10.0.0.21 tcp dport 2222 "), "{text}");
        let text = render(&openings(&c), FirewallFormat::Ufw);
        assert!(text.contains("ufw allow proto tcp from 10.0.1.0/24 to 10.0.0.21 port 2222 "), "{text}");
        assert!(text.contains("ufw allow proto tcp to 10.0.0.21 port 2121 "), "{text}");
    }
}
