//! The SSH algorithms the server offers: the checked `[sftp]` lists (ferry-config) in russh's terms,
//! plus the two markers every Ferry server sends, `ext-info-s` (RFC 8308) and strict key exchange
//! (against Terrapin, CVE-2023-48795). The defaults pass `ssh-audit` with no `[fail]`: mlkem768x25519
//! and curve25519 key exchange; ed25519 and RSA (SHA-2) host keys; AEAD ciphers first, then CTR with
//! SHA-2 HMACs, because libssh2 (curl, many embedded clients) has nothing else.

use std::borrow::Cow;

use ferry_config::SshAlgorithms;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};
use russh::{cipher, kex, mac, Preferred};

/// What the server offers, in order of preference.
#[derive(Debug, Clone)]
pub struct Algorithms {
    kex: Vec<kex::Name>,
    host_keys: Vec<Algorithm>,
    ciphers: Vec<cipher::Name>,
    macs: Vec<mac::Name>,
}

impl Default for Algorithms {
    fn default() -> Self {
        Algorithms::from_config(&SshAlgorithms::default()).expect("the default lists are all implemented")
    }
}

/// A host key algorithm by its SSH name.
fn host_key_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "ssh-ed25519" => Algorithm::Ed25519,
        "rsa-sha2-512" => Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
        "rsa-sha2-256" => Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
        "ssh-rsa" => Algorithm::Rsa { hash: None },
        "ecdsa-sha2-nistp256" => Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
        "ecdsa-sha2-nistp384" => Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
        "ecdsa-sha2-nistp521" => Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
        _ => return None,
    })
}

fn names<T>(list: &[String], what: &str, lookup: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    list.iter().map(|n| lookup(n).ok_or_else(|| format!("{what} {n} is not implemented by the SSH library"))).collect()
}

impl Algorithms {
    /// The configured lists in russh's names; an error only if ferry-config lets through a name russh
    /// lacks (a unit test keeps the two in step).
    pub fn from_config(c: &SshAlgorithms) -> Result<Algorithms, String> {
        Ok(Algorithms {
            kex: names(&c.kex, "key exchange", |n| kex::Name::try_from(n).ok())?,
            host_keys: names(&c.host_key_algorithms, "host key algorithm", host_key_algorithm)?,
            ciphers: names(&c.ciphers, "cipher", |n| cipher::Name::try_from(n).ok())?,
            macs: names(&c.macs, "MAC", |n| mac::Name::try_from(n).ok())?,
        })
    }

    /// For russh's server configuration.
    pub fn preferred(&self) -> Preferred {
        let mut kex = self.kex.clone();
        kex.extend([kex::EXTENSION_SUPPORT_AS_SERVER, kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER]);
        Preferred {
            kex: Cow::Owned(kex),
            key: Cow::Owned(self.host_keys.clone()),
            cipher: Cow::Owned(self.ciphers.clone()),
            mac: Cow::Owned(self.macs.clone()),
            ..Preferred::default()
        }
    }

    /// The host key algorithms `key` is offered with, in order (none: the key is not used).
    pub fn offered_for(&self, key: &PrivateKey) -> Vec<String> {
        self.host_keys
            .iter()
            .filter(|a| match a {
                Algorithm::Rsa { .. } => key.algorithm().is_rsa(),
                a => key.algorithm() == **a,
            })
            .map(|a| a.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_config::AlgorithmList;

    #[test]
    fn every_supported_name_is_implemented() {
        for list in AlgorithmList::ALL {
            let all: Vec<String> = list.supported().iter().map(|s| s.to_string()).collect();
            let mut c = SshAlgorithms::default();
            match list {
                AlgorithmList::Kex => c.kex = all,
                AlgorithmList::Ciphers => c.ciphers = all,
                AlgorithmList::Macs => c.macs = all,
                AlgorithmList::HostKeyAlgorithms => c.host_key_algorithms = all,
            }
            let a = Algorithms::from_config(&c).unwrap_or_else(|e| panic!("{e}"));
            if list == AlgorithmList::HostKeyAlgorithms {
                let back: Vec<String> = a.host_keys.iter().map(|k| k.to_string()).collect();
                assert_eq!(back, list.supported(), "host key names round-trip");
            }
        }
    }

    #[test]
    fn default_offer() {
        let p = Algorithms::default().preferred();
        let kex: Vec<&str> = p.kex.iter().map(|k| k.as_ref()).collect();
        assert_eq!(
            kex,
            [
                "mlkem768x25519-sha256",
                "curve25519-sha256",
                "curve25519-sha256@libssh.org",
                "ext-info-s",
                "kex-strict-s-v00@openssh.com"
            ]
        );
        let ciphers: Vec<&str> = p.cipher.iter().map(|c| c.as_ref()).collect();
        assert_eq!(
            &ciphers[..3],
            ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]
        );
        assert!(!kex.contains(&"ecdh-sha2-nistp256") && !kex.iter().any(|k| k.starts_with("diffie-hellman")));
    }

    #[test]
    fn host_keys_are_offered_by_kind() {
        let a = Algorithms::default();
        let ed = PrivateKey::random(&mut rand010::rng(), Algorithm::Ed25519).expect("key");
        assert_eq!(a.offered_for(&ed), ["ssh-ed25519"]);
        let ec =
            PrivateKey::random(&mut rand010::rng(), Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 }).expect("key");
        assert_eq!(a.offered_for(&ec), ["ecdsa-sha2-nistp256"]);
        let c = SshAlgorithms { host_key_algorithms: vec!["ssh-ed25519".into()], ..Default::default() };
        assert!(Algorithms::from_config(&c).expect("ok").offered_for(&ec).is_empty());
    }
}
