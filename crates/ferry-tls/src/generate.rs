//! The self-signed certificate Ferry makes when the config names none: for the machine's host name (the
//! subject), `localhost`, 127.0.0.1, ::1, the listeners' addresses and `[ftps] names`; valid for one year
//! (what browsers and sslyze's Mozilla profile accept, 366 days at most); made again when fewer than
//! [`RENEW_BEFORE_DAYS`] days remain or when it does not name everything it should.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::TlsError;

/// How long a generated certificate is valid.
pub const VALIDITY_DAYS: i64 = 365;
/// A generated certificate with fewer days left than this is made again at start.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// Clients and sslyze refuse certificates valid for longer than this (CA/Browser Forum: 398).
const LONGEST_ACCEPTED_DAYS: i64 = 366;
/// Allowance for clocks that run behind: the certificate starts this long before it is made.
const BACKDATE: Duration = Duration::from_secs(3600);
const DAY: i64 = 86_400;

/// What a generated certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertNames {
    /// The subject's common name: the host name.
    pub common_name: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl CertNames {
    /// `host_name` (when it is a usable DNS name), `localhost`, the loopback addresses, each listener
    /// address that is not 0.0.0.0 or `::`, and the configured `extra` names (DNS names or addresses).
    pub fn new(host_name: Option<&str>, listener_ips: impl IntoIterator<Item = IpAddr>, extra: &[String]) -> Self {
        let host = host_name.map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase()).filter(|h| usable_dns(h));
        let mut names = CertNames {
            common_name: host.clone().unwrap_or_else(|| "localhost".into()),
            dns: Vec::new(),
            ips: Vec::new(),
        };
        let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
        for ip in loopback.into_iter().chain(listener_ips.into_iter().filter(|ip| !ip.is_unspecified())) {
            names.add_ip(ip);
        }
        for name in host.into_iter().chain(["localhost".to_string()]) {
            names.add_dns(name);
        }
        for name in extra {
            match name.parse::<IpAddr>() {
                Ok(ip) => names.add_ip(ip),
                Err(_) => names.add_dns(name.to_ascii_lowercase()),
            }
        }
        names
    }

    /// [`CertNames::new`] with this machine's host name.
    pub fn of_this_machine(listener_ips: impl IntoIterator<Item = IpAddr>, extra: &[String]) -> Self {
        Self::new(host_name().as_deref(), listener_ips, extra)
    }

    fn add_dns(&mut self, name: String) {
        if !self.dns.contains(&name) {
            self.dns.push(name);
        }
    }

    fn add_ip(&mut self, ip: IpAddr) {
        // An IPv4-mapped listener address ([::ffff:192.0.2.7]) is reached as the IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// `DNS:name` and `IP:address`, as certificate viewers show subject alternative names.
    pub fn sans(&self) -> Vec<String> {
        self.dns.iter().map(|d| format!("DNS:{d}")).chain(self.ips.iter().map(|ip| format!("IP:{ip}"))).collect()
    }
}

/// The machine's host name (`uname -n`).
pub fn host_name() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_str().ok()?.trim();
    (!name.is_empty() && name != "(none)").then(|| name.to_string())
}

/// Letters, digits, `-` and `.`: what rcgen writes and every client parses.
fn usable_dns(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// A new ECDSA P-256 key and a certificate for `names`, valid from `now` for a year, as PEM.
pub(crate) fn make(names: &CertNames, now: SystemTime) -> Result<(String, String), TlsError> {
    let failed = |e: rcgen::Error| TlsError::new(format!("generating a self-signed certificate: {e}"));
    let key = KeyPair::generate().map_err(failed)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, names.common_name.clone());
    for dns in &names.dns {
        params.subject_alt_names.push(SanType::DnsName(dns.clone().try_into().map_err(failed)?));
    }
    params.subject_alt_names.extend(names.ips.iter().copied().map(SanType::IpAddress));
    let start = time::OffsetDateTime::from(now - BACKDATE);
    params.not_before = start;
    params.not_after = start + time::Duration::days(VALIDITY_DAYS);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Strict verifiers (Python's cryptography, which sslyze uses) want it even on a self-signed leaf.
    params.use_authority_key_identifier_extension = true;
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a new certificate and key for `names`. Each file is written aside and renamed into place,
/// the key first; the key is never readable by anyone else, not even for a moment.
pub(crate) fn generate(cert: &Path, key: &Path, names: &CertNames, now: SystemTime) -> Result<(), TlsError> {
    let (cert_pem, key_pem) = make(names, now)?;
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TlsError::new(format!("cannot create {}: {e}", dir.display())))?;
    }
    replace(key, key_pem.as_bytes(), 0o600)?;
    replace(cert, cert_pem.as_bytes(), 0o644)
}

fn replace(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |e: std::io::Error| TlsError::new(format!("writing {}: {e}", path.display()));
    let mut aside = path.as_os_str().to_owned();
    aside.push(".new");
    let aside = std::path::PathBuf::from(aside);
    let _ = std::fs::remove_file(&aside);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&aside).map_err(failed)?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(failed)?;
    std::fs::rename(&aside, path).map_err(failed)
}

/// The leaf certificate as `ferry config check` and the renewal check read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    /// `DNS:name`, `IP:address`.
    pub sans: Vec<String>,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// Whole days until it expires; negative once it has.
    pub days_left: i64,
    /// `AB:CD:...`, as `ferry serve` prints it.
    pub sha256: String,
    /// `ECDSA 256`, `RSA 2048`, ...
    pub key: String,
}

impl CertSummary {
    /// The expiry date, `YYYY-MM-DD`.
    pub fn expires(&self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.not_after_unix).map(|t| t.date().to_string()).unwrap_or_default()
    }
}

/// Reads a DER certificate.
pub fn summarize(der: &[u8], now: SystemTime) -> Result<CertSummary, TlsError> {
    let (_, x) =
        X509Certificate::from_der(der).map_err(|e| TlsError::new(format!("the certificate cannot be parsed: {e}")))?;
    let mut sans = Vec::new();
    for ext in x.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                sans.push(match name {
                    GeneralName::DNSName(d) => format!("DNS:{}", d.to_ascii_lowercase()),
                    GeneralName::IPAddress(raw) => match raw.len() {
                        4 => format!("IP:{}", IpAddr::from(<[u8; 4]>::try_from(*raw).unwrap_or_default())),
                        16 => format!("IP:{}", IpAddr::from(<[u8; 16]>::try_from(*raw).unwrap_or_default())),
                        _ => "IP:(invalid)".into(),
                    },
                    other => format!("{other:?}"),
                });
            }
        }
    }
    let key = match x.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(k)) => format!("RSA {}", k.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(k)) => format!("ECDSA {}", k.key_size()),
        _ => x509_parser::objects::oid2sn(&x.public_key().algorithm.algorithm, x509_parser::objects::oid_registry())
            .map(str::to_string)
            .unwrap_or_else(|_| x.public_key().algorithm.algorithm.to_id_string()),
    };
    let not_after_unix = x.validity().not_after.timestamp();
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    Ok(CertSummary {
        subject: x.subject().to_string(),
        sans,
        not_before_unix: x.validity().not_before.timestamp(),
        not_after_unix,
        days_left: (not_after_unix - now).div_euclid(DAY),
        sha256: crate::sha256_hex(der),
        key,
    })
}

/// Why the generated certificate at `cert` must be made again, or `None` when it is fine.
pub(crate) fn renewal_reason(cert: &Path, names: &CertNames, now: SystemTime) -> Option<String> {
    let chain = match crate::read_chain(cert) {
        Ok(chain) => chain,
        Err(e) => return Some(e.message),
    };
    let c = match summarize(&chain[0], now) {
        Ok(c) => c,
        Err(e) => return Some(e.message),
    };
    if c.days_left < RENEW_BEFORE_DAYS {
        return Some(if c.days_left < 0 {
            format!("it expired {} days ago", -c.days_left)
        } else {
            format!("it expires in {} days", c.days_left)
        });
    }
    let lifespan = (c.not_after_unix - c.not_before_unix) / DAY;
    if lifespan > LONGEST_ACCEPTED_DAYS {
        return Some(format!("it is valid for {lifespan} days, which clients and audit tools refuse (366 at most)"));
    }
    let missing: Vec<String> = names.sans().into_iter().filter(|n| !c.sans.contains(n)).collect();
    if !missing.is_empty() {
        return Some(format!("it does not name {}", missing.join(", ")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn names_of_a_machine() {
        let n = CertNames::new(
            Some("Files"),
            [ip("0.0.0.0"), ip("192.0.2.7"), ip("::"), ip("::ffff:198.51.100.1"), ip("127.0.0.1")],
            &["ftp.example.com".into(), "203.0.113.9".into(), "files".into()],
        );
        assert_eq!(n.common_name, "files");
        assert_eq!(n.dns, ["files", "localhost", "ftp.example.com"]);
        assert_eq!(n.ips, [ip("127.0.0.1"), ip("::1"), ip("192.0.2.7"), ip("198.51.100.1"), ip("203.0.113.9")]);
        let odd = CertNames::new(Some("under_score"), [], &[]);
        assert_eq!((odd.common_name.as_str(), odd.dns.as_slice()), ("localhost", &["localhost".to_string()][..]));
    }

    #[test]
    fn generated_certificate() {
        let names = CertNames::new(Some("files.example"), [ip("192.0.2.7")], &["ftp.example.com".into()]);
        let now = SystemTime::now();
        let (cert_pem, _) = make(&names, now).expect("make");
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map(|d: rustls::pki_types::CertificateDer<'static>| d)
            .expect("pem");
        let s = summarize(&der, now).expect("parse");
        assert_eq!(s.subject, "CN=files.example");
        assert_eq!(
            s.sans,
            ["DNS:files.example", "DNS:localhost", "DNS:ftp.example.com", "IP:127.0.0.1", "IP:::1", "IP:192.0.2.7"]
        );
        assert_eq!((s.not_after_unix - s.not_before_unix) / DAY, VALIDITY_DAYS);
        assert!((VALIDITY_DAYS - 1..=VALIDITY_DAYS).contains(&s.days_left), "{}", s.days_left);
        assert_eq!(s.key, "ECDSA 256");
        // rustls-webpki, as rustls clients check it: valid for the names, not for others.
        let ee = webpki::EndEntityCert::try_from(&der).expect("webpki parses it");
        for ok in ["files.example", "localhost", "ftp.example.com", "127.0.0.1", "::1", "192.0.2.7"] {
            let name = rustls::pki_types::ServerName::try_from(ok).expect("name");
            assert!(ee.verify_is_valid_for_subject_name(&name).is_ok(), "{ok}");
        }
        let other = rustls::pki_types::ServerName::try_from("10.0.0.1").expect("name");
        assert!(ee.verify_is_valid_for_subject_name(&other).is_err());
    }

    #[test]
    fn renewal() {
        let dir = std::env::temp_dir().join(format!("ferry-tls-renew-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let names = CertNames::new(Some("box"), [], &[]);
        let now = SystemTime::now();
        assert!(renewal_reason(&cert, &names, now).expect("missing").contains("cannot read"));
        generate(&cert, &key, &names, now).expect("generate");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the key is private");
        }
        assert_eq!(renewal_reason(&cert, &names, now), None);
        let later = |days: u64| now + Duration::from_secs(days * 86_400);
        assert_eq!(renewal_reason(&cert, &names, later(VALIDITY_DAYS as u64 - RENEW_BEFORE_DAYS as u64 - 2)), None);
        let due = renewal_reason(&cert, &names, later(VALIDITY_DAYS as u64 - 10)).expect("due");
        assert!(due.starts_with("it expires in 9 days") || due.starts_with("it expires in 10 days"), "{due}");
        assert!(renewal_reason(&cert, &names, later(400)).expect("expired").contains("expired"));
        let more = CertNames::new(Some("box"), [ip("192.0.2.7")], &["files.example".into()]);
        assert_eq!(
            renewal_reason(&cert, &more, now).as_deref(),
            Some("it does not name DNS:files.example, IP:192.0.2.7")
        );
        // What Ferry generated before: rcgen's defaults (subject "rcgen self signed cert", 1975-4096).
        let old = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "box".to_string()]).expect("old");
        std::fs::write(&cert, old.cert.pem()).expect("write");
        assert!(renewal_reason(&cert, &CertNames::new(Some("box"), [], &[]), now).expect("old").contains("days"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
