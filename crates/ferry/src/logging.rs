//! Logs go to stderr (data goes to stdout), one line per event: readable text, without colour when
//! NO_COLOR is set or stderr is not a terminal, or one JSON object per line (`[log] format = "json"`).

use std::io::IsTerminal;

use ferry_config::LogFormat;
use tracing_subscriber::EnvFilter;

pub fn init(default_level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = match format {
        LogFormat::Text => {
            let ansi = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(move || OneLine { ansi, json: false })
                .with_ansi(ansi)
                .with_target(false)
                .try_init()
        }
        // Every field at the top level of one object: {"timestamp":..,"level":..,"message":..,"user":..}.
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(|| OneLine { ansi: false, json: true })
            .with_ansi(false)
            .with_target(false)
            .try_init(),
    };
}

/// Writes each log event as exactly one line: every control character inside it (CR, LF, and the rest)
/// is written as an escape, so a file name or user name a client chose can never split a line or forge
/// a `login` line that fail2ban would act on. Only the event's final newline stays, and ESC when the
/// output is a colour terminal (the colours are ours).
struct OneLine {
    ansi: bool,
    /// The event is a JSON object: escapes must be JSON's own, so that the line still parses.
    json: bool,
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

/// The same guarantee for a JSON event. serde_json already escapes every character below U+0020, so this
/// only meets what it leaves raw inside strings: DEL, the C1 controls, and the Unicode line and paragraph
/// separators, written as `\uXXXX` (the same string to any JSON reader). Outside strings a JSON line has
/// no such characters, and its own backslashes are left alone.
fn escape_json_event(text: &str) -> String {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut out = String::with_capacity(text.len() + 8);
    for c in body.chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            // Every control character and both separators are in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
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
        let text = String::from_utf8_lossy(buf);
        let line = if self.json { escape_json_event(&text) } else { escape_event(&text, self.ansi) };
        err.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::{escape_event, escape_json_event};

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

    #[test]
    fn a_json_event_stays_one_line_of_valid_json() {
        let name = "a\nb\r\u{7f}\u{9b}2J\u{2028}x\\\"y";
        let event = serde_json::json!({"level": "INFO", "message": "transfer", "path": name});
        let line = format!("{event}\n");
        let out = escape_json_event(&line);
        assert_eq!(out.matches('\n').count(), 1, "{out}");
        assert!(out.ends_with('\n'));
        assert!(!out.chars().any(|c| c.is_control() && c != '\n' || c == '\u{2028}'), "{out}");
        let back: serde_json::Value = serde_json::from_str(out.trim_end()).expect("still JSON");
        assert_eq!(back["path"], name);
        // Nothing to do for plain JSON: serde_json's own escapes are not escaped again.
        let plain = "{\"message\":\"a\\nb \\\"q\\\"\"}\n";
        assert_eq!(escape_json_event(plain), plain);
    }
}
