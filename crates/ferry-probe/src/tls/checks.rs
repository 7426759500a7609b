//! The verdict on one TLS handshake as checks: dates, chain, name, signature hash.

use std::time::SystemTime;

use super::{unix_now, TlsInfo, Trust};
use crate::report::{Check, Status};

/// A certificate that expires within this many days is a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// The checks of one handshake, named `<prefix>.…`.
pub fn tls_checks(prefix: &str, info: &TlsInfo) -> Vec<Check> {
    let mut checks =
        vec![Check::new(format!("{prefix}.handshake"), Status::Pass, format!("{} {}", info.version, info.cipher))];
    let Some(cert) = &info.certificate else {
        checks.push(Check::new(
            format!("{prefix}.certificate"),
            Status::Fail,
            info.trust_detail.clone().unwrap_or_else(|| "no certificate".into()),
        ));
        return checks;
    };
    // Dates: expired or not yet valid is broken for every client, trusted or pinned.
    let now = unix_now(SystemTime::now());
    let validity = if now > cert.not_after_unix {
        Check::new(format!("{prefix}.certificate.validity"), Status::Fail, format!("expired on {}", cert.not_after))
            .hint("renew the certificate")
    } else if now < cert.not_before_unix {
        Check::new(
            format!("{prefix}.certificate.validity"),
            Status::Fail,
            format!("not valid before {} (is the clock right?)", cert.not_before),
        )
    } else if cert.days_left < EXPIRY_WARNING_DAYS {
        Check::new(
            format!("{prefix}.certificate.validity"),
            Status::Warn,
            format!("expires in {} days ({})", cert.days_left, cert.not_after),
        )
        .hint("renew the certificate soon")
    } else {
        Check::new(
            format!("{prefix}.certificate.validity"),
            Status::Pass,
            format!("valid until {} ({} days left)", cert.not_after, cert.days_left),
        )
    };
    checks.push(validity);
    let chain = match info.trust {
        Trust::Trusted => Check::new(
            format!("{prefix}.certificate.chain"),
            Status::Pass,
            format!("trusted by the system roots (issuer {})", cert.issuer),
        ),
        Trust::SelfSigned => Check::new(
            format!("{prefix}.certificate.chain"),
            Status::Warn,
            format!("self-signed (SHA-256 {})", cert.sha256),
        )
        .hint("clients must be told to trust this certificate; a certificate from a public CA avoids that"),
        Trust::UnknownIssuer => Check::new(
            format!("{prefix}.certificate.chain"),
            Status::Warn,
            info.trust_detail.clone().unwrap_or_default(),
        )
        .hint("if the issuer is a public CA, configure the full chain (certificate + intermediates) on the server"),
        Trust::Invalid => Check::new(
            format!("{prefix}.certificate.chain"),
            Status::Fail,
            info.trust_detail.clone().unwrap_or_default(),
        ),
        Trust::Unknown => Check::new(
            format!("{prefix}.certificate.chain"),
            Status::Warn,
            info.trust_detail.clone().unwrap_or_else(|| "could not be judged".into()),
        ),
    };
    checks.push(chain);
    let names = if cert.sans.is_empty() { format!("CN only: {}", cert.subject) } else { cert.sans.join(", ") };
    let hostname = if info.hostname_match {
        Check::new(format!("{prefix}.certificate.hostname"), Status::Pass, format!("matches {}", info.hostname))
    } else {
        // A mismatch makes every verifying client refuse a CA-signed certificate; a self-signed one
        // is trusted by pinning, where the name matters less.
        let status = if info.trust == Trust::Trusted { Status::Fail } else { Status::Warn };
        Check::new(
            format!("{prefix}.certificate.hostname"),
            status,
            format!("the certificate is not for {} (it is for {names})", info.hostname),
        )
        .hint("connect with a name the certificate lists, or add this name to the certificate")
    };
    checks.push(hostname);
    let sig = cert.signature_algorithm.to_ascii_lowercase();
    if sig.contains("sha1") || sig.contains("md5") {
        checks.push(
            Check::new(
                format!("{prefix}.certificate.signature"),
                Status::Warn,
                format!("signed with {} (broken hash)", cert.signature_algorithm),
            )
            .hint("reissue the certificate with SHA-256"),
        );
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::cert::tests::cert;

    #[test]
    fn hostname_mismatch_fails_only_for_trusted_certificates() {
        let mut info = TlsInfo {
            mode: "implicit",
            version: "TLSv1.3".into(),
            cipher: "X".into(),
            chain_length: 1,
            certificate: Some(cert(&["other.example"], &[], &[])),
            trust: Trust::SelfSigned,
            trust_detail: None,
            chain_valid: false,
            hostname: "ftp.example".into(),
            hostname_match: false,
            ftp_greeting: None,
            ftp_features: Vec::new(),
        };
        let status = |info: &TlsInfo| {
            tls_checks("tls", info).into_iter().find(|c| c.name == "tls.certificate.hostname").map(|c| c.status)
        };
        assert_eq!(status(&info), Some(Status::Warn));
        info.trust = Trust::Trusted;
        assert_eq!(status(&info), Some(Status::Fail));
        // and the expired (not_after 0) certificate fails on its dates
        let checks = tls_checks("tls", &info);
        assert!(checks.iter().any(|c| c.name == "tls.certificate.validity" && c.status == Status::Fail));
    }
}
