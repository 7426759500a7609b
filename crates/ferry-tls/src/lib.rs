//! Ferry's TLS: where the FTPS certificate comes from (PEM files named in the config, or a self-signed one
//! generated in the data dir and renewed before it expires), the rustls server configuration built from
//! it (TLS 1.2 and 1.3 only, session IDs and tickets for data-channel resumption), and reloading it
//! without dropping sessions. Every private key read is held to sshd's permission rule ([`keyfile`]).
#![forbid(unsafe_code)]

mod generate;
mod keyfile;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;

pub use generate::{host_name, summarize, CertNames, CertSummary, RENEW_BEFORE_DAYS, VALIDITY_DAYS};
pub use keyfile::check_private_key_file;

/// Sessions kept for resumption (data connections resume the control connection's session).
const SESSION_CACHE_ENTRIES: usize = 4096;

/// What went wrong with the certificate or key, and (when there is one) what to do about it.
#[derive(Debug)]
pub struct TlsError {
    pub message: String,
    pub hint: Option<String>,
}

impl TlsError {
    pub fn new(message: impl Into<String>) -> Self {
        TlsError { message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
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
    /// What a generated certificate must name; `None` for one from the config, which is never touched.
    names: Option<CertNames>,
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
        .map_err(|e| TlsError::new(format!("cannot read certificate {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(format!("certificate {} is not valid PEM: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(TlsError::new(format!(
            "{} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    check_private_key_file(path)?;
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError::new(format!("cannot read private key {}: {e}", path.display())))
}

fn sha256_hex(der: &[u8]) -> String {
    let digest = ::aws_lc_rs::digest::digest(&::aws_lc_rs::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Where the certificate and key are: the config's pair, or the generated pair in `DATA_DIR/tls/`.
pub fn cert_paths(data_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<CertPaths, TlsError> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(CertPaths { cert: c.to_path_buf(), key: k.to_path_buf(), self_signed: false }),
        (None, None) => {
            let dir = data_dir.join("tls");
            Ok(CertPaths { cert: dir.join("cert.pem"), key: dir.join("key.pem"), self_signed: true })
        }
        _ => Err(TlsError::new("tls cert and key must be given together")),
    }
}

/// Makes the generated certificate when it is missing, unreadable, expiring within
/// [`RENEW_BEFORE_DAYS`] days or missing a name; returns why it was made, or `None`.
fn renew_if_needed(paths: &CertPaths, names: &CertNames, broken: bool) -> Result<Option<String>, TlsError> {
    let now = SystemTime::now();
    let reason = match generate::renewal_reason(&paths.cert, names, now) {
        None if broken => Some("its key does not fit it".to_string()),
        None if !paths.key.exists() => Some("its key is missing".to_string()),
        other => other,
    };
    let Some(reason) = reason else { return Ok(None) };
    let first = !paths.cert.exists();
    generate::generate(&paths.cert, &paths.key, names, now)?;
    if first {
        tracing::info!(path = %paths.cert.display(), names = %names.sans().join(", "), "generated a self-signed TLS certificate");
    } else {
        tracing::info!(
            path = %paths.cert.display(),
            names = %names.sans().join(", "),
            "generated a new self-signed TLS certificate, valid for {VALIDITY_DAYS} days, because the previous one {reason}; \
             clients that trusted the old one will ask again"
        );
    }
    Ok(Some(reason))
}

/// Reads and checks a certificate and its key as `ferry serve` would (permissions, PEM, the key fits
/// the certificate), without generating anything: for `ferry config check`.
pub fn inspect(paths: &CertPaths) -> Result<CertSummary, TlsError> {
    let chain = read_chain(&paths.cert)?;
    let key = read_key(&paths.key)?;
    let summary = summarize(&chain[0], SystemTime::now())?;
    server_config(paths, chain, key)?;
    Ok(summary)
}

fn server_config(
    paths: &CertPaths,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::new(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            TlsError::new(format!(
                "{} and {} do not make a usable certificate and key: {e}",
                paths.cert.display(),
                paths.key.display()
            ))
        })
}

impl TlsStore {
    /// Uses `cert`/`key` when given (both or neither), else the self-signed pair in `data_dir/tls/` for
    /// this machine's host name and the loopback addresses, generating it when needed.
    pub fn load_or_generate(data_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<TlsStore, TlsError> {
        Self::open(data_dir, cert, key, CertNames::of_this_machine([], &[]))
    }

    /// As [`TlsStore::load_or_generate`], with the names a generated certificate must carry (the
    /// listener addresses and `[ftps] names`). A generated certificate that lacks one, or has fewer
    /// than [`RENEW_BEFORE_DAYS`] days left, is made again; one from the config is never touched.
    pub fn open(
        data_dir: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
        names: CertNames,
    ) -> Result<TlsStore, TlsError> {
        let paths = cert_paths(data_dir, cert, key)?;
        let names = paths.self_signed.then_some(names);
        if let Some(names) = &names {
            renew_if_needed(&paths, names, false)?;
        }
        let sessions: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        let ticketer = aws_lc_rs::Ticketer::new().map_err(|e| TlsError::new(format!("TLS ticketer: {e}")))?;
        let built = match (Self::build(&paths, &sessions, &ticketer), &names) {
            // A generated pair that does not fit (a crash between writing the key and the certificate):
            // make it again. A permission problem is the admin's to fix, as for any key.
            (Err(e), Some(names)) if e.hint.is_none() => {
                tracing::warn!("the generated TLS certificate is unusable ({e}): generating a new one");
                renew_if_needed(&paths, names, true)?;
                Self::build(&paths, &sessions, &ticketer)?
            }
            (built, _) => built?,
        };
        Ok(TlsStore { paths, names, current: RwLock::new(built), sessions, ticketer })
    }

    fn build(
        paths: &CertPaths,
        sessions: &Arc<dyn StoresServerSessions>,
        ticketer: &Arc<dyn ProducesTickets>,
    ) -> Result<(Arc<ServerConfig>, CertInfo), TlsError> {
        let chain = read_chain(&paths.cert)?;
        let key = read_key(&paths.key)?;
        let info = CertInfo { sha256: sha256_hex(&chain[0]), self_signed: paths.self_signed, chain_len: chain.len() };
        let mut config = server_config(paths, chain, key)?;
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

    /// Reads the certificate and key again (after `kill -HUP`); a generated certificate that is due is
    /// made again first. Connections already open keep theirs; new ones get the new certificate. On
    /// error the old certificate stays in use.
    pub fn reload(&self) -> Result<CertInfo, TlsError> {
        if let Some(names) = &self.names {
            renew_if_needed(&self.paths, names, false)?;
        }
        let (config, info) = Self::build(&self.paths, &self.sessions, &self.ticketer)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (config, info.clone());
        Ok(info)
    }

    /// For a server that runs for months: makes a generated certificate again when it is due and serves
    /// the new one. Returns its description when it changed.
    pub fn renew_if_due(&self) -> Result<Option<CertInfo>, TlsError> {
        let Some(names) = &self.names else { return Ok(None) };
        if generate::renewal_reason(&self.paths.cert, names, SystemTime::now()).is_none() {
            return Ok(None);
        }
        self.reload().map(Some)
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
        // A broken configured file on reload keeps the old certificate.
        let (c, k) = (dir.join("tls/cert.pem"), dir.join("tls/key.pem"));
        let configured = TlsStore::load_or_generate(&dir, Some(&c), Some(&k)).expect("configured");
        std::fs::write(&c, "junk").expect("write");
        assert!(configured.reload().is_err());
        assert_eq!(configured.info().sha256, info.sha256);
        // A broken generated one is made again.
        let renewed = b.reload().expect("regenerated");
        assert_ne!(renewed.sha256, info.sha256);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn explicit_files_must_come_in_pairs_and_parse() {
        let dir = tmp();
        assert!(TlsStore::load_or_generate(&dir, Some(Path::new("/nonexistent.pem")), None).is_err());
        let e = TlsStore::load_or_generate(&dir, Some(Path::new("/nonexistent.pem")), Some(Path::new("/k")))
            .expect_err("missing file");
        assert!(e.message.contains("/nonexistent.pem"), "{e}");
    }

    #[test]
    fn renews_a_due_certificate_and_never_touches_a_configured_one() {
        let dir = tmp().join("renew");
        let names = CertNames::new(Some("box"), [], &[]);
        let store = TlsStore::open(&dir, None, None, names.clone()).expect("generate");
        let first = store.info().sha256;
        assert_eq!(store.renew_if_due().expect("check"), None, "a fresh certificate is kept");
        // A certificate with 10 days left is made again at the next start.
        let soon = SystemTime::now() - std::time::Duration::from_secs((VALIDITY_DAYS as u64 - 10) * 86_400);
        generate::generate(&dir.join("tls/cert.pem"), &dir.join("tls/key.pem"), &names, soon).expect("old");
        let old = TlsStore::open(&dir, None, None, names.clone());
        let renewed = old.expect("renewed").info().sha256;
        assert_ne!(renewed, first);
        let s = inspect(&cert_paths(&dir, None, None).expect("paths")).expect("inspect");
        assert!(s.days_left >= VALIDITY_DAYS - 1, "{}", s.days_left);
        // The same file named in the config: served as it is, even when it is about to expire.
        generate::generate(&dir.join("tls/cert.pem"), &dir.join("tls/key.pem"), &names, soon).expect("old");
        let before = std::fs::read(dir.join("tls/cert.pem")).expect("read");
        let (c, k) = (dir.join("tls/cert.pem"), dir.join("tls/key.pem"));
        let configured = TlsStore::open(&dir, Some(&c), Some(&k), names).expect("configured");
        assert_eq!(configured.renew_if_due().expect("check"), None);
        configured.reload().expect("reload");
        assert_eq!(std::fs::read(&c).expect("read"), before, "a configured certificate is never touched");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_open_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmp().join("perm");
        TlsStore::load_or_generate(&dir, None, None).expect("generate");
        let key = dir.join("tls/key.pem");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = TlsStore::load_or_generate(&dir, None, None).expect_err("refused");
        assert!(e.message.contains("UNPROTECTED PRIVATE KEY FILE"), "{e}");
        assert_eq!(e.hint, Some(format!("chmod 600 {}", key.display())));
        let (c, k) = (dir.join("tls/cert.pem"), key.clone());
        assert!(TlsStore::load_or_generate(&dir, Some(&c), Some(&k)).is_err(), "a configured key too");
        let _ = std::fs::remove_dir_all(dir);
    }
}
