//! Ferry's TLS: where the FTPS certificate comes from (PEM files named in the config, or a self-signed one
//! generated on first start), the rustls server configuration built from it (TLS 1.2 and 1.3 only,
//! session IDs and tickets for data-channel resumption), and reloading it without dropping sessions.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;

/// Sessions kept for resumption (data connections resume the control connection's session).
const SESSION_CACHE_ENTRIES: usize = 4096;

#[derive(Debug)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// Where the certificate and key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// PEM: the server certificate first, then the intermediates (full chain).
    pub cert: PathBuf,
    /// PEM: PKCS#8, PKCS#1 or SEC1 private key.
    pub key: PathBuf,
    /// True when Ferry generated them itself.
    pub self_signed: bool,
}

/// What is being served, for the startup banner and `ferry probe`-style output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the leaf certificate's DER, as `AB:CD:...` (what browsers and openssl show).
    pub sha256: String,
    pub self_signed: bool,
    pub chain_len: usize,
}

/// The current TLS configuration; cheap to read on every connection, replaced as a whole on reload.
pub struct TlsStore {
    paths: CertPaths,
    current: RwLock<(Arc<ServerConfig>, CertInfo)>,
    // Shared by every configuration built from this store, so sessions survive a certificate reload.
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
}

impl fmt::Debug for TlsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStore").field("paths", &self.paths).finish()
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("cannot read certificate {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("certificate {} is not valid PEM: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError(format!("cannot read private key {}: {e}", path.display())))
}

fn sha256_hex(der: &[u8]) -> String {
    let digest = ::aws_lc_rs::digest::digest(&::aws_lc_rs::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Writes a self-signed certificate for `names` (ECDSA P-256) to `cert` and `key`.
fn generate(cert: &Path, key: &Path, names: Vec<String>) -> Result<(), TlsError> {
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError(format!("generating a self-signed certificate: {e}")))?;
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TlsError(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(cert, certified.cert.pem()).map_err(|e| TlsError(format!("writing {}: {e}", cert.display())))?;
    write_private(key, certified.signing_key.serialize_pem().as_bytes())?;
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| TlsError(format!("writing {}: {e}", path.display())))?;
    f.write_all(data).map_err(|e| TlsError(format!("writing {}: {e}", path.display())))
}

impl TlsStore {
    /// Uses `cert`/`key` when given (both or neither), else the self-signed pair in `data_dir/tls/`,
    /// generating it on first use.
    pub fn load_or_generate(data_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<TlsStore, TlsError> {
        let paths = match (cert, key) {
            (Some(c), Some(k)) => CertPaths { cert: c.to_path_buf(), key: k.to_path_buf(), self_signed: false },
            (None, None) => {
                let dir = data_dir.join("tls");
                let paths = CertPaths { cert: dir.join("cert.pem"), key: dir.join("key.pem"), self_signed: true };
                if !paths.cert.exists() || !paths.key.exists() {
                    let mut names = vec!["localhost".to_string()];
                    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
                        let h = h.trim();
                        if !h.is_empty() && h != "localhost" {
                            names.push(h.to_string());
                        }
                    }
                    generate(&paths.cert, &paths.key, names)?;
                    tracing::info!(path = %paths.cert.display(), "generated a self-signed TLS certificate");
                }
                paths
            }
            _ => return Err(TlsError("tls cert and key must be given together".into())),
        };
        let sessions: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        let ticketer = aws_lc_rs::Ticketer::new().map_err(|e| TlsError(format!("TLS ticketer: {e}")))?;
        let (config, info) = Self::build(&paths, &sessions, &ticketer)?;
        Ok(TlsStore { paths, current: RwLock::new((config, info)), sessions, ticketer })
    }

    fn build(
        paths: &CertPaths,
        sessions: &Arc<dyn StoresServerSessions>,
        ticketer: &Arc<dyn ProducesTickets>,
    ) -> Result<(Arc<ServerConfig>, CertInfo), TlsError> {
        let chain = read_chain(&paths.cert)?;
        let key = read_key(&paths.key)?;
        let info = CertInfo { sha256: sha256_hex(&chain[0]), self_signed: paths.self_signed, chain_len: chain.len() };
        let provider = Arc::new(aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError(format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                TlsError(format!(
                    "{} and {} do not make a usable certificate and key: {e}",
                    paths.cert.display(),
                    paths.key.display()
                ))
            })?;
        config.session_storage = sessions.clone();
        config.ticketer = ticketer.clone();
        Ok((Arc::new(config), info))
    }

    /// The configuration for a new connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    pub fn info(&self) -> CertInfo {
        self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    pub fn paths(&self) -> &CertPaths {
        &self.paths
    }

    /// Reads the certificate and key again (after `kill -HUP`). Connections already open keep theirs;
    /// new ones get the new certificate. On error the old certificate stays in use.
    pub fn reload(&self) -> Result<CertInfo, TlsError> {
        let (config, info) = Self::build(&self.paths, &self.sessions, &self.ticketer)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (config, info.clone());
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("ferry-tls-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn generates_once_and_reloads() {
        let dir = tmp();
        let a = TlsStore::load_or_generate(&dir, None, None).expect("generate");
        let info = a.info();
        assert!(info.self_signed);
        assert_eq!(info.sha256.len(), 32 * 3 - 1);
        let b = TlsStore::load_or_generate(&dir, None, None).expect("load");
        assert_eq!(b.info().sha256, info.sha256, "the generated certificate is reused");
        // A broken file on reload keeps the old certificate.
        std::fs::write(dir.join("tls/cert.pem"), "junk").expect("write");
        assert!(b.reload().is_err());
        assert_eq!(b.info().sha256, info.sha256);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn explicit_files_must_come_in_pairs_and_parse() {
        let dir = tmp();
        assert!(TlsStore::load_or_generate(&dir, Some(Path::new("/nonexistent.pem")), None).is_err());
        let e = TlsStore::load_or_generate(&dir, Some(Path::new("/nonexistent.pem")), Some(Path::new("/k")))
            .expect_err("missing file");
        assert!(e.0.contains("/nonexistent.pem"), "{e}");
    }
}
