use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::limits::{DEFAULT_PASSIVE_PORTS, DEFAULT_SHUTDOWN_GRACE};
use crate::listen::{parse_protocols, ListenerSpec, PortRange};

/// The checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub sftp: SftpConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listeners: Vec<ListenerSpec>,
    pub passive_ports: PortRange,
    pub shutdown_grace: Duration,
    /// Where data lives (keys, users.db, files). A `--data-dir` on the command line wins.
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SftpConfig {
    /// Host key files (OpenSSH private key format). Empty: use the ones generated in the data dir.
    pub host_keys: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `ferry=debug,russh=info`. `RUST_LOG` wins over it.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                listeners: vec![ListenerSpec {
                    protocols: vec![crate::Protocol::Sftp],
                    addr: ([0, 0, 0, 0], 2222).into(),
                }],
                passive_ports: PortRange { first: DEFAULT_PASSIVE_PORTS.0, last: DEFAULT_PASSIVE_PORTS.1 },
                shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
                data_dir: None,
            },
            sftp: SftpConfig::default(),
            log: LogConfig { level: "info".into() },
        }
    }
}

/// A configuration file Ferry refuses, with where and why, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}\nhint: {}", self.message.trim_end(), self.hint)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    sftp: RawSftp,
    #[serde(default)]
    log: RawLog,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    listeners: Option<Vec<Spanned<RawListener>>>,
    passive_ports: Option<Spanned<String>>,
    shutdown_grace_secs: Option<u64>,
    data_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    protocols: Spanned<String>,
    address: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSftp {
    #[serde(default)]
    host_keys: Vec<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read it: {e}"),
            hint: "check the path given to --config, or write a fresh one with `ferry config init`".into(),
        })?;
        Self::parse(path, &text)
    }

    /// Checks configuration text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |line: Option<usize>, key: Option<&str>, message: String, hint: &str| ConfigError {
            file: path.to_path_buf(),
            line,
            key: key.map(str::to_string),
            message,
            hint: hint.to_string(),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            err(line, None, e.message().to_string(), "compare with the annotated file that `ferry config init` writes")
        })?;
        let mut config = Config::default();
        if let Some(listeners) = raw.server.listeners {
            config.server.listeners.clear();
            for (i, l) in listeners.into_iter().enumerate() {
                let l = l.into_inner();
                let protocols = parse_protocols(l.protocols.get_ref()).map_err(|e| {
                    err(
                        Some(line_of(text, l.protocols.span().start)),
                        Some(&format!("server.listeners[{i}].protocols")),
                        e.0,
                        "for example protocols = \"sftp\" or \"any\"",
                    )
                })?;
                let addr = l.address.get_ref().parse().map_err(|_| {
                    err(
                        Some(line_of(text, l.address.span().start)),
                        Some(&format!("server.listeners[{i}].address")),
                        format!("{:?} is not an address with a port", l.address.get_ref()),
                        "for example address = \"0.0.0.0:2222\" or \"[::]:2222\"",
                    )
                })?;
                config.server.listeners.push(ListenerSpec { protocols, addr });
            }
            if config.server.listeners.is_empty() {
                return Err(err(
                    None,
                    Some("server.listeners"),
                    "no listener configured".into(),
                    "add at least one { protocols = \"sftp\", address = \"0.0.0.0:2222\" }",
                ));
            }
        }
        if let Some(range) = raw.server.passive_ports {
            config.server.passive_ports = range.get_ref().parse().map_err(|e: crate::SpecError| {
                err(
                    Some(line_of(text, range.span().start)),
                    Some("server.passive_ports"),
                    e.0,
                    "for example passive_ports = \"50000-51000\"",
                )
            })?;
        }
        if let Some(secs) = raw.server.shutdown_grace_secs {
            config.server.shutdown_grace = Duration::from_secs(secs);
        }
        config.server.data_dir = raw.server.data_dir;
        config.sftp.host_keys = raw.sftp.host_keys;
        if let Some(level) = raw.log.level {
            config.log.level = level;
        }
        Ok(config)
    }
}

/// What `ferry config init` writes: every setting with its default and what it does.
pub const ANNOTATED_TEMPLATE: &str = r#"# Ferry configuration. Every setting below shows its default; delete what you do not change.
# Command-line options (--listen, --passive-ports, --data-dir) override this file.

[server]
# Where Ferry keeps its host keys, certificate, user database (users.db) and users' files (files/NAME).
# Relative paths are relative to the directory Ferry is started in. --data-dir / FERRY_DATA_DIR win.
# data_dir = "./ferry-data"

# Listeners: each serves one or more protocols on one address.
# protocols: "sftp", "ftps" (explicit, AUTH TLS), "ftps-implicit" (TLS from the first byte), "ftp" (plain,
# credentials in clear text: only if you really must), or "any"; several as "sftp,ftps".
# This version serves sftp; a listener with a protocol that is not built yet stops Ferry at start.
listeners = [
  { protocols = "sftp", address = "0.0.0.0:2222" },
]

# Ports for FTPS passive data connections (open them in your firewall too).
passive_ports = "50000-51000"

# On SIGTERM / Ctrl-C: stop accepting, give running transfers this many seconds, then exit.
shutdown_grace_secs = 30

[sftp]
# SSH host keys in OpenSSH format. Empty: use the ed25519, ECDSA P-256 and RSA 3072 keys Ferry generated
# in the data dir on first start.
host_keys = []

[log]
# A filter such as "info", "debug" or "ferry=debug,russh=warn". The RUST_LOG environment variable wins.
level = "info"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("ferry.toml"), text)
    }

    #[test]
    fn template_is_valid_and_default() {
        assert_eq!(parse(ANNOTATED_TEMPLATE).expect("template parses"), Config::default());
        assert_eq!(parse("").expect("empty parses"), Config::default());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = parse("[server]\n\nlisten = 3\n").expect_err("refused");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("unknown field `listen`"), "{e}");
        assert!(e.to_string().contains("ferry.toml:3"), "{e}");
        assert!(e.to_string().contains("hint:"), "{e}");
    }

    #[test]
    fn bad_listener_address_names_key() {
        let e = parse("[server]\nlisteners = [\n  { protocols = \"sftp\", address = \"nowhere\" },\n]\n")
            .expect_err("refused");
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("server.listeners[0].address"));
    }

    #[test]
    fn bad_protocol_and_range() {
        let e = parse("[server]\nlisteners = [{ protocols = \"scp\", address = \"0.0.0.0:1\" }]\n").expect_err("no");
        assert_eq!(e.key.as_deref(), Some("server.listeners[0].protocols"));
        let e = parse("[server]\npassive_ports = \"9-1\"\n").expect_err("no");
        assert_eq!(e.key.as_deref(), Some("server.passive_ports"));
        assert_eq!(e.line, Some(2));
    }
}
