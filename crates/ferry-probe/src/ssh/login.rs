//! The SFTP login check: log in (password, keyboard-interactive with the password, or a key),
//! list the login directory, upload, download and compare, remove, report throughput.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse};
use russh::keys::{load_secret_key, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, MethodKind};

use super::hostkeys::client_config;
use super::sftp::SftpError;
use super::sftp_client::SftpClient;
use crate::classify::explain_connect;
use crate::net::connect;
use crate::report::{Check, TransferInfo};
use crate::transfer::{mb_per_s, test_data, test_file_name, Credentials};

/// Rounds of keyboard-interactive prompts answered before giving up (PAM asks once or twice).
const MAX_KBD_ROUNDS: usize = 4;

/// Accepts the host key: its fingerprints are in the report for the user to compare.
struct AcceptKey;

impl client::Handler for AcceptKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

fn methods(remaining: &russh::MethodSet) -> String {
    let names: Vec<&str> = remaining.iter().map(<&str>::from).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Logs in; Ok(()) or the reason in words.
async fn authenticate(handle: &mut client::Handle<AcceptKey>, creds: &Credentials) -> Result<(), String> {
    let user = creds.user.clone();
    let map = |e: russh::Error| format!("the connection broke during login: {e}");
    if let Some(path) = &creds.key {
        let key = load_secret_key(path, None).map_err(|e| {
            format!("cannot use the key {}: {e} (an encrypted key cannot be used here)", path.display())
        })?;
        let hash = match handle.best_supported_rsa_hash().await {
            Ok(h) => h.flatten(),
            Err(_) => None,
        };
        match handle
            .authenticate_publickey(user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(map)?
        {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure { remaining_methods, .. } if creds.password.is_none() => {
                return Err(format!(
                    "the server refused the key for user {user} (it would take: {})",
                    methods(&remaining_methods)
                ));
            }
            AuthResult::Failure { .. } => {}
        }
    }
    let Some(password) = &creds.password else {
        return Err("no password or key given".into());
    };
    let remaining = match handle.authenticate_password(user.clone(), password.clone()).await.map_err(map)? {
        AuthResult::Success => return Ok(()),
        AuthResult::Failure { remaining_methods, .. } => remaining_methods,
    };
    // Servers that check passwords through PAM often offer only keyboard-interactive.
    if remaining.contains(&MethodKind::KeyboardInteractive) {
        let mut reply = handle.authenticate_keyboard_interactive_start(user.clone(), None).await.map_err(map)?;
        for _ in 0..MAX_KBD_ROUNDS {
            match reply {
                KeyboardInteractiveAuthResponse::Success => return Ok(()),
                KeyboardInteractiveAuthResponse::Failure { .. } => break,
                KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                    let answers = prompts.iter().map(|_| password.clone()).collect();
                    reply = handle.authenticate_keyboard_interactive_respond(answers).await.map_err(map)?;
                }
            }
        }
    }
    Err(format!("the server refused the password for user {user} (it would take: {})", methods(&remaining)))
}

/// Runs the whole check; the checks are named `sftp.*`.
pub async fn check(addr: SocketAddr, creds: &Credentials, timeout: Duration) -> (Vec<Check>, Option<TransferInfo>) {
    let mut checks = Vec::new();
    let stream = match connect(addr, timeout).await {
        Ok(s) => s,
        Err(f) => {
            let (detail, hint) = explain_connect(&f, addr.port());
            checks.push(Check::fail("sftp.login", detail).hint(hint));
            return (checks, None);
        }
    };
    let config = Arc::new(client_config(None, timeout));
    let mut handle = match tokio::time::timeout(timeout, client::connect_stream(config, stream, AcceptKey)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            checks.push(Check::fail("sftp.login", format!("SSH handshake failed: {e}")));
            return (checks, None);
        }
        Err(_) => {
            checks.push(Check::fail("sftp.login", "SSH handshake timed out"));
            return (checks, None);
        }
    };
    let auth = tokio::time::timeout(timeout * 2, authenticate(&mut handle, creds)).await;
    match auth {
        Ok(Ok(())) => checks.push(Check::pass("sftp.login", format!("logged in as {}", creds.user))),
        Ok(Err(e)) => {
            checks.push(Check::fail("sftp.login", e).hint("check the user name and password or key"));
            return (checks, None);
        }
        Err(_) => {
            checks.push(Check::fail("sftp.login", "login timed out"));
            return (checks, None);
        }
    }
    let info = sftp_session(&mut handle, creds, timeout, &mut checks).await;
    let _ = handle.disconnect(Disconnect::ByApplication, "probe done", "en").await;
    (checks, info)
}

/// Asks for the sftp subsystem and waits for the answer (russh returns before it comes).
async fn subsystem(channel: &mut russh::Channel<client::Msg>, timeout: Duration) -> Result<(), String> {
    channel.request_subsystem(true, "sftp").await.map_err(|e| e.to_string())?;
    let answer = async {
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => return Ok(()),
                Some(ChannelMsg::Failure) => return Err("request denied".to_string()),
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return Err("the channel was closed".to_string()),
                Some(_) => {}
            }
        }
    };
    tokio::time::timeout(timeout, answer).await.unwrap_or_else(|_| Err("no answer (timed out)".into()))
}

async fn sftp_session(
    handle: &mut client::Handle<AcceptKey>,
    creds: &Credentials,
    timeout: Duration,
    checks: &mut Vec<Check>,
) -> Option<TransferInfo> {
    let channel = match tokio::time::timeout(timeout, handle.channel_open_session()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            checks.push(Check::fail("sftp.subsystem", format!("the server refused a session channel: {e}")));
            return None;
        }
        Err(_) => {
            checks.push(Check::fail("sftp.subsystem", "opening a session channel timed out"));
            return None;
        }
    };
    let mut channel = channel;
    if let Err(e) = subsystem(&mut channel, timeout).await {
        checks.push(
            Check::fail("sftp.subsystem", format!("the server refused the sftp subsystem: {e}"))
                .hint("enable SFTP (OpenSSH: `Subsystem sftp internal-sftp` in sshd_config)"),
        );
        return None;
    }
    let (mut sftp, version) = match SftpClient::start(channel.into_stream(), timeout).await {
        Ok(v) => v,
        Err(e) => {
            checks.push(
                Check::fail("sftp.subsystem", format!("no SFTP server answered on the channel: {e}"))
                    .hint("shell start-up files that print text break SFTP; or the sftp subsystem is missing"),
            );
            return None;
        }
    };
    checks.push(Check::pass("sftp.subsystem", format!("SFTP version {version}")));
    let home = match sftp.realpath(".").await {
        Ok(h) => h,
        Err(e) => {
            checks.push(Check::fail("sftp.list", format!("cannot resolve the login directory: {e}")));
            return None;
        }
    };
    let listed = match sftp.list(&home).await {
        Ok(n) => {
            checks.push(Check::pass("sftp.list", format!("{n} entries in {home}")));
            Some(n)
        }
        Err(e) => {
            checks.push(Check::fail("sftp.list", format!("cannot list {home}: {e}")));
            None
        }
    };
    let name = test_file_name();
    let path = if home.ends_with('/') { format!("{home}{name}") } else { format!("{home}/{name}") };
    let data = test_data();
    let started = Instant::now();
    if let Err(e) = sftp.upload(&path, &data).await {
        let hint = match e {
            SftpError::Status { code: 3, .. } => "the user may not write to the login directory",
            _ => "check the server's log",
        };
        checks.push(Check::fail("sftp.upload", format!("cannot upload {path}: {e}")).hint(hint));
        let _ = sftp.remove(&path).await;
        return None;
    }
    let up = started.elapsed();
    checks.push(Check::pass(
        "sftp.upload",
        format!("{} bytes to {path} at {} MB/s", data.len(), mb_per_s(data.len(), up)),
    ));
    let started = Instant::now();
    let down = match sftp.download(&path, data.len()).await {
        Ok(back) if back == data => {
            let took = started.elapsed();
            checks.push(Check::pass(
                "sftp.download",
                format!("{} bytes at {} MB/s, contents match", back.len(), mb_per_s(back.len(), took)),
            ));
            Some(took)
        }
        Ok(_) => {
            checks.push(Check::fail("sftp.download", "the file read back differs from the one written"));
            None
        }
        Err(e) => {
            checks.push(Check::fail("sftp.download", format!("cannot download {path}: {e}")));
            None
        }
    };
    match sftp.remove(&path).await {
        Ok(()) => checks.push(Check::pass("sftp.remove", format!("removed {path}"))),
        Err(e) => {
            checks.push(Check::fail("sftp.remove", format!("cannot remove {path}: {e}")).hint("remove it by hand"))
        }
    }
    let down = down?;
    Some(TransferInfo::measured("sftp", &creds.user, path, data.len(), listed, up, down))
}
