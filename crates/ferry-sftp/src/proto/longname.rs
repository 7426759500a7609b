//! The `longname` of SSH_FXP_NAME entries: the `ls -l` line that OpenSSH's `sftp` prints for `ls -l`.

use super::attrs::FileAttrs;

const S_IFMT: u32 = 0o170000;

fn type_char(mode: u32) -> char {
    match mode & S_IFMT {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '-',
    }
}

fn perm_string(mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(type_char(mode));
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
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
            (true, false, _) => *c,
            (false, false, _) => '-',
        });
    }
    s
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm), to avoid a date dependency.
fn civil(days: i64) -> (i64, u32, u32) {
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

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `ls -l` style date: "Mon dd hh:mm" within six months of `now`, "Mon dd  yyyy" otherwise.
fn ls_date(mtime: i64, now: i64) -> String {
    let (y, m, d) = civil(mtime.div_euclid(86_400));
    let secs = mtime.rem_euclid(86_400);
    let month = MONTHS[(m as usize).saturating_sub(1) % 12];
    if (now - mtime).abs() < 182 * 86_400 {
        format!("{month} {d:>2} {:02}:{:02}", secs / 3600, secs / 60 % 60)
    } else {
        format!("{month} {d:>2}  {y}")
    }
}

/// Builds the long name for `name` with `attrs`, showing `owner` / `group` as names.
pub fn longname(name: &[u8], attrs: &FileAttrs, nlink: u64, owner: &str, group: &str, now: i64) -> Vec<u8> {
    let mode = attrs.permissions.unwrap_or(0);
    let size = attrs.size.unwrap_or(0);
    let mtime = attrs.atime_mtime.map(|(_, m)| i64::from(m)).unwrap_or(0);
    let mut out =
        format!("{} {:>4} {:<8} {:<8} {:>8} {} ", perm_string(mode), nlink, owner, group, size, ls_date(mtime, now))
            .into_bytes();
    out.extend_from_slice(name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_line() {
        let a = FileAttrs {
            size: Some(1234),
            permissions: Some(0o100644),
            atime_mtime: Some((0, 86_400 * 365)),
            ..Default::default()
        };
        let l = longname(b"f.txt", &a, 1, "alice", "alice", 86_400 * 366);
        assert_eq!(String::from_utf8_lossy(&l), "-rw-r--r--    1 alice    alice        1234 Jan  1 00:00 f.txt");
    }

    #[test]
    fn dir_and_old_date_and_special_bits() {
        let a = FileAttrs {
            size: Some(4096),
            permissions: Some(0o041777),
            atime_mtime: Some((0, 0)),
            ..Default::default()
        };
        let l = String::from_utf8_lossy(&longname(b"tmp", &a, 2, "u", "g", 86_400 * 1000)).into_owned();
        assert!(l.starts_with("drwxrwxrwt"), "{l}");
        assert!(l.contains("Jan  1  1970"), "{l}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }
}
