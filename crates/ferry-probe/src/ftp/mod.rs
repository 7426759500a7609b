//! FTP: the greeting, FEAT, AUTH TLS and the certificate behind it; the checks on them.

pub mod control;
pub mod login;
pub mod reply;

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::report::Check;
use crate::tls::{client_config, server_name_or_ip, tls_checks, TlsInfo};
use control::Control;
use reply::{offers_auth_tls, parse_feat, Reply};

/// What the plain-greeting side of a port showed.
#[derive(Debug, Clone, Serialize)]
pub struct FtpInfo {
    /// `220 (vsFTPd 3.0.3)`
    pub greeting: String,
    pub greeting_code: u16,
    /// The FEAT lines, `AUTH TLS`, `PBSZ`, ...
    pub features: Vec<String>,
    /// FEAT was answered with 211.
    pub feat_supported: bool,
    /// The reply to FEAT when it was not 211.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feat_reply: Option<String>,
    /// FEAT lists AUTH TLS.
    pub auth_tls_listed: bool,
    /// AUTH TLS was accepted (234) and the handshake worked.
    pub auth_tls: bool,
    /// The reply to AUTH TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_tls_reply: Option<String>,
    /// Why TLS after AUTH TLS failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_error: Option<String>,
    pub tls: Option<TlsInfo>,
}

impl FtpInfo {
    fn new(greeting: &Reply) -> FtpInfo {
        FtpInfo {
            greeting: greeting.summary(),
            greeting_code: greeting.code,
            features: Vec::new(),
            feat_supported: false,
            feat_reply: None,
            auth_tls_listed: false,
            auth_tls: false,
            auth_tls_reply: None,
            tls_error: None,
            tls: None,
        }
    }

    /// `ftps` when TLS works after AUTH TLS, else `ftp`.
    pub fn protocol(&self) -> &'static str {
        if self.auth_tls {
            "ftps"
        } else {
            "ftp"
        }
    }
}

/// What FEAT said: the feature lines, whether AUTH TLS is among them, and the reply when it was
/// not a feature list.
pub struct Feat {
    pub lines: Vec<String>,
    pub auth_tls: bool,
    pub refused: Option<String>,
}

/// Asks FEAT on `control`.
pub async fn feat<S: AsyncRead + AsyncWrite + Unpin>(control: &mut Control<S>) -> Feat {
    match control.cmd("FEAT").await {
        Ok(r) if r.code == 211 => {
            let f = parse_feat(&r);
            let lines =
                f.iter().map(|f| if f.params.is_empty() { f.name.clone() } else { format!("{} {}", f.name, f.params) });
            Feat { lines: lines.collect(), auth_tls: offers_auth_tls(&f), refused: None }
        }
        Ok(r) => Feat { lines: Vec::new(), auth_tls: false, refused: Some(r.summary()) },
        Err(e) => Feat { lines: Vec::new(), auth_tls: false, refused: Some(format!("no reply: {e}")) },
    }
}

/// The plain-greeting conversation: greeting (completing `first`), FEAT, AUTH TLS and the TLS
/// handshake, QUIT. Err when the greeting is not an FTP reply after all.
pub async fn scan_plain(
    stream: TcpStream,
    first: Vec<u8>,
    host: &str,
    ip: IpAddr,
    timeout: Duration,
) -> Result<FtpInfo, String> {
    let mut control = Control::new(stream, first, timeout);
    let greeting = control.reply().await.map_err(|e| e.to_string())?;
    let mut info = FtpInfo::new(&greeting);
    if greeting.code != 220 {
        control.quit().await;
        return Ok(info);
    }
    let f = feat(&mut control).await;
    info.feat_supported = f.refused.is_none();
    (info.features, info.auth_tls_listed, info.feat_reply) = (f.lines, f.auth_tls, f.refused);
    let auth = match control.cmd("AUTH TLS").await {
        Ok(r) => r,
        Err(e) => {
            info.auth_tls_reply = Some(format!("(no reply: {e})"));
            return Ok(info);
        }
    };
    info.auth_tls_reply = Some(auth.summary());
    if auth.code != 234 {
        control.quit().await;
        return Ok(info);
    }
    let tls = async {
        let config = client_config().map_err(|e| format!("TLS set-up failed: {e}"))?;
        control.start_tls(config, server_name_or_ip(host, ip)).await
    };
    match tls.await {
        Ok(tls_control) => {
            info.auth_tls = true;
            info.tls = Some(TlsInfo::from_connection(tls_control.get_ref().get_ref().1, host, "explicit"));
            tls_control.quit().await;
        }
        Err(e) => info.tls_error = Some(e),
    }
    Ok(info)
}

pub fn checks(info: &FtpInfo) -> Vec<Check> {
    let mut out = Vec::new();
    if info.greeting_code != 220 {
        let hint = match info.greeting_code {
            421 => "the server is full or refuses this address (connection limits, allow lists)",
            120 => "the server is starting; try again later",
            _ => "is this an FTP server?",
        };
        out.push(
            Check::fail("ftp.greeting", format!("the server does not accept clients: {}", info.greeting)).hint(hint),
        );
        return out;
    }
    out.push(Check::pass("ftp.greeting", info.greeting.clone()));
    out.push(if info.feat_supported {
        Check::pass("ftp.feat", format!("{} features", info.features.len()))
    } else {
        Check::warn(
            "ftp.feat",
            format!(
                "FEAT is not answered ({}): clients cannot discover AUTH TLS, EPSV, UTF8",
                info.feat_reply.as_deref().unwrap_or("no reply")
            ),
        )
    });
    let reply = info.auth_tls_reply.clone().unwrap_or_default();
    if info.auth_tls {
        let detail = if info.auth_tls_listed {
            "offered and working".to_string()
        } else {
            "works, though FEAT does not list it".to_string()
        };
        out.push(Check::pass("ftp.auth_tls", detail));
    } else if let Some(e) = &info.tls_error {
        out.push(Check::fail("ftp.auth_tls", format!("AUTH TLS accepted ({reply}), but {e}")));
    } else {
        out.push(
            Check::fail(
                "ftp.auth_tls",
                format!("the server offers no TLS ({reply}): passwords and files cross the network in clear"),
            )
            .hint("enable TLS (vsftpd: ssl_enable=YES; ProFTPD: mod_tls; Ferry: --listen ftps=ADDR)"),
        );
    }
    if let Some(tls) = &info.tls {
        out.extend(tls_checks("ftp.tls", tls));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    fn info(code: u16, auth: bool, reply: &str) -> FtpInfo {
        let greeting = Reply { code, lines: vec![format!("{code} hello")] };
        let mut i = FtpInfo::new(&greeting);
        i.feat_supported = true;
        i.auth_tls = auth;
        i.auth_tls_listed = auth;
        i.auth_tls_reply = Some(reply.into());
        i
    }

    fn status(checks: &[Check], name: &str) -> Option<Status> {
        checks.iter().find(|c| c.name == name).map(|c| c.status)
    }

    #[test]
    fn no_tls_fails() {
        let c = checks(&info(220, false, "530 Please login with USER and PASS."));
        assert_eq!(status(&c, "ftp.greeting"), Some(Status::Pass));
        assert_eq!(status(&c, "ftp.auth_tls"), Some(Status::Fail));
        let auth = c.iter().find(|c| c.name == "ftp.auth_tls").expect("check");
        assert!(auth.detail.contains("offers no TLS"), "{}", auth.detail);
        assert_eq!(info(220, false, "").protocol(), "ftp");
    }

    #[test]
    fn refusing_greeting_fails() {
        let c = checks(&info(421, false, ""));
        assert_eq!(c.len(), 1);
        assert_eq!(status(&c, "ftp.greeting"), Some(Status::Fail));
        assert!(c[0].hint.as_deref().unwrap_or("").contains("full"));
    }

    #[test]
    fn tls_failure_after_234() {
        let mut i = info(220, false, "234 go");
        i.tls_error = Some("the TLS handshake failed: x".into());
        let c = checks(&i);
        assert_eq!(status(&c, "ftp.auth_tls"), Some(Status::Fail));
        assert!(c.iter().any(|c| c.detail.contains("AUTH TLS accepted (234 go), but the TLS handshake failed")));
    }
}
