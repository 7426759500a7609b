//! SSH host keys: loaded from the config's files, or generated once into the data dir (ed25519, and RSA
//! 3072 for clients without ed25519) and reused on every later start. As in sshd, a key file that group
//! or others may read is refused. An ECDSA key an older Ferry generated stays on disk but is offered
//! only when `[sftp] host_keys` names it (ssh-audit fails the NIST curves).

use std::path::{Path, PathBuf};

use ferry_config::SftpConfig;
use ferry_sftp::Algorithms;
use russh::keys::ssh_key::private::{KeypairData, RsaKeypair};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, HashAlg, PrivateKey};

use crate::CliError;

const GENERATED: &[(&str, &str)] = &[("ssh_host_ed25519_key", "ed25519"), ("ssh_host_rsa_key", "rsa")];
/// What Ferry generated next to those before it stopped offering NIST curves by default.
const OLD_ECDSA: &str = "ssh_host_ecdsa_key";
/// RSA host keys below this are refused (ssh-audit: `[fail]`); below [`RSA_GOOD_BITS`] they are warned about.
const RSA_MIN_BITS: u32 = 2048;
const RSA_GOOD_BITS: u32 = 3072;

fn generate(kind: &str) -> Result<PrivateKey, String> {
    let mut rng = rand010::rng();
    let key = match kind {
        "ed25519" => PrivateKey::random(&mut rng, Algorithm::Ed25519),
        _ => RsaKeypair::random(&mut rng, RSA_GOOD_BITS as usize)
            .and_then(|k| PrivateKey::new(KeypairData::from(k), "ferry host key")),
    };
    key.map_err(|e| e.to_string())
}

/// The RSA modulus size, for RSA keys.
pub fn rsa_bits(key: &PrivateKey) -> Option<u32> {
    key.key_data().rsa().map(|k| k.public().key_size())
}

/// Reads a host key file, refusing one that is open to group or others or an RSA key under 2048 bits.
pub fn load(path: &Path) -> Result<PrivateKey, CliError> {
    ferry_tls::check_private_key_file(path).map_err(|e| {
        let hint = e.hint.clone().unwrap_or_else(|| "check the path in [sftp] host_keys".into());
        CliError::runtime(format!("host key: {e}")).with_hint(hint)
    })?;
    let key = russh::keys::load_secret_key(path, None).map_err(|e| {
        CliError::runtime(format!("cannot load host key {}: {e}", path.display()))
            .with_hint("host keys must be unencrypted OpenSSH private keys (ssh-keygen -t ed25519 -N '' -f FILE)")
    })?;
    match rsa_bits(&key) {
        Some(bits) if bits < RSA_MIN_BITS => {
            return Err(CliError::runtime(format!(
                "host key {} is RSA {bits}: too short to be safe (ssh-audit fails it)",
                path.display()
            ))
            .with_hint(format!("make a new one: ssh-keygen -t rsa -b {RSA_GOOD_BITS} -N '' -f FILE")));
        }
        Some(bits) if bits < RSA_GOOD_BITS => tracing::warn!(
            path = %path.display(),
            "hint: host key is RSA {bits}; ssh-audit warns below {RSA_GOOD_BITS} bits (ssh-keygen -t rsa -b {RSA_GOOD_BITS})"
        ),
        _ => {}
    }
    Ok(key)
}

/// Where the host keys come from: the config's files, or the ones in `DATA_DIR/keys/` (some of which
/// may not exist yet).
pub fn paths(data_dir: &Path, configured: &[PathBuf]) -> Vec<PathBuf> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    GENERATED.iter().map(|(file, _)| data_dir.join("keys").join(file)).collect()
}

/// The ECDSA key an older Ferry generated, when it is there and the config does not choose the keys.
pub fn skipped_ecdsa(data_dir: &Path, configured: &[PathBuf]) -> Option<PathBuf> {
    let path = data_dir.join("keys").join(OLD_ECDSA);
    (configured.is_empty() && path.exists()).then_some(path)
}

/// Returns the host keys that are offered and, for each, the path it came from.
pub fn load_or_generate(data_dir: &Path, sftp: &SftpConfig) -> Result<Vec<(PrivateKey, PathBuf)>, CliError> {
    let configured = &sftp.host_keys;
    let mut keys = Vec::new();
    if !configured.is_empty() {
        for p in configured {
            keys.push((load(p)?, p.clone()));
        }
    } else {
        let dir = data_dir.join("keys");
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::runtime(format!("cannot create {}: {e}", dir.display())))?;
        crate::bootstrap::set_private(&dir, 0o700);
        for (file, kind) in GENERATED {
            let path = dir.join(file);
            let key = if path.exists() {
                load(&path)?
            } else {
                let key = generate(kind).map_err(|e| CliError::runtime(format!("generating {kind} host key: {e}")))?;
                // Written with mode 0600 from the start (ssh-key opens it so); the chmod covers an umask.
                key.write_openssh_file(&path, LineEnding::LF)
                    .map_err(|e| CliError::runtime(format!("writing host key {}: {e}", path.display())))?;
                crate::bootstrap::set_private(&path, 0o600);
                tracing::info!(path = %path.display(), "generated {kind} host key");
                key
            };
            keys.push((key, path));
        }
        if let Some(path) = skipped_ecdsa(data_dir, configured) {
            tracing::info!(
                path = %path.display(),
                "not offering the ECDSA host key an older Ferry generated (ssh-audit fails NIST P-256; every client \
                 Ferry supports has ed25519 or RSA); to offer it to old clients, list it in [sftp] host_keys next to {} and {}",
                dir.join(GENERATED[0].0).display(),
                dir.join(GENERATED[1].0).display(),
            );
        }
    }
    offered(keys, sftp)
}

/// Keeps the keys some configured host key algorithm uses; warns about the others; refuses to start
/// when none is left.
fn offered(keys: Vec<(PrivateKey, PathBuf)>, sftp: &SftpConfig) -> Result<Vec<(PrivateKey, PathBuf)>, CliError> {
    let algorithms = Algorithms::from_config(&sftp.algorithms).map_err(CliError::runtime)?;
    let (used, unused): (Vec<_>, Vec<_>) = keys.into_iter().partition(|(k, _)| !algorithms.offered_for(k).is_empty());
    for (key, path) in &unused {
        tracing::warn!(
            path = %path.display(),
            "hint: host key {} is not offered: no algorithm for it in [sftp] host_key_algorithms",
            key.algorithm()
        );
    }
    if used.is_empty() {
        return Err(CliError::usage(
            format!(
                "no host key can be offered: host_key_algorithms = \"{}\" fits none of the keys",
                sftp.algorithms.host_key_algorithms.join(",")
            ),
            "add the algorithm of a key you have (ssh-ed25519, rsa-sha2-512, ...) to [sftp] host_key_algorithms, or a key to host_keys",
        ));
    }
    Ok(used)
}

/// `SHA256:...` as OpenSSH prints it, with the key type name.
pub fn describe(key: &PrivateKey) -> (String, String) {
    let public = key.public_key();
    (public.algorithm().as_str().to_string(), public.fingerprint(HashAlg::Sha256).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferry-hostkeys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn generates_ed25519_and_rsa_private_to_the_owner() {
        let dir = tmp("gen");
        let keys = load_or_generate(&dir, &SftpConfig::default()).expect("generate");
        let algs: Vec<String> = keys.iter().map(|(k, _)| describe(k).0).collect();
        assert_eq!(algs, ["ssh-ed25519", "ssh-rsa"]);
        assert_eq!(rsa_bits(&keys[1].0), Some(3072));
        for (_, path) in &keys {
            let mode = std::fs::metadata(path).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
        assert!(!dir.join("keys").join(OLD_ECDSA).exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn refuses_a_key_file_others_may_read() {
        let dir = tmp("perm");
        let keys = load_or_generate(&dir, &SftpConfig::default()).expect("generate");
        let path = &keys[0].1;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = load_or_generate(&dir, &SftpConfig::default()).expect_err("refused");
        assert!(e.message.contains("UNPROTECTED PRIVATE KEY FILE"), "{}", e.message);
        assert_eq!(e.hint, Some(format!("chmod 600 {}", path.display())));
        let configured = SftpConfig { host_keys: vec![path.clone()], ..Default::default() };
        assert!(load_or_generate(&dir, &configured).is_err(), "a configured key too");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn ecdsa_only_when_configured_and_allowed() {
        let dir = tmp("ecdsa");
        load_or_generate(&dir, &SftpConfig::default()).expect("generate");
        let ecdsa = dir.join("keys").join(OLD_ECDSA);
        PrivateKey::random(&mut rand010::rng(), Algorithm::Ecdsa { curve: russh::keys::EcdsaCurve::NistP256 })
            .expect("key")
            .write_openssh_file(&ecdsa, LineEnding::LF)
            .expect("write");
        let keys = load_or_generate(&dir, &SftpConfig::default()).expect("load");
        assert_eq!(keys.len(), 2, "the old ECDSA key is skipped");
        assert_eq!(skipped_ecdsa(&dir, &[]), Some(ecdsa.clone()));
        let mut sftp = SftpConfig { host_keys: vec![ecdsa.clone()], ..Default::default() };
        assert_eq!(load_or_generate(&dir, &sftp).expect("configured").len(), 1);
        sftp.algorithms.host_key_algorithms = vec!["ssh-ed25519".into()];
        let e = load_or_generate(&dir, &sftp).expect_err("no algorithm for it");
        assert!(e.message.contains("no host key can be offered"), "{}", e.message);
        let _ = std::fs::remove_dir_all(dir);
    }
}
