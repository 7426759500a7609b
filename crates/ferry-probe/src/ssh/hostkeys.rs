//! Host key fingerprints: one russh handshake per key type the server offers, each restricted to
//! that type, so the server has to show every key it has.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{cipher, client, kex, mac, Disconnect, Preferred, SshId};
use tokio::task::JoinSet;

use super::{HostKey, CLIENT_VERSION};
use crate::classify::explain_connect;
use crate::net::connect;

/// Key exchanges for the probe's own handshakes: the safe ones first, then the legacy ones, so
/// an old server still shows its keys (its weak algorithms are reported, not used against it).
const PROBE_KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::ECDH_SHA2_NISTP256,
    kex::ECDH_SHA2_NISTP384,
    kex::ECDH_SHA2_NISTP521,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G14_SHA256,
    kex::DH_G14_SHA1,
    kex::DH_GEX_SHA1,
    kex::DH_G1_SHA1,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

const PROBE_CIPHERS: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
    cipher::AES_256_CBC,
    cipher::AES_192_CBC,
    cipher::AES_128_CBC,
];

const PROBE_MACS: &[mac::Name] = &[
    mac::HMAC_SHA512_ETM,
    mac::HMAC_SHA256_ETM,
    mac::HMAC_SHA512,
    mac::HMAC_SHA256,
    mac::HMAC_SHA1_ETM,
    mac::HMAC_SHA1,
];

/// The client configuration of the probe's SSH connections, limited to `keys` when given.
pub fn client_config(keys: Option<Vec<Algorithm>>, timeout: Duration) -> client::Config {
    let mut preferred = Preferred {
        kex: Cow::Borrowed(PROBE_KEX),
        cipher: Cow::Borrowed(PROBE_CIPHERS),
        mac: Cow::Borrowed(PROBE_MACS),
        ..Preferred::DEFAULT
    };
    if let Some(keys) = keys {
        preferred.key = Cow::Owned(keys);
    }
    client::Config {
        client_id: SshId::Standard(Cow::Borrowed(CLIENT_VERSION)),
        preferred,
        inactivity_timeout: Some(timeout),
        nodelay: true,
        ..Default::default()
    }
}

/// The russh algorithm for a host key algorithm name, if russh can verify it.
fn russh_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "ssh-ed25519" => Algorithm::Ed25519,
        "ecdsa-sha2-nistp256" => Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
        "ecdsa-sha2-nistp384" => Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
        "ecdsa-sha2-nistp521" => Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
        "rsa-sha2-512" => Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
        "rsa-sha2-256" => Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
        "ssh-rsa" => Algorithm::Rsa { hash: None },
        _ => return None,
    })
}

/// One handshake per distinct key among `offered` (an RSA key is offered under up to three names;
/// the strongest is used once).
pub fn algorithms_to_fetch(offered: &[String]) -> Vec<(String, Algorithm)> {
    let mut out: Vec<(String, Algorithm)> = Vec::new();
    for name in offered {
        let Some(alg) = russh_algorithm(name) else { continue };
        if matches!(alg, Algorithm::Rsa { .. }) {
            if out.iter().any(|(_, a)| matches!(a, Algorithm::Rsa { .. })) {
                continue;
            }
            // Take the best RSA name the server offers, wherever it is in its list.
            let best = ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
                .into_iter()
                .find(|n| offered.iter().any(|o| o == n))
                .unwrap_or("ssh-rsa");
            if let Some(a) = russh_algorithm(best) {
                out.push((best.to_string(), a));
            }
            continue;
        }
        out.push((name.clone(), alg));
    }
    out
}

/// Keeps the server's key and accepts it: the probe reports keys, it does not judge them.
struct Capture(Arc<Mutex<Option<PublicKey>>>);

impl client::Handler for Capture {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(c) => c.public_key().clone().into(),
        };
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(key);
        }
        Ok(true)
    }
}

pub fn host_key(key: &PublicKey) -> HostKey {
    HostKey {
        algorithm: key.algorithm().as_str().to_string(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
    }
}

async fn fetch_one(addr: SocketAddr, name: String, alg: Algorithm, timeout: Duration) -> Result<HostKey, String> {
    let stream = connect(addr, timeout).await.map_err(|f| format!("{name}: {}", explain_connect(&f, addr.port()).0))?;
    let slot = Arc::new(Mutex::new(None));
    let config = Arc::new(client_config(Some(vec![alg]), timeout));
    let res = tokio::time::timeout(timeout, client::connect_stream(config, stream, Capture(slot.clone()))).await;
    let key = slot.lock().ok().and_then(|mut s| s.take());
    match res {
        Ok(Ok(handle)) => {
            let _ = handle.disconnect(Disconnect::ByApplication, "probe done", "en").await;
        }
        Ok(Err(e)) if key.is_none() => return Err(format!("{name}: handshake failed: {e}")),
        Err(_) if key.is_none() => return Err(format!("{name}: handshake timed out")),
        _ => {}
    }
    key.map(|k| host_key(&k)).ok_or_else(|| format!("{name}: the server showed no key"))
}

/// The host keys for the offered algorithms, in the server's order, and the errors met.
pub async fn fetch(addr: SocketAddr, offered: &[String], timeout: Duration) -> (Vec<HostKey>, Vec<String>) {
    let wanted = algorithms_to_fetch(offered);
    let mut set = JoinSet::new();
    for (i, (name, alg)) in wanted.into_iter().enumerate() {
        set.spawn(async move { (i, fetch_one(addr, name, alg, timeout).await) });
    }
    let mut results = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(r) = joined {
            results.push(r);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    for (_, r) in results {
        match r {
            Ok(k) => keys.push(k),
            Err(e) => errors.push(e),
        }
    }
    (keys, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_handshake_per_key_type() {
        let offered: Vec<String> =
            ["ssh-rsa", "rsa-sha2-256", "rsa-sha2-512", "ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-dss"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let names: Vec<String> = algorithms_to_fetch(&offered).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["rsa-sha2-512", "ecdsa-sha2-nistp256", "ssh-ed25519"]);
        let only_old: Vec<String> = vec!["ssh-rsa".into(), "ssh-dss".into()];
        let names: Vec<String> = algorithms_to_fetch(&only_old).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["ssh-rsa"]);
    }
}
