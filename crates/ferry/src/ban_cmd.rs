//! `ferry ban list|add|remove`: the defender's bans, in the user database a running server watches, so a
//! ban added or lifted here applies within a second without a restart.

use std::net::IpAddr;

use ferry_auth::{now_unix, FOREVER};
use ferry_core::defender::show_secs;

use crate::bootstrap::{load, open_store, Env};
use crate::cli::{BanCmd, GlobalArgs};
use crate::CliError;

/// `30m`, `1h`, `2d`, `90s`, `3600` (seconds) or `forever`.
pub fn parse_duration(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("forever") || t.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num.parse().map_err(|_| format!("{text:?} is not a duration"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?} is not a duration")),
    };
    match n.checked_mul(scale) {
        Some(0) | None => Err(format!("{text:?} is not a duration a ban can last")),
        Some(secs) => Ok(Some(secs)),
    }
}

/// Unix seconds as `2026-12-06 21:50:09 UTC`.
pub fn utc(secs: i64) -> String {
    let (y, m, d) = ferry_vfs::listing::civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", s / 3600, s % 3600 / 60, s % 60)
}

fn parse_ip(text: &str) -> Result<IpAddr, CliError> {
    text.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()).map_err(|_| {
        CliError::usage(format!("{text:?} is not an IP address"), "for example: ferry ban add 203.0.113.7")
    })
}

pub fn run(global: &GlobalArgs, cmd: &BanCmd) -> Result<(), CliError> {
    let env = load(global)?;
    let store = open_store(&env)?;
    let Env { config, .. } = env;
    match cmd {
        BanCmd::List { json } => {
            let bans = store.bans()?;
            if *json {
                let rows: Vec<serde_json::Value> = bans
                    .iter()
                    .map(|b| {
                        let forever = b.until == FOREVER;
                        serde_json::json!({
                            "ip": b.ip.to_string(),
                            "until": (!forever).then(|| utc(b.until)),
                            "until_unix": (!forever).then_some(b.until),
                            "reason": b.reason,
                            "created": utc(b.created),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else if bans.is_empty() {
                println!("no bans");
            } else {
                println!("{:<40} {:<24} REASON", "ADDRESS", "UNTIL");
                for b in &bans {
                    let until = if b.until == FOREVER { "forever".to_string() } else { utc(b.until) };
                    println!("{:<40} {:<24} {}", b.ip, until, b.reason);
                }
            }
            Ok(())
        }
        BanCmd::Add { ip, r#for } => {
            let ip = parse_ip(ip)?;
            let secs = match r#for {
                Some(d) => {
                    parse_duration(d).map_err(|e| CliError::usage(e, "for example --for 30m, 1h, 2d or forever"))?
                }
                None => Some(config.defender.ban.as_secs()),
            };
            let until = secs.map(|s| now_unix().saturating_add(s as i64)).unwrap_or(FOREVER);
            let how_long = secs.map(|s| format!("for {}", show_secs(s))).unwrap_or_else(|| "for good".into());
            store.add_ban(ip, until, &format!("banned by an admin {how_long}"))?;
            let until_text = if until == FOREVER { String::new() } else { format!(" (until {})", utc(until)) };
            println!("banned {ip} {how_long}{until_text}; a running server refuses it within a second");
            if config.defender.safelist.iter().any(|c| c.contains(ip)) {
                println!("note: {ip} is in [defender] safelist, which only stops automatic bans");
            }
            Ok(())
        }
        BanCmd::Remove { ip } => {
            let ip = parse_ip(ip)?;
            if store.remove_ban(ip)? {
                println!("lifted the ban of {ip}");
                Ok(())
            } else {
                Err(CliError::runtime(format!("{ip} is not banned")).with_hint("`ferry ban list` shows the bans"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(Some(1800)));
        assert_eq!(parse_duration("1h"), Ok(Some(3600)));
        assert_eq!(parse_duration("2d"), Ok(Some(172_800)));
        assert_eq!(parse_duration("90"), Ok(Some(90)));
        assert_eq!(parse_duration("forever"), Ok(None));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_593_809), "2026-12-06 21:50:09 UTC");
    }
}
