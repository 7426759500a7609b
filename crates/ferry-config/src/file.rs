use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::limits::{
    DEFAULT_DETECTION_WAIT, DEFAULT_LOGIN_GRACE, DEFAULT_MAX_CONNECTIONS, DEFAULT_PASSIVE_PORTS,
    DEFAULT_PER_SOURCE_MAX_STARTUPS, DEFAULT_SHUTDOWN_GRACE,
};
use crate::listen::{parse_protocols, ListenerSpec, PortRange};

/// The checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub sftp: SftpConfig,
    pub ftps: FtpsConfig,
    pub uploads: UploadsConfig,
    pub limits: LimitsConfig,
    pub defender: DefenderConfig,
    pub log: LogConfig,
    pub users: UsersConfig,
    pub storage: StorageConfig,
}

/// Where users' files are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageConfig {
    /// The backend of users who have not chosen one (`ferry user set NAME --storage local|s3`).
    pub default_s3: bool,
    /// The bucket, when one is configured: the default backend (`backend = "s3"`) or one users may choose.
    pub s3: Option<S3Config>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `https://s3.REGION.amazonaws.com` when not given.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    /// `None`: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// At start, incomplete multipart uploads under the prefix older than this are aborted (parts a killed
    /// node left behind); `None`: never.
    pub abort_incomplete_uploads_after: Option<Duration>,
}

/// Where the users (and bans) are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsersConfig {
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`, or the path of a SQLite file; `None`: `users.db` in
    /// the data dir.
    pub database: Option<String>,
}

/// The defender (`[defender]`): scores each source address for failed logins, protocol garbage and
/// limits hit, across every protocol, and bans it for a while once its score within the observation
/// window reaches the threshold. Bans live in the user database, so they survive restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct DefenderConfig {
    pub enabled: bool,
    /// The score within [`observation`](Self::observation) that bans an address.
    pub threshold: u32,
    pub observation: Duration,
    pub ban: Duration,
    /// Addresses never banned automatically.
    pub safelist: Vec<crate::Cidr>,
    pub score_failed_login: u32,
    pub score_garbage: u32,
    pub score_limit: u32,
}

impl Default for DefenderConfig {
    fn default() -> Self {
        use crate::limits::*;
        DefenderConfig {
            enabled: true,
            threshold: DEFENDER_THRESHOLD,
            observation: DEFENDER_OBSERVATION,
            ban: DEFENDER_BAN,
            safelist: DEFENDER_SAFELIST.iter().filter_map(|c| crate::Cidr::parse(c).ok()).collect(),
            score_failed_login: 1,
            score_garbage: 1,
            score_limit: 1,
        }
    }
}

/// Limits on connections before they log in (`[limits]`), so that one address cannot hurt anyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// From accept to a successful login, covering the SSH banner, key exchange and authentication and
    /// the TLS handshake of implicit FTPS.
    pub login_grace: Duration,
    /// OpenSSH's MaxStartups `start:rate:full` for unauthenticated connections in total: from `start` on,
    /// a new one is refused with probability `rate`% rising linearly to 100% at `full`.
    pub max_startups: MaxStartups,
    /// Unauthenticated connections from one address (OpenSSH's PerSourceMaxStartups).
    pub per_source_max_startups: usize,
    /// Connections of every kind at once (lowered at start to fit the open-file limit).
    pub max_connections: usize,
    /// Connections of every kind from one address (0: no limit).
    pub max_connections_per_ip: usize,
    /// Sessions one user may have at once, unless set for the user (0: no limit).
    pub max_sessions_per_user: usize,
}

/// `start:rate:full`, as OpenSSH's MaxStartups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxStartups {
    pub start: usize,
    pub rate: u32,
    pub full: usize,
}

impl std::str::FromStr for MaxStartups {
    type Err = String;
    fn from_str(s: &str) -> Result<MaxStartups, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |p: &str| p.trim().parse::<usize>().map_err(|_| format!("{p:?} is not a number"));
        let m = match parts.as_slice() {
            [full] => {
                let full = num(full)?;
                MaxStartups { start: full, rate: 100, full }
            }
            [start, rate, full] => {
                MaxStartups { start: num(start)?, rate: num(rate)?.min(100) as u32, full: num(full)? }
            }
            _ => return Err(format!("{s:?} is not start:rate:full")),
        };
        if m.start == 0 || m.start > m.full {
            return Err(format!("{s:?}: start must be at least 1 and at most full"));
        }
        Ok(m)
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            login_grace: DEFAULT_LOGIN_GRACE,
            max_startups: MaxStartups { start: 20, rate: 30, full: 100 },
            per_source_max_startups: DEFAULT_PER_SOURCE_MAX_STARTUPS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: 0,
            max_sessions_per_user: 0,
        }
    }
}

/// How uploads are written (`[uploads]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadsConfig {
    /// `mode = "atomic"`: hidden until complete, then renamed into place (drop folders). The default,
    /// "standard", shows an upload under its name from the start and undoes it if it is cut off.
    pub atomic: bool,
    /// Keep a cut-off upload of a new file for the client to resume, instead of removing it.
    pub keep_partial: bool,
    /// Bits removed from the mode of every file and directory a client creates.
    pub umask: u32,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig { atomic: false, keep_partial: false, umask: 0o022 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listeners: Vec<ListenerSpec>,
    pub passive_ports: PortRange,
    pub shutdown_grace: Duration,
    /// On a listener serving several protocols, how long a silent client is given before it is greeted
    /// as an FTP client.
    pub detection_wait: Duration,
    /// Where data lives (keys, users.db, files). A `--data-dir` on the command line wins.
    pub data_dir: Option<PathBuf>,
    /// Who may send a PROXY protocol header (the load balancers in front); listeners with
    /// `proxy_protocol = true` take connections only from these.
    pub trusted_proxies: Vec<crate::Cidr>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SftpConfig {
    /// Host key files (OpenSSH private key format). Empty: use the ones generated in the data dir.
    pub host_keys: Vec<PathBuf>,
    /// `kex`, `ciphers`, `macs`, `host_key_algorithms`: the lists in effect, defaults applied.
    pub algorithms: crate::SshAlgorithms,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct FtpsConfig {
    /// PEM certificate chain and key; both or neither. Neither: a self-signed pair in DATA_DIR/tls/.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The address announced in PASV replies, for a server behind NAT.
    pub passive_address: Option<IpAddr>,
    /// Data connections must resume the control connection's TLS session (vsftpd's require_ssl_reuse).
    pub require_session_reuse: bool,
    /// Extra DNS names and IP addresses for the generated self-signed certificate.
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `ferry=debug,russh=info`. `RUST_LOG` wins over it.
    pub level: String,
    /// How each line on stderr is written.
    pub format: LogFormat,
    /// A transfer log in the xferlog format of wu-ftpd, ProFTPD and vsftpd, if wanted.
    pub xferlog: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text, xferlog: None }
    }
}

/// The format of the log lines on stderr (`[log] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL message key=value ...`, for people and fail2ban.
    Text,
    /// One JSON object a line with every field, for log collectors.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                // The quickstart ports: each accepts all three protocols, so any client works on any of them.
                listeners: [2222, 2121, 9990]
                    .into_iter()
                    .map(|port| {
                        ListenerSpec::new(
                            vec![crate::Protocol::Sftp, crate::Protocol::Ftps, crate::Protocol::FtpsImplicit],
                            ([0, 0, 0, 0], port).into(),
                        )
                    })
                    .collect(),
                passive_ports: PortRange { first: DEFAULT_PASSIVE_PORTS.0, last: DEFAULT_PASSIVE_PORTS.1 },
                shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
                detection_wait: DEFAULT_DETECTION_WAIT,
                data_dir: None,
                trusted_proxies: Vec::new(),
            },
            sftp: SftpConfig::default(),
            ftps: FtpsConfig::default(),
            uploads: UploadsConfig::default(),
            limits: LimitsConfig::default(),
            defender: DefenderConfig::default(),
            log: LogConfig::default(),
            users: UsersConfig::default(),
            storage: StorageConfig::default(),
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
    ftps: RawFtps,
    #[serde(default)]
    uploads: RawUploads,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    defender: RawDefender,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    users: RawUsers,
    #[serde(default)]
    storage: RawStorage,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    backend: Option<Spanned<String>>,
    endpoint: Option<String>,
    region: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    abort_incomplete_uploads_after_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    database: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    login_grace_secs: Option<u64>,
    max_startups: Option<Spanned<String>>,
    per_source_max_startups: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_sessions_per_user: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefender {
    enabled: Option<bool>,
    threshold: Option<u32>,
    observation_secs: Option<u64>,
    ban_secs: Option<u64>,
    safelist: Option<Vec<Spanned<String>>>,
    score_failed_login: Option<u32>,
    score_garbage: Option<u32>,
    score_limit: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUploads {
    mode: Option<Spanned<String>>,
    #[serde(default)]
    keep_partial: bool,
    umask: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFtps {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    passive_address: Option<Spanned<String>>,
    #[serde(default)]
    require_session_reuse: bool,
    #[serde(default)]
    names: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    listeners: Option<Vec<Spanned<RawListener>>>,
    passive_ports: Option<Spanned<String>>,
    shutdown_grace_secs: Option<u64>,
    detection_wait_ms: Option<u64>,
    data_dir: Option<PathBuf>,
    trusted_proxies: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    protocols: Spanned<String>,
    address: Spanned<String>,
    #[serde(default)]
    proxy_protocol: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSftp {
    #[serde(default)]
    host_keys: Vec<PathBuf>,
    kex: Option<Spanned<String>>,
    ciphers: Option<Spanned<String>>,
    macs: Option<Spanned<String>>,
    host_key_algorithms: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<Spanned<String>>,
    xferlog: Option<Spanned<PathBuf>>,
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
                config.server.listeners.push(ListenerSpec { protocols, addr, proxy_protocol: l.proxy_protocol });
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
        if let Some(db) = raw.users.database {
            let value = db.get_ref().trim();
            let looks_like_url = value.contains("://");
            let postgres = value.starts_with("postgres://") || value.starts_with("postgresql://");
            if value.is_empty() || (looks_like_url && !postgres) {
                return Err(err(
                    Some(line_of(text, db.span().start)),
                    Some("users.database"),
                    format!("{:?} is not a PostgreSQL URL or a SQLite file", db.get_ref()),
                    "database = \"postgres://ferry:PASSWORD@db.example.com:5432/ferry\", or a path such as \"/var/lib/ferry/users.db\"",
                ));
            }
            config.users.database = Some(value.to_string());
        }
        let st = raw.storage;
        let backend_line = st.backend.as_ref().map(|b| line_of(text, b.span().start));
        let default_s3 = match st.backend.as_ref().map(|b| b.get_ref().as_str()) {
            None | Some("local") => false,
            Some("s3") => true,
            Some(other) => {
                return Err(err(
                    backend_line,
                    Some("storage.backend"),
                    format!("{other:?} is not a storage backend"),
                    "backend = \"local\" (files on this machine) or \"s3\" (an S3-compatible bucket)",
                ));
            }
        };
        let s3_given = st.bucket.is_some() || st.endpoint.is_some();
        if default_s3 || s3_given {
            let region = st.region.unwrap_or_else(|| "us-east-1".into());
            let Some(bucket) = st.bucket.filter(|b| !b.trim().is_empty()) else {
                return Err(err(
                    backend_line,
                    Some("storage.bucket"),
                    "S3 storage needs a bucket".into(),
                    "bucket = \"ferry\" (create it first; Ferry does not create buckets)",
                ));
            };
            config.storage = StorageConfig {
                default_s3,
                s3: Some(S3Config {
                    endpoint: st.endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com")),
                    region,
                    bucket,
                    prefix: st.prefix.unwrap_or_else(|| "users/".into()),
                    access_key_id: st.access_key_id,
                    secret_access_key: st.secret_access_key,
                    abort_incomplete_uploads_after: match st.abort_incomplete_uploads_after_secs {
                        Some(0) => None,
                        Some(secs) => Some(Duration::from_secs(secs)),
                        None => Some(Duration::from_secs(86_400)),
                    },
                }),
            };
        }
        if let Some(list) = raw.server.trusted_proxies {
            config.server.trusted_proxies = list
                .iter()
                .map(|c| {
                    crate::Cidr::parse(c.get_ref()).map_err(|e| {
                        err(
                            Some(line_of(text, c.span().start)),
                            Some("server.trusted_proxies"),
                            e,
                            "the load balancers' addresses, for example trusted_proxies = [\"10.0.0.5/32\"]",
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if config.server.trusted_proxies.is_empty() {
            if let Some(i) = config.server.listeners.iter().position(|l| l.proxy_protocol) {
                return Err(err(
                    None,
                    Some(&format!("server.listeners[{i}].proxy_protocol")),
                    "a listener takes PROXY protocol headers, but no proxy is trusted to send them".into(),
                    "list the load balancers' addresses in [server] trusted_proxies = [\"10.0.0.5/32\"]",
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
        if let Some(ms) = raw.server.detection_wait_ms {
            config.server.detection_wait = Duration::from_millis(ms);
        }
        if raw.ftps.cert.is_some() != raw.ftps.key.is_some() {
            return Err(err(
                None,
                Some(if raw.ftps.cert.is_some() { "ftps.key" } else { "ftps.cert" }),
                "ftps.cert and ftps.key must be given together".into(),
                "name both PEM files, or neither to use a generated self-signed certificate",
            ));
        }
        config.ftps.cert = raw.ftps.cert;
        config.ftps.key = raw.ftps.key;
        config.ftps.require_session_reuse = raw.ftps.require_session_reuse;
        if let Some(addr) = raw.ftps.passive_address {
            config.ftps.passive_address = Some(addr.get_ref().parse().map_err(|_| {
                err(
                    Some(line_of(text, addr.span().start)),
                    Some("ftps.passive_address"),
                    format!("{:?} is not an IP address", addr.get_ref()),
                    "give the public IPv4 address clients reach this server at, e.g. passive_address = \"203.0.113.7\"",
                )
            })?);
        }
        if let Some(mode) = raw.uploads.mode {
            config.uploads.atomic = match mode.get_ref().as_str() {
                "standard" => false,
                "atomic" => true,
                other => {
                    return Err(err(
                        Some(line_of(text, mode.span().start)),
                        Some("uploads.mode"),
                        format!("{other:?} is not an upload mode"),
                        "mode = \"standard\" (visible while written, undone if cut off) or \"atomic\" (hidden until complete)",
                    ))
                }
            };
        }
        config.uploads.keep_partial = raw.uploads.keep_partial;
        if let Some(umask) = raw.uploads.umask {
            config.uploads.umask =
                u32::from_str_radix(umask.get_ref().trim(), 8).ok().filter(|m| *m <= 0o777).ok_or_else(|| {
                    err(
                        Some(line_of(text, umask.span().start)),
                        Some("uploads.umask"),
                        format!("{:?} is not an octal umask", umask.get_ref()),
                        "for example umask = \"022\" (group and others read only) or \"077\" (owner only)",
                    )
                })?;
        }
        if let Some(secs) = raw.limits.login_grace_secs {
            config.limits.login_grace = Duration::from_secs(secs.max(1));
        }
        if let Some(m) = raw.limits.max_startups {
            config.limits.max_startups = m.get_ref().parse().map_err(|e: String| {
                err(
                    Some(line_of(text, m.span().start)),
                    Some("limits.max_startups"),
                    e,
                    "for example max_startups = \"10:30:100\" (from 10 unauthenticated connections on, refuse 30% of new ones, rising to all at 100)",
                )
            })?;
        }
        if let Some(n) = raw.limits.per_source_max_startups {
            config.limits.per_source_max_startups = n.max(1);
        }
        if let Some(n) = raw.limits.max_connections {
            config.limits.max_connections = n.max(1);
        }
        if let Some(n) = raw.limits.max_connections_per_ip {
            config.limits.max_connections_per_ip = n;
        }
        if let Some(n) = raw.limits.max_sessions_per_user {
            config.limits.max_sessions_per_user = n;
        }
        let d = raw.defender;
        if let Some(on) = d.enabled {
            config.defender.enabled = on;
        }
        if let Some(n) = d.threshold {
            config.defender.threshold = n.max(1);
        }
        if let Some(secs) = d.observation_secs {
            config.defender.observation = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = d.ban_secs {
            config.defender.ban = Duration::from_secs(secs.max(1));
        }
        if let Some(list) = d.safelist {
            config.defender.safelist = list
                .iter()
                .map(|c| {
                    crate::Cidr::parse(c.get_ref()).map_err(|e| {
                        err(
                            Some(line_of(text, c.span().start)),
                            Some("defender.safelist"),
                            e,
                            "for example safelist = [\"127.0.0.0/8\", \"::1\", \"10.0.0.0/8\"]",
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        for (field, value) in [
            (&mut config.defender.score_failed_login, d.score_failed_login),
            (&mut config.defender.score_garbage, d.score_garbage),
            (&mut config.defender.score_limit, d.score_limit),
        ] {
            if let Some(v) = value {
                *field = v;
            }
        }
        config.server.data_dir = raw.server.data_dir;
        config.sftp.host_keys = raw.sftp.host_keys;
        use crate::AlgorithmList as L;
        let lists = [
            (L::Kex, raw.sftp.kex),
            (L::Ciphers, raw.sftp.ciphers),
            (L::Macs, raw.sftp.macs),
            (L::HostKeyAlgorithms, raw.sftp.host_key_algorithms),
        ];
        config.sftp.algorithms = crate::algorithms::check(lists)
            .map_err(|(span, key, e)| err(Some(line_of(text, span.start)), Some(&key), e.message, &e.hint))?;
        config.ftps.names = crate::tls_names::check(raw.ftps.names).map_err(|(span, message)| {
            err(
                Some(line_of(text, span.start)),
                Some("ftps.names"),
                message,
                "for example names = [\"files.example.com\", \"203.0.113.7\"]",
            )
        })?;
        if let Some(level) = raw.log.level {
            config.log.level = level;
        }
        if let Some(format) = raw.log.format {
            config.log.format = match format.get_ref().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(err(
                        Some(line_of(text, format.span().start)),
                        Some("log.format"),
                        format!("{other:?} is not a log format"),
                        "format = \"text\" (one readable line per event) or \"json\" (one JSON object per line)",
                    ))
                }
            };
        }
        if let Some(xferlog) = raw.log.xferlog {
            if xferlog.get_ref().as_os_str().is_empty() {
                return Err(err(
                    Some(line_of(text, xferlog.span().start)),
                    Some("log.xferlog"),
                    format!("{:?} is not a file name", xferlog.get_ref()),
                    "name the file to append transfers to, e.g. xferlog = \"/var/log/ferry/xferlog\", or remove the key",
                ));
            }
            config.log.xferlog = Some(xferlog.into_inner());
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
# "ftp" next to "ftps" ("ftps,ftp") lets that listener accept logins without TLS; Ferry warns about it at start.
# A listener with several protocols recognises each client from its first bytes (SSH version line: SFTP;
# TLS ClientHello: implicit FTPS; silence: an FTP client waiting for the greeting, served explicit FTPS), so
# any client works on any of these ports. Single-protocol listeners behave exactly as the standard says.
listeners = [
  { protocols = "any", address = "0.0.0.0:2222" },
  { protocols = "any", address = "0.0.0.0:2121" },
  { protocols = "any", address = "0.0.0.0:9990" },
]

# Behind a TCP load balancer (HAProxy `send-proxy-v2`, AWS NLB, ...): add `proxy_protocol = true` to a
# listener and list the balancers here. Such a listener takes connections only from these addresses, each
# starting with a PROXY protocol header (v1 or v2); the client address in the header is the one used for
# logs, limits, bans and --allow-from. Give clients that connect directly a listener of their own.
# trusted_proxies = ["10.0.0.5/32"]
# listeners = [{ protocols = "sftp", address = "10.0.0.21:2222", proxy_protocol = true }]

# Ports for FTPS passive data connections (open them in your firewall too). Behind a load balancer, give
# each node its own range and forward each range to its node (see the README's "Scale out").
passive_ports = "50000-51000"

# On SIGTERM / Ctrl-C: stop accepting, give running transfers this many seconds, then exit.
shutdown_grace_secs = 30

# On a listener serving several protocols, a client that sends nothing for this long is greeted as an FTP
# client (SSH and TLS clients speak at once, so they never wait for it). Single-protocol listeners never wait.
detection_wait_ms = 150

[users]
# Where users, keys, permissions, quotas and bans are kept: users.db (SQLite) in the data dir by default,
# another SQLite file, or PostgreSQL, shared by every node behind a load balancer (tables are created and
# updated at start). `ferry --config FILE user ...` and `ferry --config FILE ban ...` use the same database.
# database = "postgres://ferry:PASSWORD@db.example.com:5432/ferry"

[storage]
# Where users' files are kept: "local" (each user's home directory) or "s3" (an S3-compatible bucket:
# AWS S3, Garage, MinIO, Ceph RGW; each user's files under prefix + NAME + "/"). Uploads to S3 become the
# object only when complete; random-offset writes, appends, resumed uploads, links and chmod are refused
# with a message. Credentials: here, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
# backend = "s3"
# endpoint = "http://127.0.0.1:3900"        # default: https://s3.REGION.amazonaws.com
# region = "garage"                          # default: us-east-1
# bucket = "ferry"
# prefix = "users/"
# access_key_id = "..."
# secret_access_key = "..."
# At start, abort incomplete multipart uploads under the prefix older than this (parts left by a node that
# was killed mid-upload); younger ones may be other nodes' uploads in progress. 0: never.
# abort_incomplete_uploads_after_secs = 86400

[sftp]
# SSH host keys in OpenSSH format. Empty: use the ed25519 and RSA 3072 keys Ferry generated in the data
# dir on first start (an ECDSA key found there is offered only when listed here). As for sshd, a key file
# that group or others may read is refused: chmod 600.
host_keys = []

# The SSH algorithms, with sshd_config's names and habits: "a,b" replaces the list, "+a,b" adds to the
# defaults, "-a,b" removes from them, "^a,b" puts them first. The defaults (below) pass ssh-audit; the
# README has the set old clients (JSch, libssh2 before 1.9, PuTTY before 0.68) need.
# `ferry config check` prints the lists in effect.
# kex = "mlkem768x25519-sha256,curve25519-sha256,curve25519-sha256@libssh.org"
# ciphers = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr"
# macs = "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha2-512"
# host_key_algorithms = "ssh-ed25519,rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521"

[ftps]
# The certificate for FTPS, PEM: the server certificate followed by its intermediates, and the private key.
# Leave both out to use a self-signed certificate generated in DATA_DIR/tls/ on first start (clients will
# ask to trust it). `kill -HUP <pid>` reloads both files without dropping sessions.
# cert = "/etc/ferry/fullchain.pem"
# key = "/etc/ferry/privkey.pem"

# The generated certificate names the host name, localhost, 127.0.0.1, ::1 and the listeners' addresses;
# add the names clients use to reach this server. It is valid for a year and renewed at start (and daily)
# when less than 30 days remain; a certificate named by cert and key is never touched.
names = []

# Behind NAT: the public address to announce in passive-mode (PASV) replies.
# passive_address = "203.0.113.7"

# Require data connections to resume the control connection's TLS session, so nobody else can take over a
# data connection (vsftpd's require_ssl_reuse). Off by default: Python's ftplib cannot resume sessions.
require_session_reuse = false

[uploads]
# How an upload is written. Either way a cut-off upload (client killed, connection lost, disk full, an FTPS
# data connection that ends without TLS close_notify) never leaves a partial file in place of a good one.
# "standard": the file shows under its name from the start, as on OpenSSH (sshfs and other clients that
#   look at the file they are writing need this). Cut off, a replaced file gets its previous version back
#   and a new file is removed; DATA_DIR/uploads/ records uploads in progress, so one cut off by a crash
#   of the server is undone at the next start.
# "atomic": the upload is written to a hidden file and renamed into place only when complete, so nobody
#   ever sees a partial file (drop folders whose downstream jobs pick up every new file). sshfs and
#   other clients that stat or re-open a file while writing it do not work in this mode.
mode = "standard"

# Keep a cut-off upload of a NEW file so the client can resume it (sftp reput, curl -C -, REST + STOR),
# instead of removing it. A cut-off replacement always gets the previous version back.
keep_partial = false

# Bits taken away from the mode of every file and directory a client creates (octal, as the shell's
# umask). Clients can never set setuid, setgid or sticky bits, whatever they ask for.
umask = "022"

[limits]
# Seconds from connecting to a successful login; it covers the SSH banner, key exchange and authentication,
# and the TLS handshake of implicit FTPS. Past it the connection is closed (FTP: 421).
login_grace_secs = 60

# Connections that have not logged in yet, in total, as OpenSSH's MaxStartups start:rate:full: from 20 on a
# new one is refused with probability 30%, rising to every one at 100. `start` is above the per-address
# limit below, so one address alone never makes anyone else's connection refused.
max_startups = "20:30:100"

# Connections that have not logged in yet from one address (OpenSSH's PerSourceMaxStartups).
per_source_max_startups = 10

# Connections of every kind at once. Ferry raises its open-file limit at start and lowers this if needed
# so that logged-in users always have file descriptors left.
max_connections = 10000

# Connections of every kind from one address, logged in or not (0: no limit, as vsftpd's max_per_ip; many
# partners sit behind one NAT address, so set it with care).
max_connections_per_ip = 0

# Sessions (logged-in connections, any protocol) one user may have at once; `ferry user set NAME
# --max-sessions N` sets it per user (0: no limit).
max_sessions_per_user = 0

[defender]
# Scores each client address, whatever the protocol, and bans it once its score within observation_secs
# reaches the threshold: a banned address is closed at connect, before any TLS or SSH work, for ban_secs.
# Bans are kept in the user database (they survive restarts); see `ferry ban list|add|remove`.
enabled = true
threshold = 10
observation_secs = 600
ban_secs = 1800
# What each event adds to the score: a failed login (wrong password or user name, a key not authorised,
# an account that may not log in now), bytes that are no protocol Ferry speaks, a per-address limit hit.
score_failed_login = 1
score_garbage = 1
score_limit = 1
# Addresses never banned automatically (this machine by default, as fail2ban's ignoreip: behind a local
# proxy without the PROXY protocol every client would share its address).
safelist = ["127.0.0.0/8", "::1/128"]

[log]
# A filter such as "info", "debug" or "ferry=debug,russh=warn". The RUST_LOG environment variable wins.
level = "info"

# How log lines on stderr are written: "text" (one readable line per event, as fail2ban reads it) or
# "json" (one JSON object per line with every field: timestamp, level, message, user, client, protocol,
# path, bytes_read, bytes_written, duration_ms, ...).
format = "text"

# A transfer log in the xferlog format of wu-ftpd, ProFTPD and vsftpd: one line per completed or cut-off
# transfer, SFTP and FTPS alike, times in UTC. Appended to, created mode 0640 if missing, and reopened on
# SIGHUP (for logrotate's postrotate `kill -HUP`). Unset: no transfer log.
# xferlog = "/var/log/ferry/xferlog"
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
    fn ftps_section() {
        let c = parse("[ftps]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\npassive_address = \"203.0.113.7\"\nrequire_session_reuse = true\n")
            .expect("parses");
        assert_eq!(c.ftps.passive_address, Some("203.0.113.7".parse().expect("ip")));
        assert!(c.ftps.require_session_reuse);
        let e = parse("[ftps]\ncert = \"/c.pem\"\n").expect_err("key missing");
        assert_eq!(e.key.as_deref(), Some("ftps.key"));
        let e = parse("[ftps]\n\npassive_address = \"nat-box\"\n").expect_err("not an ip");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("ftps.passive_address")));
    }

    #[test]
    fn uploads_section() {
        let c = parse("[uploads]\nmode = \"atomic\"\nkeep_partial = true\n").expect("parses");
        assert_eq!(c.uploads, UploadsConfig { atomic: true, keep_partial: true, umask: 0o022 });
        assert_eq!(parse("[uploads]\numask = \"077\"\n").expect("parses").uploads.umask, 0o077);
        assert!(parse("[uploads]\numask = \"9\"\n").is_err());
        assert!(!parse("[uploads]\nmode = \"standard\"\n").expect("parses").uploads.atomic);
        let e = parse("[uploads]\n\nmode = \"fast\"\n").expect_err("not a mode");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("uploads.mode")));
    }

    #[test]
    fn limits_section() {
        let c = parse("[limits]\nlogin_grace_secs = 20\nmax_startups = \"5:50:20\"\nper_source_max_startups = 3\n")
            .expect("parses");
        assert_eq!(c.limits.login_grace, Duration::from_secs(20));
        assert_eq!(c.limits.max_startups, MaxStartups { start: 5, rate: 50, full: 20 });
        assert_eq!(c.limits.per_source_max_startups, 3);
        assert_eq!("30".parse::<MaxStartups>(), Ok(MaxStartups { start: 30, rate: 100, full: 30 }));
        let e = parse("[limits]\nmax_startups = \"20:30:10\"\n").expect_err("start above full");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("limits.max_startups")));
        assert!(parse("[limits]\nmax_startups = \"a:b\"\n").is_err());
    }

    #[test]
    fn defender_section() {
        let d = Config::default().defender;
        assert!(d.enabled);
        assert_eq!((d.threshold, d.observation, d.ban), (10, Duration::from_secs(600), Duration::from_secs(1800)));
        assert!(d.safelist.iter().any(|c| c.contains("127.0.0.1".parse().expect("ip"))));
        let c = parse("[defender]\nthreshold = 3\nban_secs = 5\nsafelist = []\nscore_garbage = 0\n").expect("ok");
        assert_eq!((c.defender.threshold, c.defender.ban, c.defender.score_garbage), (3, Duration::from_secs(5), 0));
        assert!(c.defender.safelist.is_empty());
        let e = parse("[defender]\nsafelist = [\n \"10.0.0.0/8\",\n \"ten\"]\n").expect_err("not a range");
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("defender.safelist")));
    }

    #[test]
    fn load_reads_the_file_or_says_why_not() {
        let dir = std::env::temp_dir().join(format!("ferry-config-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ferry.toml");
        std::fs::write(&path, "[limits]\nper_source_max_startups = 3\n").expect("write");
        assert_eq!(Config::load(&path).expect("loads").limits.per_source_max_startups, 3);
        let e = Config::load(&dir.join("missing.toml")).expect_err("no such file");
        assert!(e.message.starts_with("cannot read it:") && e.hint.contains("ferry config init"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_protocol_and_range() {
        let e = parse("[server]\nlisteners = [{ protocols = \"scp\", address = \"0.0.0.0:1\" }]\n").expect_err("no");
        assert_eq!(e.key.as_deref(), Some("server.listeners[0].protocols"));
        let e = parse("[server]\npassive_ports = \"9-1\"\n").expect_err("no");
        assert_eq!(e.key.as_deref(), Some("server.passive_ports"));
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn log_section() {
        let d = Config::default().log;
        assert_eq!((d.format, d.xferlog), (LogFormat::Text, None));
        let c = parse("[log]\nformat = \"json\"\nxferlog = \"/var/log/ferry/xferlog\"\n").expect("parses");
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.xferlog.as_deref(), Some(Path::new("/var/log/ferry/xferlog")));
        assert_eq!(parse("[log]\nformat = \"text\"\n").expect("parses").log.format, LogFormat::Text);
        let e = parse("[log]\n\nformat = \"xml\"\n").expect_err("not a format");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("log.format")));
        assert!(e.hint.contains("json"), "{e}");
        let e = parse("[log]\nxferlog = \"\"\n").expect_err("empty path");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("log.xferlog")));
    }

    #[test]
    fn proxy_protocol_listeners_need_trusted_proxies() {
        let c = parse(
            "[server]\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\nlisteners = [\n  { protocols = \"sftp\", address = \"127.0.0.2:2222\", proxy_protocol = true },\n  { protocols = \"ftps\", address = \"127.0.0.2:2121\" },\n]\n",
        )
        .expect("parses");
        let l = &c.server.listeners;
        assert!(l[0].proxy_protocol && !l[1].proxy_protocol, "off unless asked for");
        let t = &c.server.trusted_proxies;
        assert!(t.iter().any(|c| c.contains("10.1.2.3".parse().expect("ip"))));
        assert!(!t.iter().any(|c| c.contains("127.0.0.2".parse().expect("ip"))), "a /32 is one address");
        assert!(Config::default().server.trusted_proxies.is_empty(), "nobody is trusted by default");
        // A PROXY listener with nobody trusted would refuse every connection: said at start, not at 3 am.
        let e = parse(
            "[server]\nlisteners = [{ protocols = \"sftp\", address = \"127.0.0.2:1\", proxy_protocol = true }]\n",
        )
        .expect_err("nobody trusted");
        assert_eq!(e.key.as_deref(), Some("server.listeners[0].proxy_protocol"));
        assert!(e.hint.contains("trusted_proxies"), "{e}");
        let e = parse("[server]\n\ntrusted_proxies = [\"balancer\"]\n").expect_err("not a CIDR");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("server.trusted_proxies")));
    }

    #[test]
    fn users_database() {
        assert_eq!(Config::default().users.database, None, "users.db in the data dir");
        let c = parse("[users]\ndatabase = \"postgres://ferry:pw@127.0.0.1:5432/ferry\"\n").expect("parses");
        assert_eq!(c.users.database.as_deref(), Some("postgres://ferry:pw@127.0.0.1:5432/ferry"));
        let c = parse("[users]\ndatabase = \"/var/lib/ferry/users.db\"\n").expect("a SQLite file");
        assert_eq!(c.users.database.as_deref(), Some("/var/lib/ferry/users.db"));
        let e = parse("[users]\n\ndatabase = \"mysql://x@y/z\"\n").expect_err("not PostgreSQL");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("users.database")));
        assert!(e.hint.contains("postgres://"), "{e}");
    }

    #[test]
    fn storage_section() {
        assert_eq!(Config::default().storage, StorageConfig::default());
        assert!(!Config::default().storage.default_s3 && Config::default().storage.s3.is_none());
        let c = parse("[storage]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:3900\"\nregion = \"garage\"\nbucket = \"ferry\"\n")
            .expect("parses");
        assert!(c.storage.default_s3);
        let s3 = c.storage.s3.expect("s3");
        assert_eq!(
            (s3.endpoint.as_str(), s3.region.as_str(), s3.bucket.as_str()),
            ("http://127.0.0.1:3900", "garage", "ferry")
        );
        assert_eq!(s3.prefix, "users/", "each user under users/NAME/ by default");
        assert_eq!(s3.access_key_id, None, "from the environment");
        assert_eq!(s3.abort_incomplete_uploads_after, Some(Duration::from_secs(86_400)), "a day by default");
        let c = parse("[storage]\nbackend = \"s3\"\nbucket = \"b\"\nregion = \"eu-west-1\"\n").expect("AWS");
        assert_eq!(c.storage.s3.expect("s3").endpoint, "https://s3.eu-west-1.amazonaws.com");
        let e = parse("[storage]\nbackend = \"s3\"\n").expect_err("no bucket");
        assert_eq!(e.key.as_deref(), Some("storage.bucket"));
        let e = parse("[storage]\nbackend = \"ftp\"\n").expect_err("unknown");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("storage.backend")));
        // A bucket beside the local default: there for users who choose it (`--storage s3`).
        let c = parse("[storage]\nbucket = \"b\"\n").expect("a bucket users may choose");
        assert!(!c.storage.default_s3 && c.storage.s3.is_some());
    }
}
