//! SSH: the version line and the server's algorithm offer (read by hand, no client needed), host
//! key fingerprints (through russh, one connection per key type), and the checks on all of it.

pub mod hostkeys;
pub mod login;
pub mod rules;
pub mod sftp;
pub mod sftp_client;
pub mod wire;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::net::{read_until, ReadEnd};
use crate::report::{Check, Status};
use rules::{assess, merged, Category, Finding, Severity};
use wire::{parse_ident, parse_kexinit, parse_packet, Ident, KexInit, WireError};

/// What the probe says it is, to the server and in its logs.
pub const CLIENT_VERSION: &str = "SSH-2.0-FerryProbe_1.0";

#[derive(Debug, Clone, Serialize)]
pub struct HostKey {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`
    pub algorithm: String,
    /// `SHA256:…` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// What the SSH side of a port showed.
#[derive(Debug, Clone, Serialize)]
pub struct SshInfo {
    pub version: Ident,
    pub kex: Vec<String>,
    pub host_key_algorithms: Vec<String>,
    pub ciphers: Vec<String>,
    pub macs: Vec<String>,
    pub compression: Vec<String>,
    pub host_keys: Vec<HostKey>,
    /// Weak algorithms and notes.
    pub findings: Vec<Finding>,
    pub strict_kex: bool,
    pub terrapin: bool,
    /// Why the algorithm offer could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kexinit_error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_key_errors: Vec<String>,
    #[serde(skip)]
    only_weak: Vec<Category>,
}

/// The version line and the algorithm offer, read from one connection.
#[derive(Debug, Clone)]
pub struct SshScan {
    pub ident: Ident,
    pub kexinit: Result<KexInit, String>,
}

impl SshScan {
    pub fn into_info(self) -> SshInfo {
        let (k, err) = match self.kexinit {
            Ok(k) => (k, None),
            Err(e) => (KexInit::default(), Some(e)),
        };
        let a = assess(&k);
        SshInfo {
            version: self.ident,
            strict_kex: k.kex.iter().any(|n| n == rules::STRICT_KEX_SERVER),
            kex: k.kex.clone(),
            host_key_algorithms: k.host_key.clone(),
            ciphers: merged(&k.ciphers_c2s, &k.ciphers_s2c),
            macs: merged(&k.macs_c2s, &k.macs_s2c),
            compression: merged(&k.compression_c2s, &k.compression_s2c),
            host_keys: Vec::new(),
            findings: a.findings,
            terrapin: err.is_none() && a.terrapin,
            kexinit_error: err,
            host_key_errors: Vec::new(),
            only_weak: a.only_weak,
        }
    }
}

/// Reads the server's version line (completing `buf`, which may hold its start), sends ours when
/// `sent_version` is false, and reads the server's KEXINIT. Err: the bytes are not SSH.
pub async fn scan(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    sent_version: bool,
    deadline: Instant,
) -> Result<SshScan, String> {
    let end = read_until(stream, &mut buf, deadline, |b| !matches!(parse_ident(b), Err(WireError::Incomplete))).await;
    let (ident, used) = match parse_ident(&buf) {
        Ok(v) => v,
        Err(WireError::Invalid(e)) => return Err(e),
        Err(WireError::Incomplete) => return Err(format!("the SSH version line did not complete ({})", ended(&end))),
    };
    buf.drain(..used);
    if !sent_version {
        let line = format!("{CLIENT_VERSION}\r\n");
        let failed = match tokio::time::timeout_at(deadline, stream.write_all(line.as_bytes())).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("cannot send the client version line: {e}")),
            Err(_) => Some("timed out sending the client version line".to_string()),
        };
        if let Some(why) = failed {
            return Ok(SshScan { ident, kexinit: Err(why) });
        }
    }
    let end = read_until(stream, &mut buf, deadline, |b| !matches!(parse_packet(b), Err(WireError::Incomplete))).await;
    let kexinit = match parse_packet(&buf) {
        Ok((payload, _)) => parse_kexinit(payload).map_err(|e| match e {
            WireError::Invalid(e) => e,
            WireError::Incomplete => "truncated KEXINIT".into(),
        }),
        Err(WireError::Invalid(e)) => Err(format!("the server's first packet is not SSH: {e}")),
        Err(WireError::Incomplete) => Err(match end {
            ReadEnd::Eof | ReadEnd::Reset => "the server closed the connection after the version exchange, before \
                offering algorithms (an SSH-1-only server, or it refuses this client: MaxStartups, fail2ban, \
                tcp wrappers, an allow list?)"
                .to_string(),
            other => format!("no algorithm offer from the server ({})", ended(&other)),
        }),
    };
    Ok(SshScan { ident, kexinit })
}

fn ended(end: &ReadEnd) -> String {
    match end {
        ReadEnd::Enough => "complete".into(),
        ReadEnd::Eof => "the server closed the connection".into(),
        ReadEnd::Timeout => "timed out".into(),
        ReadEnd::Reset => "the server reset the connection".into(),
        ReadEnd::Error(e) => e.to_string(),
    }
}

fn findings_text(findings: &[&Finding]) -> String {
    findings.iter().map(|f| format!("{} ({})", f.algorithm, f.reason)).collect::<Vec<_>>().join(", ")
}

/// The sshd_config keyword that lists each category, for hints.
fn config_keyword(c: Category) -> &'static str {
    match c {
        Category::Kex => "KexAlgorithms",
        Category::HostKey => "HostKeyAlgorithms",
        Category::Cipher => "Ciphers",
        Category::Mac => "MACs",
    }
}

pub fn checks(info: &SshInfo) -> Vec<Check> {
    let mut out = Vec::new();
    let v = &info.version;
    out.push(match v.proto.as_str() {
        "2.0" => Check::pass("ssh.version", format!("SSH-2.0, software {}", v.software)),
        "1.99" => {
            Check::warn("ssh.version", format!("SSH-1.99: also speaks SSH-1, broken since 2001 ({})", v.software))
                .hint("turn SSH protocol 1 off")
        }
        other => {
            Check::fail("ssh.version", format!("SSH-{other}: only SSH protocol 1, which is broken ({})", v.software))
                .hint("upgrade the server to SSH-2")
        }
    });
    if let Some(e) = &info.kexinit_error {
        out.push(Check::fail("ssh.algorithms", e.clone()));
        return out;
    }
    for (cat, name, offered) in [
        (Category::Kex, "ssh.kex", &info.kex),
        (Category::HostKey, "ssh.host_key_algorithms", &info.host_key_algorithms),
        (Category::Cipher, "ssh.ciphers", &info.ciphers),
        (Category::Mac, "ssh.macs", &info.macs),
    ] {
        let weak: Vec<&Finding> =
            info.findings.iter().filter(|f| f.category == cat && f.severity == Severity::Weak).collect();
        let notes: Vec<&Finding> =
            info.findings.iter().filter(|f| f.category == cat && f.severity == Severity::Note).collect();
        let mut detail = format!("{} offered", offered.len());
        if !notes.is_empty() {
            detail.push_str(&format!("; note: {}", findings_text(&notes)));
        }
        let check = if info.only_weak.contains(&cat) {
            Check::fail(name, format!("every {} offered is weak: {}", cat.label(), findings_text(&weak))).hint(format!(
                "modern clients refuse this server; offer current algorithms ({} in sshd_config)",
                config_keyword(cat)
            ))
        } else if !weak.is_empty() {
            let removal: Vec<String> = weak.iter().map(|f| f.algorithm.clone()).collect();
            Check::warn(name, format!("weak {}s offered: {}", cat.label(), findings_text(&weak))).hint(format!(
                "remove them, e.g. `{} -{}` in sshd_config",
                config_keyword(cat),
                removal.join(",")
            ))
        } else {
            Check::pass(name, detail)
        };
        out.push(check);
    }
    if info.terrapin {
        out.push(
            Check::warn(
                "ssh.terrapin",
                "offers chacha20-poly1305 or CBC with EtM MACs without strict key exchange: open to the Terrapin \
                 attack (CVE-2023-48795)",
            )
            .hint("update the server (OpenSSH 9.6+ and current libraries offer strict key exchange)"),
        );
    }
    let keys = &info.host_keys;
    if keys.is_empty() {
        let why = if info.host_key_errors.is_empty() {
            "no host key type this probe can read is offered".to_string()
        } else {
            info.host_key_errors.join("; ")
        };
        out.push(Check::warn("ssh.host_keys", format!("could not read a host key: {why}")));
    } else {
        let list: Vec<String> = keys.iter().map(|k| format!("{} {}", k.algorithm, k.fingerprint)).collect();
        let mut c = Check::new("ssh.host_keys", Status::Pass, list.join(", "));
        if !info.host_key_errors.is_empty() {
            c = Check::warn("ssh.host_keys", format!("{}; but {}", list.join(", "), info.host_key_errors.join("; ")));
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::tests::{kexinit_payload, packet};

    fn ident(proto: &str) -> Ident {
        Ident {
            line: format!("SSH-{proto}-Test_1"),
            proto: proto.into(),
            software: "Test_1".into(),
            comments: None,
            pre_lines: Vec::new(),
        }
    }

    fn info(kex: &str, hk: &str, cipher: &str, mac: &str) -> SshInfo {
        let payload = kexinit_payload(kex, hk, cipher, mac);
        let k = parse_kexinit(&payload).expect("kexinit");
        let mut i = SshScan { ident: ident("2.0"), kexinit: Ok(k) }.into_info();
        i.host_keys.push(HostKey { algorithm: "ssh-ed25519".into(), fingerprint: "SHA256:x".into() });
        i
    }

    fn status_of(checks: &[Check], name: &str) -> Option<Status> {
        checks.iter().find(|c| c.name == name).map(|c| c.status)
    }

    #[test]
    fn modern_server_passes() {
        let i = info(
            "curve25519-sha256,kex-strict-s-v00@openssh.com",
            "ssh-ed25519,rsa-sha2-512",
            "aes256-gcm@openssh.com,aes128-ctr",
            "hmac-sha2-256-etm@openssh.com",
        );
        let c = checks(&i);
        assert!(c.iter().all(|c| c.status == Status::Pass), "{c:?}");
    }

    #[test]
    fn weak_algorithms_warn_only_weak_fails() {
        let i = info(
            "curve25519-sha256,diffie-hellman-group1-sha1",
            "ssh-ed25519,ssh-rsa",
            "aes128-ctr,3des-cbc",
            "hmac-md5",
        );
        let c = checks(&i);
        assert_eq!(status_of(&c, "ssh.kex"), Some(Status::Warn));
        assert_eq!(status_of(&c, "ssh.ciphers"), Some(Status::Warn));
        assert_eq!(status_of(&c, "ssh.macs"), Some(Status::Fail), "hmac-md5 is the only MAC");
        assert_eq!(status_of(&c, "ssh.host_key_algorithms"), Some(Status::Pass), "ssh-rsa is a note");
        let hk = c.iter().find(|c| c.name == "ssh.host_key_algorithms").expect("check");
        assert!(hk.detail.contains("ssh-rsa"), "{}", hk.detail);
        let kex = c.iter().find(|c| c.name == "ssh.kex").expect("check");
        assert!(kex.hint.as_deref().unwrap_or("").contains("KexAlgorithms -diffie-hellman-group1-sha1"));
    }

    #[test]
    fn version_rules_and_missing_kexinit() {
        let mut i = SshScan { ident: ident("1.5"), kexinit: Err("closed".into()) }.into_info();
        let c = checks(&i);
        assert_eq!(status_of(&c, "ssh.version"), Some(Status::Fail));
        assert_eq!(status_of(&c, "ssh.algorithms"), Some(Status::Fail));
        i.version = ident("1.99");
        assert_eq!(status_of(&checks(&i), "ssh.version"), Some(Status::Warn));
    }

    #[tokio::test]
    async fn scan_reads_ident_and_kexinit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut s, _) = listener.accept().await.expect("accept");
            s.write_all(b"SSH-2.0-Fake_1.0\r\n").await.expect("write");
            let mut line = vec![0u8; 64];
            let n = s.read(&mut line).await.expect("read");
            assert!(line[..n].starts_with(b"SSH-2.0-FerryProbe"));
            let payload = kexinit_payload("curve25519-sha256", "ssh-ed25519", "aes128-ctr", "hmac-sha2-256");
            s.write_all(&packet(&payload)).await.expect("write");
        });
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let scan = scan(&mut s, Vec::new(), false, deadline).await.expect("scan");
        assert_eq!(scan.ident.software, "Fake_1.0");
        assert_eq!(scan.kexinit.expect("kexinit").kex, vec!["curve25519-sha256"]);
        server.await.expect("server");
    }
}
