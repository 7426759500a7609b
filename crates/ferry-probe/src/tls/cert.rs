//! The leaf certificate as a person reads it: names, dates, key, fingerprint; and whether it is
//! for the host the user typed, as rustls-webpki (what rustls clients run) decides.

use std::net::IpAddr;
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::unix_now;

/// The parts of a certificate a person checks.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// `DNS:name`, `IP:addr`, ...
    pub sans: Vec<String>,
    /// `2026-11-25 15:33:06 UTC`
    pub not_before: String,
    pub not_after: String,
    /// Days until notAfter (negative: expired).
    pub days_left: i64,
    pub self_signed: bool,
    /// SHA-256 of the DER certificate, `AB:CD:...` as browsers and `ferry serve` print it.
    pub sha256: String,
    /// `RSA 2048`, `EC 256`, ...
    pub key: String,
    pub signature_algorithm: String,
    #[serde(skip)]
    pub(crate) not_before_unix: i64,
    #[serde(skip)]
    pub(crate) not_after_unix: i64,
}

/// Parses the leaf certificate.
pub fn cert_info(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let (_, x) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| format!("the server's certificate cannot be parsed: {e}"))?;
    let mut sans = Vec::new();
    let mut ski: Option<&[u8]> = None;
    let mut aki: Option<&[u8]> = None;
    for ext in x.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                        GeneralName::IPAddress(raw) => match ip_from_bytes(raw) {
                            Some(ip) => sans.push(format!("IP:{ip}")),
                            None => sans.push("IP:(invalid)".into()),
                        },
                        GeneralName::RFC822Name(m) => sans.push(format!("email:{m}")),
                        GeneralName::URI(u) => sans.push(format!("URI:{u}")),
                        other => sans.push(format!("{other:?}")),
                    }
                }
            }
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0),
            ParsedExtension::AuthorityKeyIdentifier(a) => aki = a.key_identifier.as_ref().map(|k| k.0),
            _ => {}
        }
    }
    // Same name as issuer and subject, and (when both are given) the same key identifier: the
    // certificate names itself as its issuer. A CA-issued certificate never has both equal.
    let self_signed = x.subject().as_raw() == x.issuer().as_raw()
        && match (aki, ski) {
            (Some(a), Some(s)) => a == s,
            _ => true,
        };
    let key = match x.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(k)) => format!("RSA {}", k.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(k)) => format!("EC {}", k.key_size()),
        Ok(x509_parser::public_key::PublicKey::DSA(_)) => "DSA".into(),
        _ => oid_name(&x.public_key().algorithm.algorithm),
    };
    let not_before_unix = x.validity().not_before.timestamp();
    let not_after_unix = x.validity().not_after.timestamp();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref());
    let sha256 = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    Ok(CertInfo {
        subject: x.subject().to_string(),
        issuer: x.issuer().to_string(),
        sans,
        not_before: format_unix(not_before_unix),
        not_after: format_unix(not_after_unix),
        days_left: (not_after_unix - unix_now(SystemTime::now())).div_euclid(86_400),
        self_signed,
        sha256,
        key,
        signature_algorithm: oid_name(&x.signature_algorithm.algorithm),
        not_before_unix,
        not_after_unix,
    })
}

fn oid_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_string)
        .unwrap_or_else(|_| oid.to_id_string())
}

fn ip_from_bytes(raw: &[u8]) -> Option<IpAddr> {
    match raw.len() {
        4 => <[u8; 4]>::try_from(raw).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(raw).ok().map(IpAddr::from),
        _ => None,
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` from Unix seconds (proleptic Gregorian, days-from-civil inverse).
pub fn format_unix(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = ferry_vfs::listing::civil(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Whether the certificate is for `host`, exactly as rustls clients decide (rustls-webpki; Go and
/// browsers agree): a name against the DNS SANs, with one wildcard label at the left; an address
/// against the IP SANs. The subject CN never counts, so a certificate without SANs matches nothing.
pub fn hostname_matches(host: &str, der: &CertificateDer<'_>) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host);
    match ServerName::try_from(host) {
        Ok(name) => cert.verify_is_valid_for_subject_name(&name).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A certificate description with these names (only the parts the checks read).
    pub(crate) fn cert(dns: &[&str], ips: &[&str], cn: &[&str]) -> CertInfo {
        let sans = dns.iter().map(|d| format!("DNS:{d}")).chain(ips.iter().map(|i| format!("IP:{i}"))).collect();
        CertInfo {
            subject: cn.iter().map(|c| format!("CN={c}")).collect::<Vec<_>>().join(", "),
            issuer: String::new(),
            sans,
            not_before: String::new(),
            not_after: String::new(),
            days_left: 0,
            self_signed: true,
            sha256: String::new(),
            key: String::new(),
            signature_algorithm: String::new(),
            not_before_unix: 0,
            not_after_unix: 0,
        }
    }

    /// A real self-signed certificate (DER) with subject CN `cn` and these SANs (IP or DNS by form).
    fn der(sans: &[&str], cn: &str) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().clone()
    }

    #[test]
    fn hostnames() {
        let c = der(&["ftp.example.com", "*.files.example.com", "127.0.0.1", "::1"], "ignored.example");
        assert!(hostname_matches("ftp.example.com", &c));
        assert!(hostname_matches("FTP.Example.com.", &c));
        assert!(hostname_matches("a.files.example.com", &c));
        assert!(!hostname_matches("a.b.files.example.com", &c));
        assert!(!hostname_matches("files.example.com", &c));
        assert!(hostname_matches("127.0.0.1", &c));
        assert!(hostname_matches("::1", &c));
        assert!(hostname_matches("[::1]", &c));
        assert!(!hostname_matches("10.0.0.1", &c));
        assert!(!hostname_matches("ignored.example", &c), "CN is ignored when there are DNS SANs");
        assert!(!hostname_matches("not a name", &c));
    }

    /// Regression: the hand-written check fell back to the CN and said "matches" for certificates that
    /// rustls and Go refuse.
    #[test]
    fn cn_only_matches_nothing() {
        let cn_only = der(&[], "legacy.example");
        assert!(!hostname_matches("legacy.example", &cn_only));
        let ip_cn = der(&[], "127.0.0.1");
        assert!(!hostname_matches("127.0.0.1", &ip_cn), "an address in the CN does not count either");
        let name_only = der(&["files.example"], "files.example");
        assert!(!hostname_matches("127.0.0.1", &name_only), "an address needs an IP SAN");
        assert!(!hostname_matches("*.com", &der(&["*.com"], "x")));
    }

    #[test]
    fn dates() {
        assert_eq!(format_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_unix(1_795_620_786), "2026-11-25 15:33:06 UTC");
        assert_eq!(format_unix(-1), "1969-12-31 23:59:59 UTC");
    }
}
