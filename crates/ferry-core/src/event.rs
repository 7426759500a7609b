//! One stream of events for everything a session does, whatever its protocol: the log is written here and
//! only here, so SFTP and FTPS report the same things with the same fields.

use std::sync::Arc;

/// Who did something: the user (`-` before login), the client's address and the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub user: String,
    pub client: String,
    pub protocol: &'static str,
}

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    Login {
        who: Who,
        method: Option<&'static str>,
    },
    LoginFailed {
        who: Who,
        method: Option<&'static str>,
        why: String,
    },
    Logout {
        who: Who,
        duration_ms: u64,
    },
    Transfer {
        who: Who,
        path: String,
        bytes_read: u64,
        bytes_written: u64,
        duration_ms: u64,
    },
    /// A transfer cut off; `why` says how and what became of an upload.
    TransferInterrupted {
        who: Who,
        path: String,
        bytes_read: u64,
        bytes_written: u64,
        duration_ms: u64,
        why: String,
    },
    Delete {
        who: Who,
        path: String,
    },
    Rename {
        who: Who,
        from: String,
        to: String,
    },
    Mkdir {
        who: Who,
        path: String,
    },
    Rmdir {
        who: Who,
        path: String,
    },
    Symlink {
        who: Who,
        target: String,
        link: String,
    },
    /// The defender banned an address.
    Ban {
        ip: std::net::IpAddr,
        secs: u64,
        reason: String,
    },
    /// An operation the user's permission rules do not allow.
    Denied {
        who: Who,
        perm: &'static str,
        path: String,
    },
}

/// Where events go. Today: the process log (stderr), one line each.
#[derive(Debug, Default)]
pub struct Events {}

impl Events {
    pub fn new() -> Arc<Events> {
        Arc::new(Events {})
    }

    pub fn emit(&self, e: Event) {
        match e {
            Event::Login { who, method: Some(method) } => {
                tracing::info!(user = %who.user, client = %who.client, protocol = who.protocol, method, "login")
            }
            Event::Login { who, method: None } => {
                tracing::info!(user = %who.user, client = %who.client, protocol = who.protocol, "login")
            }
            Event::LoginFailed { who, method: Some(method), why } => tracing::warn!(
                user = %who.user, client = %who.client, protocol = who.protocol, method, "login failed: {why}"
            ),
            Event::LoginFailed { who, method: None, why } => {
                tracing::warn!(user = %who.user, client = %who.client, protocol = who.protocol, "login failed: {why}")
            }
            Event::Logout { who, duration_ms } => {
                tracing::info!(user = %who.user, client = %who.client, protocol = who.protocol, duration_ms, "logout")
            }
            Event::Transfer { who, path, bytes_read, bytes_written, duration_ms } => tracing::info!(
                user = %who.user, client = %who.client, protocol = who.protocol, path = %path,
                bytes_read, bytes_written, duration_ms, "transfer"
            ),
            Event::TransferInterrupted { who, path, bytes_read, bytes_written, duration_ms, why } => {
                // An upload cut off is worth the admin's attention; a download the client stopped is routine.
                if bytes_written > 0 {
                    tracing::warn!(
                        user = %who.user, client = %who.client, protocol = who.protocol, path = %path,
                        bytes_read, bytes_written, duration_ms, "transfer interrupted: {why}"
                    )
                } else {
                    tracing::info!(
                        user = %who.user, client = %who.client, protocol = who.protocol, path = %path,
                        bytes_read, bytes_written, duration_ms, "transfer interrupted: {why}"
                    )
                }
            }
            Event::Delete { who, path } => {
                tracing::info!(user = %who.user, client = %who.client, protocol = who.protocol, path = %path, "delete")
            }
            Event::Rename { who, from, to } => tracing::info!(
                user = %who.user, client = %who.client, protocol = who.protocol, from = %from, to = %to, "rename"
            ),
            Event::Mkdir { who, path } => {
                tracing::info!(user = %who.user, client = %who.client, protocol = who.protocol, path = %path, "mkdir")
            }
            Event::Rmdir { who, path } => {
                tracing::info!(user = %who.user, client = %who.client, protocol = who.protocol, path = %path, "rmdir")
            }
            Event::Denied { who, perm, path } => tracing::warn!(
                user = %who.user, client = %who.client, protocol = who.protocol, permission = perm, path = %path,
                "permission denied: {perm} is not allowed here"
            ),
            Event::Ban { ip, secs, reason } => tracing::warn!(
                client = %ip, ban_secs = secs,
                "banned for {}: {reason} (`ferry ban remove {ip}` lifts it)", crate::defender::show_secs(secs)
            ),
            Event::Symlink { who, target, link } => tracing::info!(
                user = %who.user, client = %who.client, protocol = who.protocol, target = %target, link = %link, "symlink"
            ),
        }
    }
}
