//! Every limit of the FTP layer in one place, with why it has the value it has. (Timeouts an admin may
//! want to change are in [`crate::FtpSettings`].)

use std::time::Duration;

pub use crate::proto::MAX_LINE;

/// How long a transfer command waits for the client's data connection (passive) or for ours to be
/// accepted (active) before answering 425. vsftpd's `accept_timeout` is 60 s, `connect_timeout` 60 s; 20 s
/// is plenty on any network where FTP still works.
pub const DATA_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A passive port (PASV/EPSV) that no data connection reaches within this is released. Clients connect
/// right after the 227/229 reply; a session also holds at most one passive port (a new PASV replaces it).
pub const PASSIVE_ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake (control after AUTH TLS, or a data connection) must finish within this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// A data connection on which nothing moves for this long is cut and the transfer answered 426 (vsftpd's
/// `data_connection_timeout` is 300 s).
pub const DATA_STALL_TIMEOUT: Duration = Duration::from_secs(300);
/// After the last byte of a download, how long we wait for the client to close its side before we drop
/// the socket. Closing while the client's close_notify is still unread would send a TCP RST, which can
/// make the client lose the end of the data it has not read yet.
pub const DATA_LINGER: Duration = Duration::from_secs(10);
/// How long a reply may take to write before the control connection counts as dead.
pub const REPLY_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Size of file reads and of upload chunks. Two are in flight per transfer (one on the disk, one on the
/// network), allocated for the transfer only, so an idle session holds none.
pub const CHUNK: usize = 256 * 1024;
/// Read buffer under a TLS data connection (see `crate::stream::TlsTransport`); per transfer only.
pub const TLS_READ_BUFFER: usize = 256 * 1024;
/// Bytes read from the control connection at once.
pub const CONTROL_READ: usize = 1024;
/// Pending (unaccepted) connections on a passive listener: the right client plus a few strays.
pub const PASSIVE_BACKLOG: u32 = 8;
/// STOU tries this many names before giving up.
pub const STOU_ATTEMPTS: u32 = 100;
