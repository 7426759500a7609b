//! Times as FTP writes them: `YYYYMMDDHHMMSS` in UTC (RFC 3659 MDTM, MLSx `modify`, MFMT). Civil dates and
//! `ls -l` dates are shared with SFTP in `ferry_vfs::listing`.

pub use ferry_vfs::listing::{civil, days_from_civil, ls_date};

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
