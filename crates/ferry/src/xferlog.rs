//! The transfer log (`[log] xferlog`): one line per completed or cut-off transfer, SFTP and FTPS alike, in
//! the xferlog(5) format of wu-ftpd, ProFTPD and vsftpd, so existing reports and parsers read it:
//!
//! `current-time transfer-time remote-host file-size filename transfer-type special-action-flag direction
//! access-mode username service-name authentication-method authenticated-user-id completion-status`
//!
//! The file is opened for appending (created 0640) and reopened on SIGHUP, after logrotate moved it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_core::{TransferLog, TransferRecord};

/// The mode a new transfer log is created with (before the umask): it names users and files.
const XFERLOG_MODE: u32 = 0o640;

pub struct Xferlog {
    path: PathBuf,
    file: Mutex<File>,
    /// A write failed and was reported; the next failures stay quiet until a write succeeds again.
    failing: AtomicBool,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).create(true).mode(XFERLOG_MODE).open(path)
}

impl Xferlog {
    pub fn open(path: &Path) -> std::io::Result<Xferlog> {
        Ok(Xferlog { path: path.to_path_buf(), file: Mutex::new(open_append(path)?), failing: AtomicBool::new(false) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again (a new file if logrotate moved the old one away). On failure the old file
    /// stays in use.
    pub fn reopen(&self) -> std::io::Result<()> {
        let fresh = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.failing.store(false, Ordering::Relaxed);
        Ok(())
    }
}

impl TransferLog for Xferlog {
    fn record(&self, t: &TransferRecord<'_>) {
        let Some(line) = line(SystemTime::now(), t) else { return };
        // One write of the whole line to a file opened for appending: lines of concurrent sessions and
        // of other writers never interleave.
        let result = self.file.lock().unwrap_or_else(|e| e.into_inner()).write_all(line.as_bytes());
        match result {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "cannot write the transfer log {}: {e}; transfers go unrecorded there until a write succeeds (kill -HUP reopens it)",
                        self.path.display()
                    );
                }
            }
        }
    }
}

/// The xferlog line of a transfer, or `None` for one that moved no byte: the event does not say whether it
/// was an upload or a download, and SFTP does not report those at all.
fn line(now: SystemTime, t: &TransferRecord<'_>) -> Option<String> {
    let (direction, size) = match (t.bytes_read, t.bytes_written) {
        (0, 0) => return None,
        (_, 0) => ('o', t.bytes_read),
        (_, written) => ('i', written),
    };
    // Whole seconds, at least 1, as vsftpd.
    let secs = (t.duration_ms.saturating_add(500) / 1000).max(1);
    // The address without the port.
    let host = t.who.client.parse::<std::net::SocketAddr>().map(|a| a.ip().to_string());
    let host = host.unwrap_or_else(|_| t.who.client.clone());
    let service = if t.who.protocol == "sftp" { "sftp" } else { "ftp" };
    let status = if t.completed { 'c' } else { 'i' };
    Some(format!(
        "{} {secs} {} {size} {} b _ {direction} r {} {service} 0 * {status}\n",
        ctime(now),
        field(&host),
        field(t.path),
        field(&t.who.user),
    ))
}

/// A field without spaces or control characters (ProFTPD writes each as `_`), so that neither a file name
/// with spaces nor one a client chose to forge a line can shift the fields or split the line.
fn field(s: &str) -> String {
    let s: String = s.chars().map(|c| if c.is_whitespace() || c.is_control() { '_' } else { c }).collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `Sun Dec  6 22:25:30 2026`, as ctime(3), in UTC (vsftpd's default; local time would need the C library's
/// time zone code).
fn ctime(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = ferry_vfs::listing::civil(days);
    let s = secs.rem_euclid(86_400);
    // 1970-01-01 was a Thursday.
    let weekday = DAYS[(days + 4).rem_euclid(7) as usize];
    let month = MONTHS[(m as usize).saturating_sub(1) % 12];
    format!("{weekday} {month} {d:>2} {:02}:{:02}:{:02} {y}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ferry_core::Who;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn who(protocol: &'static str) -> Who {
        Who { user: "alice".into(), client: "127.0.0.1:50312".into(), protocol }
    }

    fn record<'a>(who: &'a Who, path: &'a str, read: u64, written: u64, completed: bool) -> TransferRecord<'a> {
        TransferRecord { who, path, bytes_read: read, bytes_written: written, duration_ms: 2400, completed }
    }

    #[test]
    fn ctime_format() {
        assert_eq!(ctime(at(0)), "Thu Jan  1 00:00:00 1970");
        // 2026-12-06T22:25:30Z
        assert_eq!(ctime(at(1_796_595_930)), "Sun Dec  6 22:25:30 2026");
        assert_eq!(ctime(at(951_782_400)), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn upload_and_download_lines() {
        let sftp = who("sftp");
        let up = line(at(0), &record(&sftp, "/in/my report.pdf", 0, 1234, true)).expect("a line");
        assert_eq!(up, "Thu Jan  1 00:00:00 1970 2 127.0.0.1 1234 /in/my_report.pdf b _ i r alice sftp 0 * c\n");
        let ftps = who("ftps");
        let down = line(at(0), &record(&ftps, "/a", 99, 0, false)).expect("a line");
        assert_eq!(down, "Thu Jan  1 00:00:00 1970 2 127.0.0.1 99 /a b _ o r alice ftp 0 * i\n");
        assert_eq!(line(at(0), &record(&ftps, "/empty", 0, 0, true)), None);
    }

    #[test]
    fn fields_cannot_shift_or_split_the_line() {
        let w = Who { user: "a b".into(), client: "[::1]:22".into(), protocol: "ftp" };
        let mut r = record(&w, "/x\n\tforged c\r", 0, 1, true);
        r.duration_ms = 10;
        let l = line(at(0), &r).expect("a line");
        assert_eq!(l, "Thu Jan  1 00:00:00 1970 1 ::1 1 /x__forged_c_ b _ i r a_b ftp 0 * c\n");
        assert_eq!(l.split_whitespace().count(), 18, "{l}");
    }

    #[test]
    fn appends_and_reopens_after_a_rotation() {
        let dir = std::env::temp_dir().join(format!("ferry-xferlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("xferlog");
        std::fs::write(&path, "old\n").expect("write");
        let log = Xferlog::open(&path).expect("opens");
        let w = who("sftp");
        log.record(&record(&w, "/one", 0, 1, true));
        let rotated = dir.join("xferlog.1");
        std::fs::rename(&path, &rotated).expect("rotate");
        log.record(&record(&w, "/two", 0, 1, true));
        log.reopen().expect("reopens");
        log.record(&record(&w, "/three", 0, 1, true));
        let old = std::fs::read_to_string(&rotated).expect("read");
        assert!(old.starts_with("old\n") && old.contains(" /one ") && old.contains(" /two "), "{old}");
        let new = std::fs::read_to_string(&path).expect("read");
        assert!(new.contains(" /three ") && new.lines().count() == 1, "{new}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
