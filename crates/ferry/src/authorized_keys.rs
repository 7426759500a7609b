//! Reading an authorized_keys file (or a single .pub file) for `ferry user key add`: every key line, with
//! comments and blank lines skipped, and each key option either harmless for an SFTP-only server or
//! refused with a message that says what to use instead.

/// Key types a line may start with when it has no options.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
];

/// Options that only restrict things Ferry never offers (shells, forwarding, agents): accepted.
const HARMLESS: &[&str] =
    &["restrict", "no-pty", "no-port-forwarding", "no-agent-forwarding", "no-x11-forwarding", "no-user-rc"];

/// One usable key line, without its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    pub line_no: usize,
    pub key: String,
}

/// Splits `options keytype base64 comment` at the first space outside double quotes.
fn split_options(line: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return (&line[..i], line[i..].trim_start()),
            _ => {}
        }
    }
    (line, "")
}

/// The option names of an options field (`from="a,b",no-pty` → `from`, `no-pty`).
fn option_names(options: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut quoted = false;
    let mut current = String::new();
    for c in options.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => names.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    names.push(current);
    names.into_iter().map(|o| o.split('=').next().unwrap_or("").trim().to_ascii_lowercase()).collect()
}

/// The keys of `text`, or the first line that cannot be taken, with why.
pub fn parse(text: &str) -> Result<Vec<KeyLine>, (usize, String)> {
    let mut keys = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        let key = if KEY_TYPES.contains(&first) {
            line.to_string()
        } else {
            let (options, rest) = split_options(line);
            if !rest.split_whitespace().next().is_some_and(|t| KEY_TYPES.contains(&t)) {
                return Err((
                    line_no,
                    "not an SSH public key (a key line starts with its type, e.g. ssh-ed25519 AAAA...)".to_string(),
                ));
            }
            for name in option_names(options) {
                if HARMLESS.contains(&name.as_str()) {
                    continue;
                }
                let why = match name.as_str() {
                    "from" => "from=\"...\" is not supported per key: restrict the whole account with `ferry user set NAME --allow-from CIDR`".to_string(),
                    "command" => "command=\"...\" is not supported: Ferry serves SFTP only, whatever the key".to_string(),
                    "expiry-time" => "expiry-time=... is not supported per key: use `ferry user set NAME --expires DATE`".to_string(),
                    other => format!("the key option {other:?} is not supported: remove it from the line"),
                };
                return Err((line_no, why));
            }
            rest.to_string()
        };
        keys.push(KeyLine { line_no, key });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOVh4lX5C8ZtT8l8m9V3Hm3JpBz1V8F9oZrO2KqMXnYy alice@laptop";

    #[test]
    fn every_key_comments_and_harmless_options() {
        let text = format!("# team keys\n\n{ED}\nno-pty,no-port-forwarding {ED}\n  restrict {ED}\n");
        let keys = parse(&text).expect("parsed");
        assert_eq!(keys.iter().map(|k| k.line_no).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(keys.iter().all(|k| k.key == ED));
    }

    #[test]
    fn restricting_options_are_refused_with_the_line() {
        let text = format!("{ED}\nfrom=\"10.0.0.0/8,192.0.2.1\",no-pty {ED}\n");
        let (line, why) = parse(&text).expect_err("refused");
        assert_eq!(line, 2);
        assert!(why.contains("--allow-from"), "{why}");
        let (_, why) = parse(&format!("command=\"echo hi\" {ED}")).expect_err("refused");
        assert!(why.contains("SFTP only"), "{why}");
    }
}
