//! How metadata is shown to people, the same way in every protocol: `ls -l` lines (SFTP's longname, FTP's
//! LIST, which clients parse) and civil dates. Civil-date arithmetic is Howard Hinnant's, to avoid a date
//! dependency.

use crate::{FileKind, Metadata};

/// Civil date (year, month, day) from days since 1970-01-01.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `ls -l` style date: "Mon dd hh:mm" within six months of `now`, "Mon dd  yyyy" otherwise.
pub fn ls_date(mtime: i64, now: i64) -> String {
    let (y, m, d) = civil(mtime.div_euclid(86_400));
    let secs = mtime.rem_euclid(86_400);
    let month = MONTHS[(m as usize).saturating_sub(1) % 12];
    if (now - mtime).abs() < 182 * 86_400 {
        format!("{month} {d:>2} {:02}:{:02}", secs / 3600, secs / 60 % 60)
    } else {
        format!("{month} {d:>2}  {y}")
    }
}

/// `drwxr-xr-x` from a kind and permission bits (setuid, setgid and sticky shown as `ls` does).
pub fn perm_string(kind: FileKind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        FileKind::File | FileKind::Other => '-',
    });
    let bits = [0o400, 0o200, 0o100, 0o040, 0o020, 0o010, 0o004, 0o002, 0o001];
    let letters = ['r', 'w', 'x', 'r', 'w', 'x', 'r', 'w', 'x'];
    for (i, (bit, c)) in bits.iter().zip(letters).enumerate() {
        let set = mode & bit != 0;
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        s.push(match (set, special, i) {
            (true, true, 8) => 't',
            (false, true, 8) => 'T',
            (true, true, _) => 's',
            (false, true, _) => 'S',
            (true, false, _) => c,
            (false, false, _) => '-',
        });
    }
    s
}

/// One `ls -l` line: `-rw-r--r--    1 alice    alice        1234 Jan  1 00:00 name`, showing `owner` for
/// both owner and group (the numeric ids of the server mean nothing to the user).
pub fn ls_line(name: &[u8], meta: &Metadata, owner: &str, now: i64) -> Vec<u8> {
    let default_mode = if meta.kind == FileKind::Dir { 0o755 } else { 0o644 };
    let mode = meta.permissions.unwrap_or(default_mode) & 0o7777;
    let mut out = format!(
        "{} {:>4} {:<8} {:<8} {:>8} {} ",
        perm_string(meta.kind, mode),
        meta.nlink.unwrap_or(1),
        owner,
        owner,
        meta.size,
        ls_date(meta.mtime.unwrap_or(0), now)
    )
    .into_bytes();
    out.extend_from_slice(name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: FileKind, size: u64, perm: u32, mtime: i64) -> Metadata {
        Metadata {
            kind,
            size,
            permissions: Some(perm),
            uid: None,
            gid: None,
            atime: None,
            mtime: Some(mtime),
            nlink: Some(if kind == FileKind::Dir { 2 } else { 1 }),
        }
    }

    #[test]
    fn file_line() {
        let l = ls_line(b"f.txt", &meta(FileKind::File, 1234, 0o644, 86_400 * 365), "alice", 86_400 * 366);
        assert_eq!(String::from_utf8_lossy(&l), "-rw-r--r--    1 alice    alice        1234 Jan  1 00:00 f.txt");
    }

    #[test]
    fn dir_old_date_and_special_bits() {
        let l = ls_line(b"tmp", &meta(FileKind::Dir, 4096, 0o1777, 0), "u", 86_400 * 1000);
        let l = String::from_utf8_lossy(&l).into_owned();
        assert!(l.starts_with("drwxrwxrwt    2"), "{l}");
        assert!(l.contains("Jan  1  1970"), "{l}");
        assert_eq!(perm_string(FileKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(perm_string(FileKind::File, 0o2644), "-rw-r-Sr--");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(ls_date(86_400 * 365, 86_400 * 366), "Jan  1 00:00");
    }
}
