//! The SSH algorithms Ferry offers (`[sftp] kex`, `ciphers`, `macs`, `host_key_algorithms`): what it
//! supports, its defaults, and sshd_config's way of changing them. `"a,b"` replaces the list, `"+a,b"`
//! appends to the defaults, `"-a,b"` removes from them, `"^a,b"` puts them first; `*` and `?` match
//! like sshd's patterns. The defaults pass `ssh-audit` with no `[fail]`: every name below them is
//! only for old clients (see the README's legacy set).

use std::ops::Range;

use toml::Spanned;

/// One of the four lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmList {
    Kex,
    Ciphers,
    Macs,
    HostKeyAlgorithms,
}

/// Key exchange: the post-quantum hybrid and X25519 first; finite-field DH and NIST curves only for
/// old clients (ssh-audit rates the NIST curves `[fail]`, and every DH group `[warn]`).
const KEX: &[&str] = &[
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
    "diffie-hellman-group-exchange-sha256",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
];
const DEFAULT_KEX: &[&str] = KEX.split_at(3).0;

/// AEAD first; CTR (with the SHA-2 MACs) because libssh2, and so curl, has nothing else.
const CIPHERS: &[&str] = &[
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
];

/// Encrypt-then-MAC first; the plain SHA-2 HMACs (ssh-audit: `[warn]`) for libssh2.
const MACS: &[&str] =
    &["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512"];

/// `ssh-rsa` (RSA signatures with SHA-1) only for clients that know no other way to check an RSA key.
const HOST_KEY_ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];
/// A host key algorithm is offered only when a host key of its kind is loaded, and Ferry loads an
/// ECDSA key only when `host_keys` names one: by default that leaves ed25519 and RSA with SHA-2.
const DEFAULT_HOST_KEY_ALGORITHMS: &[&str] = HOST_KEY_ALGORITHMS.split_at(6).0;

impl AlgorithmList {
    pub const ALL: [AlgorithmList; 4] =
        [AlgorithmList::Kex, AlgorithmList::Ciphers, AlgorithmList::Macs, AlgorithmList::HostKeyAlgorithms];

    /// The key in `[sftp]`.
    pub fn key(self) -> &'static str {
        match self {
            AlgorithmList::Kex => "kex",
            AlgorithmList::Ciphers => "ciphers",
            AlgorithmList::Macs => "macs",
            AlgorithmList::HostKeyAlgorithms => "host_key_algorithms",
        }
    }

    /// What a name of this list is called in messages.
    fn what(self) -> &'static str {
        match self {
            AlgorithmList::Kex => "key exchange",
            AlgorithmList::Ciphers => "cipher",
            AlgorithmList::Macs => "MAC",
            AlgorithmList::HostKeyAlgorithms => "host key algorithm",
        }
    }

    /// Every name Ferry can offer, in its order of preference.
    pub fn supported(self) -> &'static [&'static str] {
        match self {
            AlgorithmList::Kex => KEX,
            AlgorithmList::Ciphers => CIPHERS,
            AlgorithmList::Macs => MACS,
            AlgorithmList::HostKeyAlgorithms => HOST_KEY_ALGORITHMS,
        }
    }

    pub fn defaults(self) -> &'static [&'static str] {
        match self {
            AlgorithmList::Kex => DEFAULT_KEX,
            AlgorithmList::Ciphers => CIPHERS,
            AlgorithmList::Macs => MACS,
            AlgorithmList::HostKeyAlgorithms => DEFAULT_HOST_KEY_ALGORITHMS,
        }
    }
}

/// The four lists in effect, each in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAlgorithms {
    pub kex: Vec<String>,
    pub ciphers: Vec<String>,
    pub macs: Vec<String>,
    pub host_key_algorithms: Vec<String>,
}

impl Default for SshAlgorithms {
    fn default() -> Self {
        let owned = |l: AlgorithmList| l.defaults().iter().map(|s| s.to_string()).collect();
        SshAlgorithms {
            kex: owned(AlgorithmList::Kex),
            ciphers: owned(AlgorithmList::Ciphers),
            macs: owned(AlgorithmList::Macs),
            host_key_algorithms: owned(AlgorithmList::HostKeyAlgorithms),
        }
    }
}

impl SshAlgorithms {
    pub fn get(&self, list: AlgorithmList) -> &[String] {
        match list {
            AlgorithmList::Kex => &self.kex,
            AlgorithmList::Ciphers => &self.ciphers,
            AlgorithmList::Macs => &self.macs,
            AlgorithmList::HostKeyAlgorithms => &self.host_key_algorithms,
        }
    }

    fn get_mut(&mut self, list: AlgorithmList) -> &mut Vec<String> {
        match list {
            AlgorithmList::Kex => &mut self.kex,
            AlgorithmList::Ciphers => &mut self.ciphers,
            AlgorithmList::Macs => &mut self.macs,
            AlgorithmList::HostKeyAlgorithms => &mut self.host_key_algorithms,
        }
    }
}

/// A list Ferry refuses: why, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmError {
    pub message: String,
    pub hint: String,
}

/// The four optional settings as read from the file; the span points at the value for `file:line`.
pub(crate) type RawLists = [(AlgorithmList, Option<Spanned<String>>); 4];

/// Checks the settings that are present; the others keep their defaults. On error: the value's span,
/// its key (`sftp.kex`) and why.
pub(crate) fn check(raw: RawLists) -> Result<SshAlgorithms, (Range<usize>, String, AlgorithmError)> {
    let mut out = SshAlgorithms::default();
    for (list, value) in raw {
        if let Some(value) = value {
            *out.get_mut(list) =
                parse(list, value.get_ref()).map_err(|e| (value.span(), format!("sftp.{}", list.key()), e))?;
        }
    }
    Ok(out)
}

/// Applies one sshd_config-style setting to the defaults of `list`.
pub fn parse(list: AlgorithmList, spec: &str) -> Result<Vec<String>, AlgorithmError> {
    let spec = spec.trim();
    let (op, names) = match spec.chars().next() {
        Some(c @ ('+' | '-' | '^')) => (Some(c), &spec[1..]),
        _ => (None, spec),
    };
    let mut given: Vec<&'static str> = Vec::new();
    for pattern in names.split(',').map(str::trim) {
        if pattern.is_empty() {
            return Err(error(list, format!("{spec:?} has an empty name (two commas, or a comma at an end)")));
        }
        let matched: Vec<&'static str> =
            list.supported().iter().copied().filter(|name| pattern_matches(pattern, name)).collect();
        if matched.is_empty() {
            // Taking away something Ferry never offers is harmless; anything else is a mistake.
            if op == Some('-') && weakness(pattern).is_some() {
                continue;
            }
            let why = match weakness(pattern) {
                Some(weak) => format!("{pattern:?} is not a {} Ferry offers: {weak}", list.what()),
                None => format!("{pattern:?} is not a {} Ferry knows", list.what()),
            };
            return Err(error(list, why));
        }
        for name in matched {
            if !given.contains(&name) {
                given.push(name);
            }
        }
    }
    let defaults = list.defaults();
    let result: Vec<&str> = match op {
        None => given,
        Some('+') => defaults.iter().copied().chain(given.iter().copied().filter(|n| !defaults.contains(n))).collect(),
        Some('-') => defaults.iter().copied().filter(|n| !given.contains(n)).collect(),
        _ => given.iter().copied().chain(defaults.iter().copied().filter(|n| !given.contains(n))).collect(),
    };
    if result.is_empty() {
        return Err(error(list, format!("{spec:?} leaves no {} to offer", list.what())));
    }
    Ok(result.into_iter().map(str::to_string).collect())
}

fn error(list: AlgorithmList, message: String) -> AlgorithmError {
    AlgorithmError {
        message,
        hint: format!(
            "Ferry supports {} = \"{}\" (default \"{}\"); \"+a,b\" adds to the defaults, \"-a,b\" removes, \
             \"^a,b\" puts first",
            list.key(),
            list.supported().join(","),
            list.defaults().join(","),
        ),
    }
}

/// Why a well-known name is not on Ferry's lists at all.
fn weakness(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    if n.contains("sha1") || n == "ssh-dss" || n.contains("md5") || n.contains("ripemd") {
        Some("it relies on SHA-1, MD5, RIPEMD or DSA, which are broken")
    } else if n.contains("-cbc") || n.contains("3des") || n.contains("arcfour") || n.contains("blowfish") {
        Some("CBC mode, 3DES, RC4 and Blowfish are broken or weak")
    } else if n == "none" {
        Some("no encryption or integrity is never offered")
    } else if n.starts_with("sntrup761") {
        Some("the SSH library Ferry uses does not implement it; mlkem768x25519-sha256 is its post-quantum kind")
    } else {
        None
    }
}

/// sshd's patterns: `*` any run of characters, `?` one character.
fn pattern_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((b'?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlgorithmList::*;

    fn p(list: AlgorithmList, spec: &str) -> Vec<String> {
        parse(list, spec).unwrap_or_else(|e| panic!("{spec}: {e:?}"))
    }

    #[test]
    fn defaults_are_the_audited_ones() {
        assert_eq!(Kex.defaults(), ["mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org"]);
        assert!(!HostKeyAlgorithms.defaults().contains(&"ssh-rsa"));
        for list in AlgorithmList::ALL {
            for name in list.defaults() {
                assert!(list.supported().contains(name), "{name}");
            }
            assert_eq!(p(list, &list.defaults().join(",")), list.defaults(), "the defaults parse to themselves");
        }
    }

    #[test]
    fn replace_append_remove_prepend() {
        assert_eq!(p(Ciphers, "aes256-ctr, aes128-gcm@openssh.com"), ["aes256-ctr", "aes128-gcm@openssh.com"]);
        let appended = p(Kex, "+ecdh-sha2-nistp256,curve25519-sha256");
        assert_eq!(appended.last().map(String::as_str), Some("ecdh-sha2-nistp256"));
        assert_eq!(appended.len(), 4, "a name already in the defaults is not added twice");
        let removed = p(Ciphers, "-aes128-ctr");
        assert!(!removed.contains(&"aes128-ctr".to_string()));
        assert_eq!(removed.len(), CIPHERS.len() - 1);
        let first = p(Ciphers, "^chacha20-poly1305@openssh.com");
        assert_eq!(first[0], "chacha20-poly1305@openssh.com");
        assert_eq!(first.len(), CIPHERS.len());
        assert_eq!(p(Macs, "-hmac-sha1"), MACS, "removing what Ferry never offers is harmless");
    }

    #[test]
    fn patterns() {
        assert_eq!(
            p(Ciphers, "-*-ctr"),
            ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]
        );
        assert_eq!(p(Kex, "+ecdh-sha2-*").len(), 6);
        assert_eq!(p(Macs, "hmac-sha2-???-etm@openssh.com").len(), 2);
        assert!(pattern_matches("*", ""));
        assert!(!pattern_matches("a?", "a"));
    }

    #[test]
    fn refusals_say_why_and_list_what_works() {
        let e = parse(Ciphers, "aes128-ctr,aes128-ctrr").expect_err("typo");
        assert!(e.message.contains("\"aes128-ctrr\" is not a cipher Ferry knows"), "{e:?}");
        assert!(e.hint.contains("aes256-gcm@openssh.com") && e.hint.contains("\"+a,b\""), "{e:?}");
        let e = parse(Macs, "+hmac-sha1").expect_err("weak");
        assert!(e.message.contains("broken"), "{e:?}");
        assert!(parse(Ciphers, "-aes128-ctrr").is_err(), "a typo is refused even when removing");
        assert!(parse(Kex, "").is_err());
        assert!(parse(Kex, "curve25519-sha256,,").is_err());
        let e = parse(Macs, "-hmac-sha2-*").expect_err("nothing left");
        assert!(e.message.contains("leaves no MAC"), "{e:?}");
        assert!(parse(Kex, "kex-strict-s-v00@openssh.com").is_err(), "pseudo-algorithms are Ferry's business");
    }

    #[test]
    fn every_weak_family_is_refused_with_its_reason() {
        let broken = "it relies on SHA-1, MD5, RIPEMD or DSA, which are broken";
        let weak = "CBC mode, 3DES, RC4 and Blowfish are broken or weak";
        for (name, why) in [
            ("diffie-hellman-group14-sha1", broken),
            ("ssh-dss", broken),
            ("hmac-md5", broken),
            ("hmac-ripemd160", broken),
            ("aes256-cbc", weak),
            ("3des-ctr", weak),
            ("arcfour256", weak),
            ("blowfish-ctr", weak),
        ] {
            assert_eq!(weakness(name), Some(why), "{name}");
        }
        assert_eq!(weakness("none"), Some("no encryption or integrity is never offered"));
        assert!(weakness("sntrup761x25519-sha512@openssh.com").is_some_and(|w| w.contains("mlkem768x25519")));
        assert_eq!(weakness("aes128-ctrr"), None, "a typo is not a weakness");
        assert_eq!(weakness("ssh-dss-cert"), None, "only the exact name ssh-dss");
    }

    #[test]
    fn each_list_is_read_back_by_its_name() {
        let a = SshAlgorithms::default();
        assert_eq!(a.get(Kex), Kex.defaults());
        assert_eq!(a.get(Ciphers), CIPHERS);
        assert_eq!(a.get(Macs), MACS);
        assert_eq!(a.get(HostKeyAlgorithms), HostKeyAlgorithms.defaults());
    }

    #[test]
    fn template_shows_the_defaults() {
        for list in AlgorithmList::ALL {
            let line = format!("# {} = \"{}\"\n", list.key(), list.defaults().join(","));
            assert!(crate::ANNOTATED_TEMPLATE.contains(&line), "the template lacks {line}");
        }
    }

    #[test]
    fn file_errors_name_line_and_key() {
        let e = crate::Config::parse(std::path::Path::new("ferry.toml"), "[sftp]\n\nciphers = \"+aes128-cbc\"\n")
            .expect_err("refused");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("sftp.ciphers")));
        assert!(e.to_string().starts_with("ferry.toml:3: sftp.ciphers: \"aes128-cbc\""), "{e}");
        let c = crate::Config::parse(std::path::Path::new("f"), "[sftp]\nmacs = \"-hmac-sha2-512\"\n").expect("ok");
        assert_eq!(c.sftp.algorithms.macs.len(), MACS.len() - 1);
        assert_eq!(c.sftp.algorithms.kex, Kex.defaults());
    }
}
