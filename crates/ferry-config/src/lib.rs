//! Ferry's configuration: the TOML file, the command-line overrides, their defaults and validation.
//! Raw input is parsed first, then checked into typed values ([`ListenerSpec`], [`PortRange`]), so the
//! rest of Ferry never sees an unchecked setting.
#![forbid(unsafe_code)]

mod algorithms;
mod cidr;
mod file;
pub mod limits;
mod listen;
mod tls_names;

pub use algorithms::{parse as parse_algorithm_list, AlgorithmError, AlgorithmList, SshAlgorithms};
pub use cidr::Cidr;
pub use file::{
    Config, ConfigError, DefenderConfig, FtpsConfig, LimitsConfig, LogConfig, LogFormat, MaxStartups, S3Config,
    ServerConfig, SftpConfig, StorageConfig, UploadsConfig, UsersConfig, ANNOTATED_TEMPLATE,
};
pub use listen::{ListenerSpec, PortRange, Protocol, SpecError};
