//! Account policy: whether a user may log in now, from this address, over this protocol; checked at
//! login and again for live sessions whenever the user store changes.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_auth::User;

pub use ferry_config::Cidr;

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn parse_date(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a date: use YYYY-MM-DD");
    let mut parts = text.trim().split('-');
    let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (y, m, d): (i64, u32, u32) =
        (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let days = ferry_vfs::listing::days_from_civil(y, m, d);
    // 2026-02-31 would silently become 2026-03-03: refuse it.
    if ferry_vfs::listing::civil(days) != (y, m, d) {
        return Err(bad());
    }
    Ok(days)
}

fn today() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64 / 86_400).unwrap_or(0)
}

/// Why `user` may not have a session from `ip` over `protocol` now, if they may not.
pub fn refusal(user: &User, ip: IpAddr, protocol: &str) -> Option<String> {
    if user.disabled {
        return Some("account disabled".into());
    }
    if let Some(expires) = &user.expires {
        // The date is the last day the account may log in (UTC).
        match parse_date(expires) {
            Ok(last) if today() > last => return Some(format!("account expired on {expires}")),
            Ok(_) => {}
            Err(e) => return Some(format!("account expiry unreadable: {e}")),
        }
    }
    if !user.allow_from.is_empty() {
        let allowed = user.allow_from.iter().any(|c| Cidr::parse(c).map(|c| c.contains(ip)).unwrap_or(false));
        if !allowed {
            return Some(format!("address {ip} is not allowed for this account"));
        }
    }
    if let Some(protocols) = &user.protocols {
        if !protocols.iter().any(|p| p == protocol) {
            return Some(format!("protocol {protocol} is not allowed for this account"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-02"), Ok(1));
        assert!(parse_date("2026-02-31").is_err());
        assert!(parse_date("2026-3-1").is_ok());
        assert!(parse_date("31.03.2026").is_err());
        for outside in ["1969-12-31", "10000-01-01", "2026-00-10", "2026-13-01", "2026-01-00", "2026-01-32"] {
            assert!(parse_date(outside).is_err(), "{outside}");
        }
        assert_eq!(parse_date(" 9999-12-31 "), Ok(2_932_896));
    }

    #[test]
    fn an_account_may_log_in_on_its_last_day_and_not_the_day_after() {
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64 / 86_400;
        let day = |days: i64| {
            let (y, m, d) = ferry_vfs::listing::civil(days);
            format!("{y:04}-{m:02}-{d:02}")
        };
        let mut u = User { name: "a".into(), expires: Some(day(now)), ..Default::default() };
        assert_eq!(refusal(&u, ip, "sftp"), None, "expires {:?}", u.expires);
        u.expires = Some(day(now - 1));
        assert_eq!(refusal(&u, ip, "sftp"), Some(format!("account expired on {}", day(now - 1))));
        u.expires = Some("someday".into());
        assert!(refusal(&u, ip, "sftp").expect("unreadable").starts_with("account expiry unreadable"));
    }

    #[test]
    fn policy() {
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let mut u = User { name: "a".into(), ..Default::default() };
        assert_eq!(refusal(&u, ip, "sftp"), None);
        u.expires = Some("2000-01-01".into());
        assert!(refusal(&u, ip, "sftp").expect("expired").contains("expired on 2000-01-01"));
        u.expires = Some("9999-12-31".into());
        u.allow_from = vec!["198.51.100.0/24".into()];
        assert!(refusal(&u, ip, "sftp").expect("address").contains("192.0.2.1"));
        u.allow_from = vec!["198.51.100.0/24".into(), "192.0.2.0/28".into()];
        u.protocols = Some(vec!["ftps".into()]);
        assert!(refusal(&u, ip, "sftp").expect("protocol").contains("sftp"));
        assert_eq!(refusal(&u, ip, "ftps"), None);
        u.disabled = true;
        assert_eq!(refusal(&u, ip, "ftps").as_deref(), Some("account disabled"));
    }
}
