//! The TLS side: a client that accepts any certificate (so the probe sees what the server presents
//! even when no client would trust it), then its own verdict on that certificate: trusted by the
//! system roots or not, self-signed or not, dates, hostname.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;

mod cert;
mod checks;

pub use cert::{cert_info, hostname_matches, CertInfo};
pub use checks::tls_checks;

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Accepts every certificate: the probe must complete the handshake to report what is wrong with
/// the certificate, and judges it afterwards with [`judge_chain`]. Signatures are still checked, so
/// the handshake proves the server holds the certificate's key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration for probing. One configuration keeps one session cache, so an FTPS
/// data connection made with the control connection's configuration resumes its TLS session
/// (vsftpd's `require_ssl_reuse` refuses data connections that do not).
pub fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name to send in SNI and to check the certificate against.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("`{host}` is not a valid TLS server name: {e}"))
}

/// [`server_name`], or the address when `host` is not a valid name (an underscore, say): TLS
/// still works, without SNI.
pub fn server_name_or_ip(host: &str, ip: IpAddr) -> ServerName<'static> {
    server_name(host).unwrap_or_else(|_| ServerName::IpAddress(ip.into()))
}

/// The system's trusted roots, loaded once (Debian: /etc/ssl/certs), or why there are none.
fn system_verifier() -> &'static Result<Arc<WebPkiServerVerifier>, String> {
    static VERIFIER: OnceLock<Result<Arc<WebPkiServerVerifier>, String>> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            return Err("no system root certificates found (install ca-certificates)".into());
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("cannot use the system root certificates: {e}"))
    })
}

/// How far the presented chain is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// Chains to a root of the system store.
    Trusted,
    /// The certificate signed itself.
    SelfSigned,
    /// Signed by a CA the system does not know (a private CA, or missing intermediates).
    UnknownIssuer,
    /// Broken in another way (bad signature, wrong key usage, revoked, ...).
    Invalid,
    /// The verdict could not be reached (no system roots, unparsable certificate).
    Unknown,
}

/// What one TLS handshake showed.
#[derive(Debug, Clone, Serialize)]
pub struct TlsInfo {
    /// `implicit` (TLS from the first byte) or `explicit` (after `AUTH TLS`).
    pub mode: &'static str,
    /// `TLSv1.3`
    pub version: String,
    pub cipher: String,
    /// How many certificates the server sent (leaf first).
    pub chain_length: usize,
    pub certificate: Option<CertInfo>,
    pub trust: Trust,
    /// Why the chain is not trusted, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_detail: Option<String>,
    /// The chain verifies against the system roots (dates and hostname aside).
    pub chain_valid: bool,
    /// The name the certificate was checked against.
    pub hostname: String,
    pub hostname_match: bool,
    /// Implicit FTPS: the FTP greeting read inside TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ftp_greeting: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ftp_features: Vec<String>,
}

impl TlsInfo {
    /// Describes a completed handshake of `conn`, checking the certificate against `host`.
    pub fn from_connection(conn: &rustls::ClientConnection, host: &str, mode: &'static str) -> TlsInfo {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "unknown".to_string(),
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| s.suite().as_str().map(str::to_string).unwrap_or_else(|| format!("{:?}", s.suite())))
            .unwrap_or_else(|| "unknown".into());
        let chain: Vec<CertificateDer<'static>> = conn.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
        describe_chain(&chain, host, mode, version, cipher, SystemTime::now())
    }
}

/// The verdict on a chain (leaf first), pure apart from the system roots.
pub fn describe_chain(
    chain: &[CertificateDer<'static>],
    host: &str,
    mode: &'static str,
    version: String,
    cipher: String,
    now: SystemTime,
) -> TlsInfo {
    let mut info = TlsInfo {
        mode,
        version,
        cipher,
        chain_length: chain.len(),
        certificate: None,
        trust: Trust::Unknown,
        trust_detail: None,
        chain_valid: false,
        hostname: host.to_string(),
        hostname_match: false,
        ftp_greeting: None,
        ftp_features: Vec::new(),
    };
    let Some(leaf) = chain.first() else {
        info.trust_detail = Some("the server sent no certificate".into());
        return info;
    };
    let cert = match cert_info(leaf) {
        Ok(c) => c,
        Err(e) => {
            info.trust_detail = Some(e);
            return info;
        }
    };
    info.hostname_match = hostname_matches(host, leaf);
    let (trust, detail) = judge_chain(chain, host, &cert, now);
    info.chain_valid = trust == Trust::Trusted;
    info.trust = trust;
    info.trust_detail = detail;
    info.certificate = Some(cert);
    info
}

pub(crate) fn unix_now(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Verifies the chain against the system roots. Dates are judged apart (by the caller), so an
/// expired certificate is verified at a moment inside its validity to learn whether it would
/// otherwise be trusted.
fn judge_chain(
    chain: &[CertificateDer<'static>],
    host: &str,
    cert: &CertInfo,
    now: SystemTime,
) -> (Trust, Option<String>) {
    let verifier = match system_verifier() {
        Ok(v) => v,
        Err(e) => {
            let trust = if cert.self_signed { Trust::SelfSigned } else { Trust::Unknown };
            return (trust, Some(e.clone()));
        }
    };
    let Ok(name) = server_name(host) else {
        return (Trust::Unknown, Some(format!("`{host}` is not a name a certificate can be checked against")));
    };
    let now_unix = unix_now(now);
    let when = if now_unix < cert.not_before_unix || now_unix > cert.not_after_unix {
        cert.not_before_unix / 2 + cert.not_after_unix / 2
    } else {
        now_unix
    };
    let when = UnixTime::since_unix_epoch(Duration::from_secs(when.max(0) as u64));
    let Some((leaf, intermediates)) = chain.split_first() else {
        return (Trust::Unknown, Some("the server sent no certificate".into()));
    };
    match verifier.verify_server_cert(leaf, intermediates, &name, &[], when) {
        Ok(_) => (Trust::Trusted, None),
        Err(rustls::Error::InvalidCertificate(e)) => match e {
            // The chain is fine; the name is judged by hostname_matches.
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                (Trust::Trusted, None)
            }
            // Whatever webpki objects to first (unknown issuer, or CA:TRUE on the certificate
            // that `openssl req -x509` makes), a self-signed certificate is trusted by pinning.
            _ if cert.self_signed => (
                Trust::SelfSigned,
                Some("self-signed: clients trust it only when told to (compare the SHA-256 fingerprint)".into()),
            ),
            CertificateError::UnknownIssuer => (
                Trust::UnknownIssuer,
                Some(format!(
                    "issued by `{}`, which the system roots do not know: a private CA, or the server does not \
                     send its intermediate certificates",
                    cert.issuer
                )),
            ),
            other => (Trust::Invalid, Some(format!("the certificate chain is invalid: {}", cert_error_words(&other)))),
        },
        Err(other) => (Trust::Invalid, Some(format!("the certificate chain is invalid: {other}"))),
    }
}

/// Why webpki refused a chain, in words.
fn cert_error_words(e: &CertificateError) -> String {
    match e {
        CertificateError::BadSignature => "a signature in the chain does not verify".into(),
        CertificateError::Revoked => "the certificate is revoked".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the certificate is not for TLS servers (extended key usage)".into()
        }
        CertificateError::BadEncoding => "the certificate is malformed".into(),
        CertificateError::UnhandledCriticalExtension => {
            "the certificate has a critical extension clients do not know".into()
        }
        other => {
            let text = format!("{other:?}");
            if text.contains("CaUsedAsEndEntity") {
                "the server's certificate is a CA certificate (basicConstraints CA:TRUE), which clients refuse as a \
                 server certificate"
                    .into()
            } else {
                text
            }
        }
    }
}
