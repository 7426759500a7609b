//! The unencrypted start of an SSH connection (RFC 4253 §4.2, §6, §7.1): the version line and the
//! server's SSH_MSG_KEXINIT. Pure functions over bytes, so they are tested with byte literals alone.

use serde::Serialize;

/// RFC 4253 §4.2: the version line is at most 255 bytes with CR LF.
pub const MAX_VERSION_LINE: usize = 255;
/// Lines a server may send before its version line (RFC 4253 §4.2 allows them); more is not SSH.
pub const MAX_PRE_VERSION_BYTES: usize = 8 * 1024;
/// A KEXINIT is about 1–2 KiB; RFC 4253 §6.1 makes 35000 bytes the least every implementation takes.
pub const MAX_PACKET_LEN: usize = 64 * 1024;
/// SSH_MSG_KEXINIT.
pub const MSG_KEXINIT: u8 = 20;

/// Why bytes could not be read as what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// More bytes are needed; not an error of the peer (yet).
    Incomplete,
    /// The peer sent something that is not SSH; the text says what.
    Invalid(String),
}

/// The server's identification: `SSH-protoversion-softwareversion SP comments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ident {
    /// The whole line without CR LF.
    pub line: String,
    /// `2.0`, `1.99` (speaks 1 and 2) or `1.5` (SSH-1 only).
    pub proto: String,
    /// `OpenSSH_9.2p1`, ...
    pub software: String,
    pub comments: Option<String>,
    /// Lines before the version line (banners some servers print).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pre_lines: Vec<String>,
}

/// Reads the version line from the start of `buf`. Returns it and the number of bytes it used.
pub fn parse_ident(buf: &[u8]) -> Result<(Ident, usize), WireError> {
    let mut pos = 0;
    let mut pre_lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.starts_with(b"SSH-") && rest.len() > MAX_VERSION_LINE {
                return Err(WireError::Invalid("SSH version line longer than 255 bytes".into()));
            }
            if pos + rest.len() > MAX_PRE_VERSION_BYTES {
                return Err(WireError::Invalid("no SSH version line in the first 8 KiB".into()));
            }
            return Err(WireError::Incomplete);
        };
        let raw = &rest[..nl];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw).into_owned();
        pos += nl + 1;
        if raw.starts_with(b"SSH-") {
            if raw.len() + 2 > MAX_VERSION_LINE {
                return Err(WireError::Invalid("SSH version line longer than 255 bytes".into()));
            }
            let body = &text[4..];
            let (ids, comments) = match body.split_once(' ') {
                Some((ids, c)) => (ids, Some(c.to_string())),
                None => (body, None),
            };
            let Some((proto, software)) = ids.split_once('-') else {
                return Err(WireError::Invalid(format!("malformed SSH version line `{text}`")));
            };
            return Ok((
                Ident {
                    line: text.clone(),
                    proto: proto.to_string(),
                    software: software.to_string(),
                    comments,
                    pre_lines,
                },
                pos,
            ));
        }
        if pos > MAX_PRE_VERSION_BYTES {
            return Err(WireError::Invalid("no SSH version line in the first 8 KiB".into()));
        }
        pre_lines.push(text);
    }
}

/// The algorithm lists of the server's SSH_MSG_KEXINIT (RFC 4253 §7.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KexInit {
    pub kex: Vec<String>,
    pub host_key: Vec<String>,
    pub ciphers_c2s: Vec<String>,
    pub ciphers_s2c: Vec<String>,
    pub macs_c2s: Vec<String>,
    pub macs_s2c: Vec<String>,
    pub compression_c2s: Vec<String>,
    pub compression_s2c: Vec<String>,
}

/// Reads one unencrypted binary packet (`u32 length, u8 padding, payload, padding`; no MAC before
/// NEWKEYS) from the start of `buf`; returns its payload and the bytes used.
pub fn parse_packet(buf: &[u8]) -> Result<(&[u8], usize), WireError> {
    let Some(len) = buf.get(..4) else { return Err(WireError::Incomplete) };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if !(5..=MAX_PACKET_LEN).contains(&len) {
        return Err(WireError::Invalid(format!("SSH packet length {len} out of range")));
    }
    let Some(body) = buf.get(4..4 + len) else { return Err(WireError::Incomplete) };
    let padding = body[0] as usize;
    // RFC 4253 §6: at least 4 bytes of padding, and at least the payload's first byte left.
    if padding < 4 || padding + 1 >= len {
        return Err(WireError::Invalid(format!("SSH packet padding {padding} invalid for length {len}")));
    }
    Ok((&body[1..len - padding], 4 + len))
}

/// A bounded reader over a payload, so each length is checked once.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Invalid(format!("KEXINIT ends inside {what}")));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name_list(&mut self, what: &str) -> Result<Vec<String>, WireError> {
        let len = self.u32(what)? as usize;
        let raw = self.take(len, what)?;
        let text =
            std::str::from_utf8(raw).map_err(|_| WireError::Invalid(format!("KEXINIT {what} list is not ASCII")))?;
        if !text.is_ascii() {
            return Err(WireError::Invalid(format!("KEXINIT {what} list is not ASCII")));
        }
        Ok(if text.is_empty() { Vec::new() } else { text.split(',').map(str::to_string).collect() })
    }
}

/// Parses an SSH_MSG_KEXINIT payload (starting with its message number 20).
pub fn parse_kexinit(payload: &[u8]) -> Result<KexInit, WireError> {
    let mut r = Reader { buf: payload };
    let msg = r.take(1, "the message number")?[0];
    if msg != MSG_KEXINIT {
        return Err(WireError::Invalid(format!("expected SSH_MSG_KEXINIT (20), got message {msg}")));
    }
    r.take(16, "the cookie")?;
    Ok(KexInit {
        kex: r.name_list("key exchange")?,
        host_key: r.name_list("host key")?,
        ciphers_c2s: r.name_list("cipher")?,
        ciphers_s2c: r.name_list("cipher")?,
        macs_c2s: r.name_list("MAC")?,
        macs_s2c: r.name_list("MAC")?,
        compression_c2s: r.name_list("compression")?,
        compression_s2c: r.name_list("compression")?,
    })
    // Languages, first_kex_packet_follows and the reserved u32 follow; nothing here needs them.
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A KEXINIT payload with these lists (all others `none`), as a server sends it.
    pub(crate) fn kexinit_payload(kex: &str, host_key: &str, cipher: &str, mac: &str) -> Vec<u8> {
        let mut p = vec![MSG_KEXINIT];
        p.extend_from_slice(&[7u8; 16]);
        for list in [kex, host_key, cipher, cipher, mac, mac, "none", "none", "", ""] {
            p.extend_from_slice(&(list.len() as u32).to_be_bytes());
            p.extend_from_slice(list.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&0u32.to_be_bytes());
        p
    }

    pub(crate) fn packet(payload: &[u8]) -> Vec<u8> {
        let mut padding = 8 - (payload.len() + 5) % 8;
        if padding < 4 {
            padding += 8;
        }
        let len = (1 + payload.len() + padding) as u32;
        let mut out = len.to_be_bytes().to_vec();
        out.push(padding as u8);
        out.extend_from_slice(payload);
        out.extend(std::iter::repeat_n(0u8, padding));
        out
    }

    #[test]
    fn version_line_with_comments_and_banner_lines() {
        let buf = b"Welcome\r\nto here\nSSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n\x00\x00";
        let (id, used) = parse_ident(buf).expect("ident");
        assert_eq!(id.proto, "2.0");
        assert_eq!(id.software, "OpenSSH_9.2p1");
        assert_eq!(id.comments.as_deref(), Some("Debian-2+deb12u3"));
        assert_eq!(id.pre_lines, vec!["Welcome", "to here"]);
        assert_eq!(id.line, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3");
        assert_eq!(&buf[used..], b"\x00\x00");
    }

    #[test]
    fn version_line_incomplete_or_invalid() {
        assert_eq!(parse_ident(b"SSH-2.0-Open"), Err(WireError::Incomplete));
        assert_eq!(parse_ident(b""), Err(WireError::Incomplete));
        assert!(matches!(parse_ident(b"SSH-2.0\r\n"), Err(WireError::Invalid(_))));
        let long = [b"SSH-2.0-".as_slice(), &[b'a'; 300]].concat();
        assert!(matches!(parse_ident(&long), Err(WireError::Invalid(_))));
        let junk = vec![b'x'; MAX_PRE_VERSION_BYTES + 10];
        assert!(matches!(parse_ident(&junk), Err(WireError::Invalid(_))));
        let (id, _) = parse_ident(b"SSH-1.99-Cisco-1.25\n").expect("ident");
        assert_eq!((id.proto.as_str(), id.software.as_str(), id.comments), ("1.99", "Cisco-1.25", None));
    }

    #[test]
    fn kexinit_round_trip() {
        let payload = kexinit_payload(
            "curve25519-sha256,diffie-hellman-group14-sha1",
            "ssh-ed25519,rsa-sha2-512",
            "aes128-ctr,aes256-cbc",
            "hmac-sha2-256",
        );
        let pkt = packet(&payload);
        let (got, used) = parse_packet(&pkt).expect("packet");
        assert_eq!(used, pkt.len());
        assert_eq!(got, payload.as_slice());
        let k = parse_kexinit(got).expect("kexinit");
        assert_eq!(k.kex, vec!["curve25519-sha256", "diffie-hellman-group14-sha1"]);
        assert_eq!(k.host_key, vec!["ssh-ed25519", "rsa-sha2-512"]);
        assert_eq!(k.ciphers_c2s, vec!["aes128-ctr", "aes256-cbc"]);
        assert_eq!(k.ciphers_s2c, k.ciphers_c2s);
        assert_eq!(k.macs_s2c, vec!["hmac-sha2-256"]);
        assert_eq!(k.compression_c2s, vec!["none"]);
    }

    #[test]
    fn packet_incomplete_and_bounds() {
        let pkt = packet(&kexinit_payload("a", "b", "c", "d"));
        for cut in [0, 3, 4, pkt.len() - 1] {
            assert_eq!(parse_packet(&pkt[..cut]), Err(WireError::Incomplete), "cut at {cut}");
        }
        assert!(matches!(parse_packet(&[0, 0, 0, 1, 0]), Err(WireError::Invalid(_))));
        assert!(matches!(parse_packet(&[0x7f, 0, 0, 0]), Err(WireError::Invalid(_))));
        // padding eats the whole packet
        assert!(matches!(parse_packet(&[0, 0, 0, 5, 4, 0, 0, 0, 0]), Err(WireError::Invalid(_))));
    }

    #[test]
    fn kexinit_truncated_or_wrong_message() {
        let payload = kexinit_payload("a", "b", "c", "d");
        for cut in [0, 1, 16, 20, 22, payload.len() - 20] {
            assert!(matches!(parse_kexinit(&payload[..cut]), Err(WireError::Invalid(_))), "cut at {cut}");
        }
        let mut other = payload.clone();
        other[0] = 21;
        assert!(matches!(parse_kexinit(&other), Err(WireError::Invalid(_))));
        // a length that runs past the end
        let mut bad = payload;
        bad[17..21].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse_kexinit(&bad), Err(WireError::Invalid(_))));
        // empty lists are empty, not [""]
        let k = parse_kexinit(&kexinit_payload("", "", "", "")).expect("kexinit");
        assert!(k.kex.is_empty() && k.host_key.is_empty());
    }
}
