//! Ferry's configuration: the TOML file, the command-line overrides, their defaults and validation.
//! Raw input is parsed first, then checked into typed values ([`ListenerSpec`], [`PortRange`]), so the
//! rest of Ferry never sees an unchecked setting.
#![forbid(unsafe_code)]

mod file;
pub mod limits;
mod listen;

pub use file::{
    Config, ConfigError, FtpsConfig, LogConfig, ServerConfig, SftpConfig, UploadsConfig, ANNOTATED_TEMPLATE,
};
pub use listen::{ListenerSpec, PortRange, Protocol, SpecError};
