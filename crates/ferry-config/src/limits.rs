//! Every limit in one place, with why it has the value it has.

use std::time::Duration;

/// The defender's defaults (`[defender]`): 10 failed logins from one address within 10 minutes ban it
/// for 30 minutes.
pub const DEFENDER_THRESHOLD: u32 = 10;
pub const DEFENDER_OBSERVATION: Duration = Duration::from_secs(600);
pub const DEFENDER_BAN: Duration = Duration::from_secs(1800);
/// Never banned automatically: this machine (fail2ban's default ignoreip).
pub const DEFENDER_SAFELIST: &[&str] = &["127.0.0.0/8", "::1/128"];
/// How long a stopping server lets running transfers finish before it closes them.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Time from TCP connect to a successful login (OpenSSH's LoginGraceTime is 120 s; we are stricter, and
/// a person typing a password still has time). `[limits] login_grace_secs`.
pub const DEFAULT_LOGIN_GRACE: Duration = Duration::from_secs(60);
/// Unauthenticated connections from one address. `[limits] per_source_max_startups`.
pub const DEFAULT_PER_SOURCE_MAX_STARTUPS: usize = 10;
/// An authenticated connection with no traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(900);
/// Password and key attempts per SSH connection (OpenSSH's MaxAuthTries is 6).
pub const MAX_AUTH_ATTEMPTS: usize = 6;
/// A failed login is answered no sooner than this, to slow down guessing.
pub const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(1500);
/// Connections the whole server holds at once; beyond this new ones are refused with a log line.
/// `[limits] max_connections`, lowered at start to fit the open-file limit (see [`FDS_PER_CONNECTION`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// File descriptors a connection may need while it transfers: its socket, an FTPS passive listener or
/// data connection, and the file. Connections are capped so that all of them fit under the open-file
/// limit with [`FD_RESERVE`] to spare.
pub const FDS_PER_CONNECTION: u64 = 4;
/// File descriptors kept free for everything else: the listeners, the user database, the upload journal,
/// blocking-pool work, directory listings.
pub const FD_RESERVE: u64 = 256;
/// SSH channel window: large enough that a single stream is not limited by round trips on fast links.
pub const SSH_WINDOW_SIZE: u32 = 16 * 1024 * 1024;
/// Largest SSH channel data packet we accept. Bigger packets mean less per-packet work, but russh refuses
/// any SSH packet over about 256 KiB on the wire (a client sending one is disconnected), so stay well
/// under that: a 256 KiB SFTP WRITE then arrives in two packets.
pub const SSH_MAX_PACKET_SIZE: u32 = 128 * 1024;
/// Default passive port range for FTPS data connections.
pub const DEFAULT_PASSIVE_PORTS: (u16, u16) = (50000, 51000);
/// On a listener serving several protocols: silence this long from a new client means an FTP client
/// waiting for the greeting (SSH and TLS clients speak at once). Configurable as
/// `server.detection_wait_ms`.
pub const DEFAULT_DETECTION_WAIT: Duration = Duration::from_millis(150);
/// After the FTP greeting on a listener that also serves SFTP: silence this long means an SSH client that
/// waits for the server's version line, and it is served SFTP. FTP clients answer the greeting at once.
pub const SSH_AFTER_GREETING_WAIT: Duration = Duration::from_secs(3);
