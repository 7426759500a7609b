//! The result: per port what it speaks and a list of checks (pass / warn / fail), as text for
//! people and as JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;

use crate::classify::Method;
use crate::ftp::FtpInfo;
use crate::ssh::SshInfo;
use crate::target::host_port;
use crate::tls::{CertInfo, TlsInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    /// The text prefix: readable without colour.
    fn prefix(self) -> &'static str {
        match self {
            Status::Pass => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable, dotted: `ssh.ciphers`, `ftp.auth_tls`, `tls.certificate.chain`, `sftp.upload`, ...
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    pub fn new(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
        Check { name: name.into(), status, detail: detail.into(), hint: None }
    }

    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Pass, detail)
    }

    pub fn warn(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Warn, detail)
    }

    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Fail, detail)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Check {
        self.hint = Some(hint.into());
        self
    }
}

/// What one way of opening the conversation got, when it did not identify a protocol (or said
/// something worth knowing, such as "this is an SSH port" to a TLS ClientHello).
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub method: Method,
    pub result: String,
}

/// The login, listing and transfer of one protocol on a port.
#[derive(Debug, Clone, Serialize)]
pub struct TransferInfo {
    /// `sftp`, `ftps` or `ftps-implicit`.
    pub protocol: String,
    pub user: String,
    pub file: String,
    pub bytes: u64,
    /// Entries in the listing of the login directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listed_entries: Option<usize>,
    pub upload_seconds: f64,
    pub download_seconds: f64,
    /// Megabytes (10^6 bytes) per second.
    pub upload_mb_per_s: f64,
    pub download_mb_per_s: f64,
    /// FTPS: the passive data port used last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_port: Option<u16>,
    /// FTPS: whether the data connections resumed the control connection's TLS session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_tls_resumed: Option<bool>,
}

/// One host:port.
#[derive(Debug, Clone, Serialize)]
pub struct PortReport {
    pub host: String,
    pub port: u16,
    /// The address connected to, when the name resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `ssh`, `ftp` (no TLS), `ftps` (AUTH TLS), `ftps-implicit`, `tls` (TLS, not FTP inside).
    pub protocols: Vec<String>,
    pub passed: bool,
    pub checks: Vec<Check>,
    pub attempts: Vec<Attempt>,
    pub ssh: Option<SshInfo>,
    pub tls: Option<TlsInfo>,
    pub ftp: Option<FtpInfo>,
    pub transfers: Vec<TransferInfo>,
    /// The port was one of the defaults, not asked for by the user.
    #[serde(skip)]
    pub(crate) default_port: bool,
}

impl PortReport {
    pub(crate) fn new(host: &str, port: u16, default_port: bool) -> PortReport {
        PortReport {
            host: host.to_string(),
            port,
            address: None,
            protocols: Vec::new(),
            passed: false,
            checks: Vec::new(),
            attempts: Vec::new(),
            ssh: None,
            tls: None,
            ftp: None,
            transfers: Vec::new(),
            default_port,
        }
    }

    /// At least one protocol identified, and no check failed.
    pub(crate) fn settle(&mut self) {
        self.passed = !self.protocols.is_empty() && self.checks.iter().all(|c| c.status != Status::Fail);
    }

    fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }
}

/// Everything `ferry probe` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub targets: Vec<PortReport>,
    pub passed: bool,
}

impl Report {
    pub(crate) fn new(targets: Vec<PortReport>) -> Report {
        // A port skipped as a closed default port does not fail the run (see `lib.rs`), so the
        // run passes when every port passed or was such a skip, and at least one port passed.
        let passed = targets.iter().any(|t| t.passed)
            && targets.iter().all(|t| t.passed || (t.protocols.is_empty() && t.count(Status::Fail) == 0));
        Report { targets, passed }
    }

    /// Exit status 0 iff this is true.
    pub fn all_passed(&self) -> bool {
        self.passed
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data structures cannot fail; keep a valid document if it ever does.
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\":{:?},\"passed\":false}}", e.to_string()))
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for t in &self.targets {
            render_port(t, &mut out);
            out.push('\n');
        }
        let failed = self.targets.iter().filter(|t| !t.passed && t.count(Status::Fail) > 0).count();
        let warnings: usize = self.targets.iter().map(|t| t.count(Status::Warn)).sum();
        let _ = if self.passed {
            writeln!(out, "result: passed ({} port(s), {warnings} warning(s))", self.targets.len())
        } else if failed > 0 {
            writeln!(out, "result: FAILED ({failed} of {} port(s) failed)", self.targets.len())
        } else {
            writeln!(out, "result: FAILED (no port speaks SSH, FTP or TLS)")
        };
        out
    }
}

/// A label column of 15 characters, so values line up.
fn field(out: &mut String, indent: &str, label: &str, value: &str) {
    let _ = writeln!(out, "{indent}{label:<15}{value}");
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

fn headline(p: &PortReport) -> String {
    let names: Vec<&str> = p
        .protocols
        .iter()
        .map(|p| match p.as_str() {
            "ssh" => "SSH (SFTP)",
            "ftps" => "FTP with AUTH TLS (explicit FTPS)",
            "ftp" => "FTP without TLS",
            "ftps-implicit" => "implicit FTPS",
            "tls" => "TLS (not FTP inside)",
            other => other,
        })
        .collect();
    if names.is_empty() {
        "nothing identified".into()
    } else {
        names.join(" + ")
    }
}

fn render_port(p: &PortReport, out: &mut String) {
    let addr = match &p.address {
        Some(a) if *a != p.host => format!(" ({a})"),
        _ => String::new(),
    };
    let _ = writeln!(out, "== {}{addr}: {}", host_port(&p.host, p.port), headline(p));
    if let Some(ssh) = &p.ssh {
        let _ = writeln!(out, "  SSH  {}", ssh.version.line);
        for line in &ssh.version.pre_lines {
            field(out, "    ", "banner line", line);
        }
        field(out, "    ", "key exchange", &list(&ssh.kex));
        field(out, "    ", "host keys", &list(&ssh.host_key_algorithms));
        field(out, "    ", "ciphers", &list(&ssh.ciphers));
        field(out, "    ", "MACs", &list(&ssh.macs));
        field(out, "    ", "compression", &list(&ssh.compression));
        for (i, k) in ssh.host_keys.iter().enumerate() {
            let label = if i == 0 { "fingerprints" } else { "" };
            field(out, "    ", label, &format!("{:<21}{}", k.algorithm, k.fingerprint));
        }
    }
    if let Some(ftp) = &p.ftp {
        let _ = writeln!(out, "  FTP  {}", ftp.greeting);
        field(out, "    ", "features", &list(&ftp.features));
        field(out, "    ", "AUTH TLS", if ftp.auth_tls { "offered" } else { "NOT offered" });
        if let Some(tls) = &ftp.tls {
            render_tls(tls, "  TLS after AUTH TLS", None, out);
        }
    }
    if let Some(tls) = &p.tls {
        let shown = p.ftp.as_ref().and_then(|f| f.tls.as_ref()).and_then(|t| t.certificate.as_ref());
        render_tls(tls, "  implicit TLS", shown.map(|c| c.sha256.as_str()), out);
    }
    for t in &p.transfers {
        let mut line = format!(
            "{} as {}: {} bytes up in {:.3} s ({:.1} MB/s), down in {:.3} s ({:.1} MB/s)",
            t.protocol, t.user, t.bytes, t.upload_seconds, t.upload_mb_per_s, t.download_seconds, t.download_mb_per_s
        );
        if let Some(port) = t.data_port {
            let _ = write!(line, ", data port {port}");
        }
        let _ = writeln!(out, "  transfer  {line}");
    }
    if !p.checks.is_empty() {
        let _ = writeln!(out, "  checks");
        let width = p.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &p.checks {
            let _ = writeln!(out, "    {}  {:<width$}  {}", c.status.prefix(), c.name, c.detail);
            if let Some(h) = &c.hint {
                let _ = writeln!(out, "          {:<width$}  hint: {h}", "");
            }
        }
    }
    if !p.attempts.is_empty() {
        let _ = writeln!(out, "  other attempts");
        for a in &p.attempts {
            let _ = writeln!(out, "    {}: {}", a.method.label(), a.result);
        }
    }
    let (w, f) = (p.count(Status::Warn), p.count(Status::Fail));
    let verdict = if p.passed {
        format!("passed ({w} warning(s))")
    } else if p.protocols.is_empty() && f == 0 {
        "not open (a default port; not counted as a failure)".to_string()
    } else {
        format!("FAILED ({f} failure(s), {w} warning(s))")
    };
    let _ = writeln!(out, "  => {verdict}");
}

/// `shown`: the fingerprint of a certificate already printed for this port, not to repeat it.
fn render_tls(tls: &TlsInfo, title: &str, shown: Option<&str>, out: &mut String) {
    let _ = writeln!(out, "{title}  {} {}", tls.version, tls.cipher);
    match &tls.certificate {
        Some(c) if Some(c.sha256.as_str()) == shown => field(out, "    ", "certificate", "the same as above"),
        Some(c) => render_cert(c, tls, out),
        None => {}
    }
    if let Some(g) = &tls.ftp_greeting {
        field(out, "    ", "FTP inside", g);
    }
    if !tls.ftp_features.is_empty() {
        field(out, "    ", "features", &list(&tls.ftp_features));
    }
}

fn render_cert(c: &CertInfo, tls: &TlsInfo, out: &mut String) {
    field(out, "    ", "subject", &c.subject);
    field(out, "    ", "SANs", &list(&c.sans));
    let issuer = if c.self_signed { format!("{} (self-signed)", c.issuer) } else { c.issuer.clone() };
    field(out, "    ", "issuer", &issuer);
    field(out, "    ", "valid", &format!("{} to {} ({} days left)", c.not_before, c.not_after, c.days_left));
    field(out, "    ", "key", &format!("{}, signed with {}", c.key, c.signature_algorithm));
    field(out, "    ", "SHA-256", &c.sha256);
    let chain = if tls.chain_valid {
        format!("trusted by the system roots ({} certificate(s) sent)", tls.chain_length)
    } else {
        format!(
            "NOT trusted by the system roots: {} ({} certificate(s) sent)",
            tls.trust_detail.as_deref().unwrap_or("unknown reason"),
            tls.chain_length
        )
    };
    field(out, "    ", "chain", &chain);
    let name = if tls.hostname_match { "matches" } else { "does NOT match" };
    field(out, "    ", "hostname", &format!("{name} {}", tls.hostname));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(protocols: &[&str], checks: Vec<Check>) -> PortReport {
        let mut p = PortReport::new("h", 22, false);
        p.protocols = protocols.iter().map(|s| s.to_string()).collect();
        p.checks = checks;
        p.settle();
        p
    }

    #[test]
    fn pass_warn_fail() {
        assert!(port(&["ssh"], vec![Check::pass("a", ""), Check::warn("b", "")]).passed);
        assert!(!port(&["ssh"], vec![Check::fail("a", "")]).passed);
        assert!(!port(&[], vec![]).passed, "nothing identified is not a pass");
        let r = Report::new(vec![port(&["ssh"], vec![Check::pass("a", "")])]);
        assert!(r.all_passed());
        let r = Report::new(vec![port(&["ssh"], vec![]), port(&["ftp"], vec![Check::fail("ftp.auth_tls", "")])]);
        assert!(!r.all_passed());
        // a closed default port with only a warning does not fail the run, but cannot pass it alone
        let closed = port(&[], vec![Check::warn("connect", "refused")]);
        assert!(Report::new(vec![port(&["ssh"], vec![]), closed.clone()]).all_passed());
        assert!(!Report::new(vec![closed]).all_passed());
        assert!(!Report::new(vec![]).all_passed());
    }

    #[test]
    fn text_and_json_shape() {
        let mut p = port(&["ftp"], vec![Check::fail("ftp.auth_tls", "no TLS").hint("enable TLS")]);
        p.attempts.push(Attempt { method: Method::SshHello, result: "answered with an FTP greeting".into() });
        let r = Report::new(vec![p]);
        let text = r.render_text();
        assert!(text.contains("== h:22: FTP without TLS"), "{text}");
        assert!(text.contains("FAIL  ftp.auth_tls  no TLS"), "{text}");
        assert!(text.contains("hint: enable TLS"), "{text}");
        assert!(text.contains("sending an SSH version line: answered with an FTP greeting"), "{text}");
        assert!(text.contains("result: FAILED"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
        assert_eq!(json["passed"], false);
        assert_eq!(json["targets"][0]["port"], 22);
        assert_eq!(json["targets"][0]["checks"][0]["status"], "fail");
        assert_eq!(json["targets"][0]["attempts"][0]["method"], "ssh_hello");
        assert!(json["targets"][0]["ssh"].is_null());
    }
}
