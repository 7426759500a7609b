//! Logs go to stderr (data goes to stdout), one line per event, without colour when NO_COLOR is set or
//! stderr is not a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || OneLine { ansi })
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

/// Writes each log event as exactly one line: every control character inside it (CR, LF, and the rest)
/// is written as an escape, so a file name or user name a client chose can never split a line or forge
/// a `login` line that fail2ban would act on. Only the event's final newline stays, and ESC when the
/// output is a colour terminal (the colours are ours).
struct OneLine {
    ansi: bool,
}

fn escape_event(text: &str, ansi: bool) -> String {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut out = String::with_capacity(text.len() + 8);
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            '\u{1b}' if ansi => out.push(c),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    if body.len() != text.len() {
        out.push('\n');
    }
    out
}

impl std::io::Write for OneLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        match std::str::from_utf8(buf) {
            Ok(text) => err.write_all(escape_event(text, self.ansi).as_bytes())?,
            Err(_) => err.write_all(escape_event(&String::from_utf8_lossy(buf), self.ansi).as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::escape_event;

    #[test]
    fn a_client_chosen_name_cannot_split_or_forge_a_line() {
        let forged = "transfer path=/a\n2026-12-06T00:00:00Z  INFO login user=root\r\x07\u{1b}[2J\n";
        let out = escape_event(forged, false);
        assert_eq!(out.matches('\n').count(), 1, "{out}");
        assert!(out.ends_with('\n'));
        assert!(out.contains("/a\\n2026"), "{out}");
        assert!(out.contains("\\r\\u{7}\\u{1b}[2J"), "{out}");
        assert_eq!(escape_event("plain line\n", false), "plain line\n");
        assert_eq!(escape_event("\u{1b}[32mINFO\u{1b}[0m x\n", true), "\u{1b}[32mINFO\u{1b}[0m x\n");
    }
}
