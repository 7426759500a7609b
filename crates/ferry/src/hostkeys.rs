//! SSH host keys: loaded from the config's files, or generated once into the data dir (ed25519, ECDSA
//! P-256, and RSA 3072 for older clients) and reused on every later start.

use std::path::{Path, PathBuf};

use russh::keys::ssh_key::private::{KeypairData, RsaKeypair};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};

use crate::CliError;

const GENERATED: &[(&str, &str)] =
    &[("ssh_host_ed25519_key", "ed25519"), ("ssh_host_ecdsa_key", "ecdsa"), ("ssh_host_rsa_key", "rsa")];

fn generate(kind: &str) -> Result<PrivateKey, String> {
    let mut rng = rand010::rng();
    let key = match kind {
        "ed25519" => PrivateKey::random(&mut rng, Algorithm::Ed25519),
        "ecdsa" => PrivateKey::random(&mut rng, Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 }),
        _ => RsaKeypair::random(&mut rng, 3072).and_then(|k| PrivateKey::new(KeypairData::from(k), "ferry host key")),
    };
    key.map_err(|e| e.to_string())
}

fn load(path: &Path) -> Result<PrivateKey, CliError> {
    russh::keys::load_secret_key(path, None).map_err(|e| {
        CliError::runtime(format!("cannot load host key {}: {e}", path.display()))
            .with_hint("host keys must be unencrypted OpenSSH private keys (ssh-keygen -t ed25519 -N '' -f FILE)")
    })
}

/// Returns the host keys and, for each, the path it came from.
pub fn load_or_generate(data_dir: &Path, configured: &[PathBuf]) -> Result<Vec<(PrivateKey, PathBuf)>, CliError> {
    if !configured.is_empty() {
        return configured.iter().map(|p| Ok((load(p)?, p.clone()))).collect();
    }
    let dir = data_dir.join("keys");
    std::fs::create_dir_all(&dir).map_err(|e| CliError::runtime(format!("cannot create {}: {e}", dir.display())))?;
    crate::bootstrap::set_private(&dir, 0o700);
    let mut keys = Vec::new();
    for (file, kind) in GENERATED {
        let path = dir.join(file);
        let key = if path.exists() {
            load(&path)?
        } else {
            let key = generate(kind).map_err(|e| CliError::runtime(format!("generating {kind} host key: {e}")))?;
            key.write_openssh_file(&path, LineEnding::LF)
                .map_err(|e| CliError::runtime(format!("writing host key {}: {e}", path.display())))?;
            crate::bootstrap::set_private(&path, 0o600);
            tracing::info!(path = %path.display(), "generated {kind} host key");
            key
        };
        keys.push((key, path));
    }
    Ok(keys)
}

/// `SHA256:...` as OpenSSH prints it, with the key type name.
pub fn describe(key: &PrivateKey) -> (String, String) {
    let public = key.public_key();
    (public.algorithm().as_str().to_string(), public.fingerprint(HashAlg::Sha256).to_string())
}
