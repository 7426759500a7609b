//! The `ferry` binary: parses the command line, runs the command, maps errors to exit codes.
#![forbid(unsafe_code)]

mod authorized_keys;
mod ban_cmd;
mod bootstrap;
mod cli;
mod config_cmd;
mod firewall;
mod hostkeys;
mod logging;
mod probe_cmd;
mod serve;
mod sheet;
mod user_cmd;
mod xferlog;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// An error for the person at the terminal: what failed, and what to do about it.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hint: Option<String>,
    /// 2: bad usage or configuration; 1: something failed at run time.
    pub code: u8,
}

impl CliError {
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError { message: message.into(), hint: Some(hint.into()), code: 2 }
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        CliError { message: message.into(), hint: None, code: 1 }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<ferry_auth::AuthError> for CliError {
    fn from(e: ferry_auth::AuthError) -> Self {
        CliError::runtime(e.to_string())
    }
}

impl From<ferry_config::ConfigError> for CliError {
    fn from(e: ferry_config::ConfigError) -> Self {
        CliError { message: format!("bad configuration: {e}"), hint: None, code: 2 }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => serve::run(&cli.global, args),
        Command::User(cmd) => user_cmd::run(&cli.global, cmd),
        Command::Config(cmd) => config_cmd::run(&cli.global, cmd),
        Command::Ban(cmd) => ban_cmd::run(&cli.global, cmd),
        Command::Firewall(args) => firewall::run(&cli.global, args),
        Command::Probe(args) => probe_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: error: {}", e.message);
            if let Some(h) = e.hint {
                eprintln!("hint: {h}");
            }
            ExitCode::from(e.code)
        }
    }
}
