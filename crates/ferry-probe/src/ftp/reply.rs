//! FTP replies (RFC 959 §4.2), FEAT (RFC 2389) and the passive-mode answers (RFC 959 PASV,
//! RFC 2428 EPSV). Pure functions over bytes and lines.

use serde::Serialize;

/// The longest reply accepted; FEAT lists and banners are a few KiB at most.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub code: u16,
    /// Every line as sent, without CR LF, the code included.
    pub lines: Vec<String>,
}

impl Reply {
    /// The text of the reply: the lines without their code prefixes, joined by ` / `.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self
            .lines
            .iter()
            .map(|l| {
                let l = l.as_str();
                match l.get(..3) {
                    Some(c) if c.parse::<u16>().ok() == Some(self.code) => l.get(4..).unwrap_or("").trim(),
                    _ => l.trim(),
                }
            })
            .filter(|l| !l.is_empty())
            .collect();
        parts.join(" / ")
    }

    /// `220 text` as one line for messages.
    pub fn summary(&self) -> String {
        format!("{} {}", self.code, self.text())
    }

    pub fn is_positive_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }

    pub fn is_success(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    Incomplete,
    /// Not an FTP reply; the text says what it is.
    Invalid(String),
}

/// A line's three-digit code and whether a space (or nothing) follows it, which ends a reply.
fn code_of(line: &[u8]) -> Option<(u16, bool)> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = (digits[0] - b'0') as u16 * 100 + (digits[1] - b'0') as u16 * 10 + (digits[2] - b'0') as u16;
    match line.get(3) {
        None | Some(b' ') => Some((code, true)),
        Some(b'-') => Some((code, false)),
        Some(_) => None,
    }
}

/// Reads one reply from the start of `buf`, multi-line aware: `123-first` ... `123 last`, where the
/// lines between may be anything (RFC 959 §4.2). Returns the reply and the bytes it used.
pub fn parse_reply(buf: &[u8]) -> Result<(Reply, usize), ReplyError> {
    let mut pos = 0;
    let mut lines = Vec::new();
    let mut code = None;
    loop {
        let rest = &buf[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_REPLY_BYTES {
                return Err(ReplyError::Invalid("FTP reply longer than 64 KiB".into()));
            }
            // Say early when the first bytes cannot start a reply (TLS records, SSH lines).
            if pos == 0 && rest.len() >= 4 && code_of(rest).is_none() {
                return Err(ReplyError::Invalid(not_a_reply(rest)));
            }
            return Err(ReplyError::Incomplete);
        };
        let raw = &rest[..nl];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        pos += nl + 1;
        if pos > MAX_REPLY_BYTES {
            return Err(ReplyError::Invalid("FTP reply longer than 64 KiB".into()));
        }
        let line = String::from_utf8_lossy(raw).into_owned();
        match code {
            None => {
                let Some((c, last)) = code_of(raw) else { return Err(ReplyError::Invalid(not_a_reply(raw))) };
                lines.push(line);
                if last {
                    return Ok((Reply { code: c, lines }, pos));
                }
                code = Some(c);
            }
            Some(c) => {
                lines.push(line);
                if code_of(raw) == Some((c, true)) {
                    return Ok((Reply { code: c, lines }, pos));
                }
            }
        }
    }
}

fn not_a_reply(raw: &[u8]) -> String {
    let shown: String = raw.iter().take(40).map(|&b| if (32..127).contains(&b) { b as char } else { '.' }).collect();
    format!("not an FTP reply: `{shown}`")
}

/// One FEAT line: ` AUTH TLS` → name `AUTH`, params `TLS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feature {
    pub name: String,
    pub params: String,
}

/// The features of a `211` FEAT reply (RFC 2389 §3.2): the lines between the first and the last,
/// each starting with a space. Other replies (a `500` from a server without FEAT) give none.
pub fn parse_feat(reply: &Reply) -> Vec<Feature> {
    if reply.code != 211 || reply.lines.len() < 2 {
        return Vec::new();
    }
    reply.lines[1..reply.lines.len() - 1]
        .iter()
        .filter_map(|l| {
            // RFC 2389 wants one leading space; some servers send none, so take what is there.
            let l = l.trim();
            if l.is_empty() {
                return None;
            }
            let (name, params) = l.split_once(' ').unwrap_or((l, ""));
            Some(Feature { name: name.to_ascii_uppercase(), params: params.trim().to_string() })
        })
        .collect()
}

/// Whether the features offer `AUTH TLS` (RFC 4217 §6: `AUTH TLS`, often `AUTH TLS;SSL` or `AUTH SSL TLS`).
pub fn offers_auth_tls(features: &[Feature]) -> bool {
    features.iter().any(|f| f.name == "AUTH" && f.params.split([';', ' ', ',']).any(|p| p.eq_ignore_ascii_case("TLS")))
}

/// The port of a `229 Entering Extended Passive Mode (|||6446|)` reply.
pub fn parse_epsv(reply: &Reply) -> Option<u16> {
    if reply.code != 229 {
        return None;
    }
    let text = reply.lines.last()?;
    let open = text.find('(')?;
    let inner = &text[open + 1..];
    let close = inner.find(')')?;
    let inner = &inner[..close];
    let delim = inner.chars().next()?;
    // (<d><d><d>port<d>): three delimiters, the port, one delimiter.
    let parts: Vec<&str> = inner.split(delim).collect();
    if parts.len() != 5 || !parts[1].is_empty() || !parts[2].is_empty() || !parts[4].is_empty() {
        return None;
    }
    match parts[3].parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(p) => Some(p),
    }
}

/// The address and port of a `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` reply; the
/// parentheses are optional in practice, so the six numbers are looked for anywhere after the code.
pub fn parse_pasv(reply: &Reply) -> Option<(std::net::Ipv4Addr, u16)> {
    if reply.code != 227 {
        return None;
    }
    let text = reply.lines.last()?.get(4..)?;
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let nums: Vec<u8> = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .take(6)
        .map(|n| n.parse::<u8>().ok())
        .collect::<Option<Vec<u8>>>()?;
    if nums.len() != 6 {
        return None;
    }
    let port = u16::from(nums[4]) << 8 | u16::from(nums[5]);
    if port == 0 {
        return None;
    }
    Some((std::net::Ipv4Addr::new(nums[0], nums[1], nums[2], nums[3]), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, lines: &[&str]) -> Reply {
        Reply { code, lines: lines.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn single_line() {
        let (r, used) = parse_reply(b"220 (vsFTPd 3.0.3)\r\nrest").expect("reply");
        assert_eq!(r.code, 220);
        assert_eq!(r.text(), "(vsFTPd 3.0.3)");
        assert_eq!(used, 20);
        let (r, _) = parse_reply(b"200\n").expect("bare code");
        assert_eq!((r.code, r.text()), (200, String::new()));
    }

    #[test]
    fn multi_line_with_odd_inner_lines() {
        let buf = b"220-Welcome\r\n220-to Ferry\r\n 220 not the end\r\n230 not the end either\r\n220 end\r\n";
        let (r, used) = parse_reply(buf).expect("reply");
        assert_eq!(r.code, 220);
        assert_eq!(r.lines.len(), 5);
        assert_eq!(used, buf.len());
        assert_eq!(r.text(), "Welcome / to Ferry / 220 not the end / 230 not the end either / end");
        // the last line must carry the same code and a space
        assert_eq!(parse_reply(b"220-a\r\n220-b\r\n"), Err(ReplyError::Incomplete));
    }

    #[test]
    fn incomplete_and_invalid() {
        assert_eq!(parse_reply(b""), Err(ReplyError::Incomplete));
        assert_eq!(parse_reply(b"22"), Err(ReplyError::Incomplete));
        assert_eq!(parse_reply(b"220 partial"), Err(ReplyError::Incomplete));
        assert!(matches!(parse_reply(b"SSH-2.0-OpenSSH_9.2\r\n"), Err(ReplyError::Invalid(_))));
        assert!(matches!(parse_reply(b"\x16\x03\x01\x00\x05"), Err(ReplyError::Invalid(_))));
        assert!(matches!(parse_reply(b"HTTP/1.1 400 Bad"), Err(ReplyError::Invalid(_))));
        assert!(matches!(parse_reply(b"999 no\r\n"), Err(ReplyError::Invalid(_))));
        let huge = [b"220-x\r\n".as_slice(), &vec![b'a'; MAX_REPLY_BYTES]].concat();
        assert!(matches!(parse_reply(&huge), Err(ReplyError::Invalid(_))));
    }

    #[test]
    fn feat_list() {
        let r = reply(211, &["211-Features:", " AUTH TLS", " PBSZ", " PROT", " EPSV", " UTF8", " MDTM", "211 End"]);
        let f = parse_feat(&r);
        assert_eq!(f.len(), 6);
        assert_eq!(f[0], Feature { name: "AUTH".into(), params: "TLS".into() });
        assert!(offers_auth_tls(&f));
        // vsftpd without ssl_enable: no AUTH line
        let r = reply(211, &["211-Features:", " EPRT", " EPSV", " PASV", "211 End"]);
        assert!(!offers_auth_tls(&parse_feat(&r)));
        for params in ["TLS;SSL", "SSL TLS", "tls", "TLS-C;TLS"] {
            let f = vec![Feature { name: "AUTH".into(), params: params.into() }];
            assert!(offers_auth_tls(&f), "{params}");
        }
        assert!(!offers_auth_tls(&[Feature { name: "AUTH".into(), params: "SSL".into() }]));
        assert!(parse_feat(&reply(500, &["500 Unknown command."])).is_empty());
        assert!(parse_feat(&reply(211, &["211 No features"])).is_empty());
    }

    #[test]
    fn passive_replies() {
        assert_eq!(parse_epsv(&reply(229, &["229 Entering Extended Passive Mode (|||40123|)"])), Some(40123));
        assert_eq!(parse_epsv(&reply(229, &["229 Entering Extended Passive Mode (!!!21!)"])), Some(21));
        assert_eq!(parse_epsv(&reply(229, &["229 (|||0|)"])), None);
        assert_eq!(parse_epsv(&reply(229, &["229 (||1|2|)"])), None);
        assert_eq!(parse_epsv(&reply(500, &["500 no"])), None);
        assert_eq!(
            parse_pasv(&reply(227, &["227 Entering Passive Mode (127,0,0,1,156,64)."])),
            Some((std::net::Ipv4Addr::new(127, 0, 0, 1), 40000))
        );
        assert_eq!(
            parse_pasv(&reply(227, &["227 Entering Passive Mode 10,1,2,3,4,5"])),
            Some((std::net::Ipv4Addr::new(10, 1, 2, 3), 1029))
        );
        assert_eq!(parse_pasv(&reply(227, &["227 (1,2,3,4,5)"])), None);
        assert_eq!(parse_pasv(&reply(227, &["227 (1,2,3,400,5,6)"])), None);
    }
}
