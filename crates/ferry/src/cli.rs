//! The command line, as users and scripts type it. Names here are a contract: keep them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: secure file transfer (SFTP; FTPS coming) with one user store and one virtual filesystem"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Where Ferry keeps host keys, users (users.db) and users' files [default: ./ferry-data]
    #[arg(long, global = true, env = "FERRY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A TOML configuration file (write an annotated one with `ferry config init`)
    #[arg(long, global = true, env = "FERRY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (on an empty data dir: generate keys and a demo user first)
    Serve(ServeArgs),
    /// Manage users: add, list, remove, passwd, key add
    #[command(subcommand)]
    User(UserCmd),
    /// Write or check a configuration file
    #[command(subcommand)]
    Config(ConfigCmd),
    /// List, add or lift bans of client addresses (the defender's, and your own)
    #[command(subcommand)]
    Ban(BanCmd),
    /// Print the firewall rules the configuration needs (listeners and the FTPS passive range)
    Firewall(FirewallArgs),
    /// Tell what a host:port really speaks (SSH, FTP, implicit TLS) and what is wrong with it
    #[command(after_help = PROBE_HELP)]
    Probe(ProbeArgs),
}

const PROBE_HELP: &str = "Each port is tried three ways: waiting for a greeting, opening with a TLS ClientHello, and
opening with an SSH version line, so a port that serves several protocols is reported with all of them.
Exit status 0 only when every check passed. FAIL: nothing listens or answers, nothing identified, only weak
algorithms, an FTP server without AUTH TLS, a failed TLS handshake, an expired certificate, a CA-signed
certificate for another name, or any failed login/transfer check. warn: weak algorithms beside good ones, a
self-signed certificate, a certificate expiring within 14 days.";

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// HOST[:PORT]; without a port: 22, 21 and 990
    #[arg(required = true, value_name = "HOST[:PORT]")]
    pub targets: Vec<String>,
    /// Log in as this user and list, upload, download and remove a small test file
    #[arg(long)]
    pub user: Option<String>,
    /// Read the password from standard input (one line)
    #[arg(long, requires = "user")]
    pub password_stdin: bool,
    /// An unencrypted OpenSSH private key for SFTP logins
    #[arg(long, value_name = "FILE", requires = "user")]
    pub key: Option<PathBuf>,
    /// Seconds to wait for each connection and answer
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// Print JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FirewallArgs {
    /// Rule syntax
    #[arg(long, value_enum, default_value = "iptables")]
    pub format: FirewallFormat,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallFormat {
    Iptables,
    Nftables,
    Ufw,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// PROTOCOLS=ADDR, e.g. sftp=0.0.0.0:2222; replaces the configured listeners; repeatable.
    /// PROTOCOLS is a comma list of sftp, ftps, ftps-implicit, or any.
    #[arg(long = "listen", value_name = "PROTOCOLS=ADDR")]
    pub listen: Vec<String>,
    /// Port range for FTPS passive data connections, e.g. 50000-51000
    #[arg(long, value_name = "LO-HI")]
    pub passive_ports: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user (argon2id password and/or SSH public keys)
    Add(UserAddArgs),
    /// List users
    List {
        /// One JSON array with every setting of every user
        #[arg(long)]
        json: bool,
    },
    /// Show everything about a user
    Show {
        name: String,
        /// As one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Remove a user (their files stay on disk)
    Remove { name: String },
    /// Change a user's password
    Passwd(PasswdArgs),
    /// Manage a user's SSH public keys
    #[command(subcommand)]
    Key(KeyCmd),
    /// Change a user's settings
    Set(UserSetArgs),
    /// Print everything a partner needs to connect: host, ports, fingerprints, client settings
    Sheet(SheetArgs),
    /// Stop a user from logging in, and end their live sessions
    Disable { name: String },
    /// Let a disabled user log in again
    Enable { name: String },
    /// Manage a user's permission rules, per directory (the most specific path wins)
    #[command(subcommand, after_help = PERM_HELP)]
    Perm(PermCmd),
}

/// The permissions and presets, for `user perm --help`.
pub const PERM_HELP: &str = "PERMS is a preset or a comma list.
Presets: full; read-only (list, download); upload-only (list, upload: a drop box, no download, no overwrite);
download-only (list, download, delete: an outbox the partner empties); none.
Permissions: list, download, upload, overwrite, delete, rename, mkdir, rmdir, symlink, chmod, times.
The rule of the deepest directory containing a path applies; with no rule, everything is allowed.
Example: ferry user perm set acme / read-only && ferry user perm set acme /in upload-only";

#[derive(Args, Debug)]
pub struct UserSetArgs {
    pub name: String,
    /// What the user may do everywhere (the rule at /): a preset or a comma list (see `user perm --help`)
    #[arg(long, value_name = "PERMS")]
    pub permissions: Option<String>,
    /// Last day the account may log in (UTC), or `never`
    #[arg(long, value_name = "YYYY-MM-DD|never")]
    pub expires: Option<String>,
    /// Addresses the account may log in from, as CIDR ranges (repeatable); `any` lifts the restriction
    #[arg(long = "allow-from", value_name = "CIDR", num_args = 1..)]
    pub allow_from: Vec<String>,
    /// Protocols the account may use: a comma list of sftp, ftps, ftp; `any` for every one
    #[arg(long, value_name = "LIST")]
    pub protocols: Option<String>,
    /// Sessions the user may have at once, over every protocol (0: no limit)
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<u64>,
    /// Bytes the user's files may take (0: no limit)
    #[arg(long, value_name = "N")]
    pub quota_bytes: Option<u64>,
    /// Regular files the user may have (0: no limit)
    #[arg(long, value_name = "N")]
    pub quota_files: Option<u64>,
    /// Upload bandwidth per session, bytes per second (0: no limit)
    #[arg(long, value_name = "BYTES/S")]
    pub upload_rate: Option<u64>,
    /// Download bandwidth per session, bytes per second (0: no limit)
    #[arg(long, value_name = "BYTES/S")]
    pub download_rate: Option<u64>,
    /// Where the user's files are: `local` (their home directory), `s3` (the bucket in [storage]), or
    /// `default` (the server's [storage] backend)
    #[arg(long, value_name = "local|s3|default")]
    pub storage: Option<String>,
}

#[derive(Args, Debug)]
pub struct SheetArgs {
    pub name: String,
    /// The host name partners use [default: the listener's address, or this machine's name]
    #[arg(long)]
    pub host: Option<String>,
    /// The listeners and passive ports, as for `serve` [default: the configuration's]
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum BanCmd {
    /// The bans in force: address, until when, why
    List {
        /// One JSON array, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Ban an address; a running server closes its new connections at once
    Add {
        ip: String,
        /// How long: 30m, 1h, 2d, 3600 (seconds) or forever [default: [defender] ban_secs]
        #[arg(long = "for", value_name = "DURATION")]
        r#for: Option<String>,
    },
    /// Lift the ban of an address
    Remove { ip: String },
}

#[derive(Subcommand, Debug)]
pub enum PermCmd {
    /// Set the rule at PATH (a directory of the user's tree, e.g. /in)
    Set { name: String, path: String, perms: String },
    /// List the user's rules
    List { name: String },
    /// Remove the rule at PATH
    Remove { name: String, path: String },
}

#[derive(Args, Debug)]
pub struct UserAddArgs {
    pub name: String,
    /// Read the password from standard input (one line)
    #[arg(long, conflicts_with = "generate_password")]
    pub password_stdin: bool,
    /// Generate a password and print it
    #[arg(long)]
    pub generate_password: bool,
    /// An OpenSSH public key file (e.g. ~/.ssh/id_ed25519.pub); repeatable
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<PathBuf>,
    /// The directory that is the user's root [default: DATA_DIR/files/NAME]
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// What the user may do everywhere (the rule at /): a preset or a comma list [default: full]
    #[arg(long, value_name = "PERMS")]
    pub permissions: Option<String>,
}

#[derive(Args, Debug)]
pub struct PasswdArgs {
    pub name: String,
    /// Read the new password from standard input (one line)
    #[arg(long, conflicts_with = "generate_password")]
    pub password_stdin: bool,
    /// Generate a new password and print it (the default when no option is given)
    #[arg(long)]
    pub generate_password: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Authorise every key of an OpenSSH public key or authorized_keys file for a user
    Add { name: String, file: PathBuf },
    /// List a user's keys (size, SHA256 fingerprint, comment, type, as `ssh-keygen -l` prints them)
    List { name: String },
    /// Remove a key by its SHA256 fingerprint
    Remove { name: String, fingerprint: String },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Write an annotated configuration file with every default (to FILE, or to standard output)
    Init {
        #[arg(value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
    },
    /// Check a configuration file and print what it means
    Check,
}
