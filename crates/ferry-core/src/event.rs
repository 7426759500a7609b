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
    /// A limit refused something (a session beyond the user's maximum).
    LimitHit {
        who: Who,
        why: String,
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

/// One completed or cut-off transfer, as a transfer log (xferlog) records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferRecord<'a> {
    pub who: &'a Who,
    pub path: &'a str,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub duration_ms: u64,
    /// False when the transfer was cut off.
    pub completed: bool,
}

/// A second home for transfer events besides the process log. It is called on the session's task, so it
/// must be quick and must not fail loudly: a sink that cannot write reports it itself and carries on.
pub trait TransferLog: Send + Sync {
    fn record(&self, transfer: &TransferRecord<'_>);
}

/// Where events go: the process log (stderr), one line each, and transfers also to an optional
/// [`TransferLog`].
#[derive(Default)]
pub struct Events {
    transfer_log: Option<Arc<dyn TransferLog>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("transfer_log", &self.transfer_log.is_some()).finish()
    }
}

impl Events {
    pub fn new() -> Arc<Events> {
        Arc::new(Events::default())
    }

    /// Events that also record every transfer in `log`.
    pub fn with_transfer_log(log: Arc<dyn TransferLog>) -> Arc<Events> {
        Arc::new(Events { transfer_log: Some(log) })
    }

    pub fn emit(&self, e: Event) {
        if let Some(log) = &self.transfer_log {
            record_transfer(log.as_ref(), &e);
        }
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
            Event::LimitHit { who, why } => tracing::warn!(
                user = %who.user, client = %who.client, protocol = who.protocol, "limit: refused: {why}"
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

fn record_transfer(log: &dyn TransferLog, e: &Event) {
    let (who, path, bytes_read, bytes_written, duration_ms, completed) = match e {
        Event::Transfer { who, path, bytes_read, bytes_written, duration_ms } => {
            (who, path, *bytes_read, *bytes_written, *duration_ms, true)
        }
        Event::TransferInterrupted { who, path, bytes_read, bytes_written, duration_ms, .. } => {
            (who, path, *bytes_read, *bytes_written, *duration_ms, false)
        }
        _ => return,
    };
    log.record(&TransferRecord { who, path, bytes_read, bytes_written, duration_ms, completed });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, u64, bool)>>);

    impl TransferLog for Recorder {
        fn record(&self, t: &TransferRecord<'_>) {
            self.0.lock().expect("lock").push((t.path.to_string(), t.bytes_written, t.completed));
        }
    }

    #[test]
    fn transfers_and_only_transfers_reach_the_transfer_log() {
        let recorder = Arc::new(Recorder::default());
        let events = Events::with_transfer_log(recorder.clone());
        let who = Who { user: "alice".into(), client: "127.0.0.1:5000".into(), protocol: "sftp" };
        events.emit(Event::Login { who: who.clone(), method: Some("password") });
        events.emit(Event::Transfer {
            who: who.clone(),
            path: "/a".into(),
            bytes_read: 0,
            bytes_written: 5,
            duration_ms: 1,
        });
        events.emit(Event::TransferInterrupted {
            who: who.clone(),
            path: "/b".into(),
            bytes_read: 0,
            bytes_written: 3,
            duration_ms: 1,
            why: "connection lost".into(),
        });
        events.emit(Event::Delete { who: who.clone(), path: "/a".into() });
        events.emit(Event::Logout { who, duration_ms: 9 });
        let got = recorder.0.lock().expect("lock").clone();
        assert_eq!(got, vec![("/a".to_string(), 5, true), ("/b".to_string(), 3, false)]);
        Events::new().emit(Event::Mkdir {
            who: Who { user: "-".into(), client: "c".into(), protocol: "ftps" },
            path: "/d".into(),
        });
    }
}
