//! `[ftps] names`: the DNS names and IP addresses clients reach the server by, which the generated
//! self-signed certificate lists besides the host name, `localhost`, the loopback and listener addresses.

use std::net::IpAddr;
use std::ops::Range;

use toml::Spanned;

/// Checks each name; a refused one comes back with its span and why.
pub(crate) fn check(raw: Vec<Spanned<String>>) -> Result<Vec<String>, (Range<usize>, String)> {
    let mut names = Vec::new();
    for value in raw {
        let name = value.get_ref().trim().trim_end_matches('.').to_ascii_lowercase();
        if name.parse::<IpAddr>().is_err() && !is_dns_name(&name) {
            return Err((value.span(), format!("{:?} is neither a DNS name nor an IP address", value.get_ref())));
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Letters, digits and `-` in labels of 1 to 63 characters, 253 at most in all; `*.` may open it.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["files.example.com", "localhost", "*.example.com", "ftp-1.example.", "2001:db8::1", "192.0.2.7"] {
            assert!(
                ok.trim_end_matches('.').parse::<IpAddr>().is_ok() || is_dns_name(ok.trim_end_matches('.')),
                "{ok}"
            );
        }
        for bad in ["", "a..b", "-a.com", "a_b.com", "files example", "*.", "a.*.com", "é.com"] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }

    #[test]
    fn from_the_file() {
        let parse = |t: &str| crate::Config::parse(std::path::Path::new("ferry.toml"), t);
        let c =
            parse("[ftps]\nnames = [\"Files.Example.com.\", \"203.0.113.7\", \"files.example.com\"]\n").expect("ok");
        assert_eq!(c.ftps.names, ["files.example.com", "203.0.113.7"]);
        let e = parse("[ftps]\nnames = [\n  \"ok.example\",\n  \"not a name\",\n]\n").expect_err("refused");
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("ftps.names")));
    }
}
