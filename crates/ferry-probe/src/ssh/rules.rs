//! Which SSH algorithms are weak, and why, in words an administrator can act on.

use serde::Serialize;

use super::wire::KexInit;

/// The KEXINIT marker of OpenSSH's strict key exchange, the fix for Terrapin (CVE-2023-48795).
pub const STRICT_KEX_SERVER: &str = "kex-strict-s-v00@openssh.com";

/// A list of the KEXINIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Kex,
    HostKey,
    Cipher,
    Mac,
}

impl Category {
    pub fn label(self) -> &'static str {
        match self {
            Category::Kex => "key exchange",
            Category::HostKey => "host key algorithm",
            Category::Cipher => "cipher",
            Category::Mac => "MAC",
        }
    }
}

/// Weak: should be turned off. Note: worth knowing, nothing to fix now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Weak,
    Note,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub category: Category,
    pub algorithm: String,
    pub severity: Severity,
    pub reason: &'static str,
}

/// The verdict on one algorithm name, `None` when there is nothing to say.
pub fn judge(category: Category, name: &str) -> Option<(Severity, &'static str)> {
    use Severity::{Note, Weak};
    let n = name.to_ascii_lowercase();
    match category {
        Category::Kex => match n.as_str() {
            "diffie-hellman-group1-sha1" => Some((Weak, "1024-bit group and SHA-1")),
            "diffie-hellman-group14-sha1" | "diffie-hellman-group-exchange-sha1" => Some((Weak, "SHA-1")),
            _ => None,
        },
        Category::HostKey => {
            if n.starts_with("ssh-dss") {
                Some((Weak, "DSA keys are 1024-bit with SHA-1; OpenSSH 9.8 and later refuse them"))
            } else if n == "ssh-rsa" || n.starts_with("ssh-rsa-cert") {
                Some((Note, "SHA-1 signatures; clients that know rsa-sha2-256/512 use those with the same key"))
            } else {
                None
            }
        }
        Category::Cipher => {
            if n == "none" {
                Some((Weak, "no encryption"))
            } else if n.starts_with("arcfour") {
                Some((Weak, "RC4 is broken"))
            } else if n.starts_with("3des") {
                Some((Weak, "3DES: 64-bit blocks (Sweet32)"))
            } else if n.starts_with("blowfish") || n.starts_with("cast128") {
                Some((Weak, "64-bit blocks (Sweet32)"))
            } else if n.ends_with("-cbc") || n.contains("-cbc@") {
                Some((Weak, "CBC mode (plaintext-recovery attacks on SSH); use CTR or GCM"))
            } else {
                None
            }
        }
        Category::Mac => {
            if n == "none" {
                Some((Weak, "no integrity protection"))
            } else if n.starts_with("hmac-md5") {
                Some((Weak, "MD5"))
            } else if n.starts_with("hmac-sha1") {
                Some((Weak, "SHA-1"))
            } else if n.starts_with("umac-64") {
                Some((Weak, "64-bit tags"))
            } else {
                None
            }
        }
    }
}

/// What the server's KEXINIT says about its configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub findings: Vec<Finding>,
    /// Lists in which every algorithm is weak: modern clients refuse such a server outright.
    pub only_weak: Vec<Category>,
    /// Offers an algorithm Terrapin attacks and not strict key exchange.
    pub terrapin: bool,
}

/// Both directions' lists as one, first occurrence first (servers send the same list twice).
pub fn merged(a: &[String], b: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(a.len());
    for name in a.iter().chain(b) {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// KEXINIT "algorithms" that only signal extensions (RFC 8308, OpenSSH strict KEX).
fn is_marker(name: &str) -> bool {
    name.starts_with("ext-info-") || name.starts_with("kex-strict-")
}

pub fn assess(k: &KexInit) -> Assessment {
    let lists = [
        (Category::Kex, k.kex.clone()),
        (Category::HostKey, k.host_key.clone()),
        (Category::Cipher, merged(&k.ciphers_c2s, &k.ciphers_s2c)),
        (Category::Mac, merged(&k.macs_c2s, &k.macs_s2c)),
    ];
    let mut a = Assessment::default();
    for (category, names) in &lists {
        let mut real = 0;
        let mut weak = 0;
        for name in names.iter().filter(|n| !is_marker(n)) {
            real += 1;
            if let Some((severity, reason)) = judge(*category, name) {
                if severity == Severity::Weak {
                    weak += 1;
                }
                a.findings.push(Finding { category: *category, algorithm: name.clone(), severity, reason });
            }
        }
        // AEAD ciphers (…-gcm@openssh.com, chacha20-poly1305) ignore the MAC list, so a MAC list of
        // only weak MACs is harmless when every cipher is AEAD; judge the MACs only when one is used.
        let macs_unused = *category == Category::Mac && lists[2].1.iter().all(|c| is_aead(c));
        if real > 0 && weak == real && !macs_unused {
            a.only_weak.push(*category);
        }
    }
    let ciphers = &lists[2].1;
    let macs = &lists[3].1;
    let strict = k.kex.iter().any(|n| n == STRICT_KEX_SERVER);
    let chacha = ciphers.iter().any(|c| c == "chacha20-poly1305@openssh.com");
    let cbc_etm = ciphers.iter().any(|c| c.ends_with("-cbc") || c.contains("-cbc@"))
        && macs.iter().any(|m| m.ends_with("-etm@openssh.com"));
    a.terrapin = !strict && (chacha || cbc_etm);
    a
}

fn is_aead(cipher: &str) -> bool {
    cipher.contains("gcm") || cipher.starts_with("chacha20-poly1305")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    fn kexinit(kex: &str, hk: &str, ciphers: &str, macs: &str) -> KexInit {
        KexInit {
            kex: names(kex),
            host_key: names(hk),
            ciphers_c2s: names(ciphers),
            ciphers_s2c: names(ciphers),
            macs_c2s: names(macs),
            macs_s2c: names(macs),
            ..KexInit::default()
        }
    }

    #[test]
    fn weak_names() {
        use Category::*;
        for (c, n) in [
            (Kex, "diffie-hellman-group1-sha1"),
            (Kex, "diffie-hellman-group14-sha1"),
            (Kex, "diffie-hellman-group-exchange-sha1"),
            (Cipher, "aes128-cbc"),
            (Cipher, "3des-cbc"),
            (Cipher, "arcfour256"),
            (Cipher, "blowfish-cbc"),
            (Cipher, "rijndael-cbc@lysator.liu.se"),
            (Mac, "hmac-sha1"),
            (Mac, "hmac-sha1-etm@openssh.com"),
            (Mac, "hmac-md5-96"),
            (Mac, "umac-64@openssh.com"),
            (HostKey, "ssh-dss"),
        ] {
            assert_eq!(judge(c, n).map(|j| j.0), Some(Severity::Weak), "{n}");
        }
        for (c, n) in [
            (Kex, "curve25519-sha256"),
            (Kex, "diffie-hellman-group14-sha256"),
            (Kex, "sntrup761x25519-sha512@openssh.com"),
            (Cipher, "aes256-ctr"),
            (Cipher, "aes128-gcm@openssh.com"),
            (Cipher, "chacha20-poly1305@openssh.com"),
            (Mac, "hmac-sha2-256-etm@openssh.com"),
            (Mac, "umac-128@openssh.com"),
            (HostKey, "ssh-ed25519"),
            (HostKey, "rsa-sha2-512"),
        ] {
            assert_eq!(judge(c, n), None, "{n}");
        }
        assert_eq!(judge(HostKey, "ssh-rsa").map(|j| j.0), Some(Severity::Note));
    }

    #[test]
    fn modern_openssh_has_only_the_ssh_rsa_note() {
        let k = kexinit(
            "sntrup761x25519-sha512@openssh.com,curve25519-sha256,ext-info-s,kex-strict-s-v00@openssh.com",
            "rsa-sha2-512,rsa-sha2-256,ssh-ed25519",
            "chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com",
            "umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
        );
        let a = assess(&k);
        assert!(a.findings.is_empty(), "{:?}", a.findings);
        assert!(a.only_weak.is_empty());
        assert!(!a.terrapin);
    }

    #[test]
    fn old_server_only_weak_and_terrapin() {
        let k = kexinit(
            "diffie-hellman-group1-sha1,ext-info-s",
            "ssh-dss,ssh-rsa",
            "aes128-cbc,3des-cbc",
            "hmac-sha1,hmac-sha1-etm@openssh.com",
        );
        let a = assess(&k);
        assert_eq!(a.only_weak, vec![Category::Kex, Category::Cipher, Category::Mac]);
        assert!(a.terrapin, "CBC with EtM and no strict kex");
        assert!(a.findings.iter().any(|f| f.algorithm == "ssh-rsa" && f.severity == Severity::Note));
        // ssh-rsa is a note, so the host key list is not "only weak"
        assert!(!a.only_weak.contains(&Category::HostKey));
    }

    #[test]
    fn terrapin_needs_no_strict_kex() {
        let mut k = kexinit("curve25519-sha256", "ssh-ed25519", "chacha20-poly1305@openssh.com", "hmac-sha2-256");
        assert!(assess(&k).terrapin);
        k.kex.push(STRICT_KEX_SERVER.into());
        assert!(!assess(&k).terrapin);
    }

    #[test]
    fn weak_macs_do_not_matter_with_aead_ciphers_only() {
        let k = kexinit("curve25519-sha256", "ssh-ed25519", "aes128-gcm@openssh.com", "hmac-sha1");
        let a = assess(&k);
        assert!(a.only_weak.is_empty());
        assert_eq!(a.findings.len(), 1, "the weak MAC is still listed");
    }

    #[test]
    fn merged_keeps_order_and_dedupes() {
        assert_eq!(merged(&names("a,b"), &names("b,c")), names("a,b,c"));
    }
}
