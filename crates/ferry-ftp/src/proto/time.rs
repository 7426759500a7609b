//! Times as FTP writes them: `YYYYMMDDHHMMSS` in UTC (RFC 3659 MDTM, MLSx `modify`, MFMT), and the dates
//! of `ls -l` lines. Civil-date arithmetic is Howard Hinnant's, to avoid a date dependency.

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

/// `YYYYMMDDHHMMSS` (UTC) for seconds since the epoch.
pub fn format_timeval(secs: i64) -> String {
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Parses `YYYYMMDDHHMMSS`, optionally followed by `.fff` (ignored), into seconds since the epoch.
pub fn parse_timeval(s: &[u8]) -> Option<i64> {
    let (main, frac) = match s.iter().position(|b| *b == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &b""[..]),
    };
    if main.len() != 14 || !main.iter().all(u8::is_ascii_digit) || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| main[r].iter().fold(0i64, |a, b| a * 10 + i64::from(b - b'0'));
    let (y, mo, d, h, mi, se) = (num(0..4), num(4..6), num(6..8), num(8..10), num(10..12), num(12..14));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    if civil(days) != (y, mo as u32, d as u32) {
        return None; // 31 February and the like
    }
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(format_timeval(0), "19700101000000");
        assert_eq!(format_timeval(1_700_000_000), "20231114221320");
        for t in [0i64, 951_782_400, 1_700_000_000, 4_102_444_799] {
            assert_eq!(parse_timeval(format_timeval(t).as_bytes()), Some(t));
        }
        assert_eq!(parse_timeval(b"20231114221320.123"), Some(1_700_000_000));
    }

    #[test]
    fn bad_times() {
        for bad in [&b""[..], b"2023", b"2023111422132x", b"20231314221320", b"20230231000000", b"20231114241320"] {
            assert_eq!(parse_timeval(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(ls_date(86_400 * 365, 86_400 * 366), "Jan  1 00:00");
        assert_eq!(ls_date(0, 86_400 * 1000), "Jan  1  1970");
    }
}
