//! `ferry config init` and `ferry config check`.

use std::io::Write;

use ferry_config::ANNOTATED_TEMPLATE;

use crate::cli::{ConfigCmd, GlobalArgs};
use crate::CliError;

pub fn run(global: &GlobalArgs, cmd: &ConfigCmd) -> Result<(), CliError> {
    match cmd {
        ConfigCmd::Init { output: None, .. } => {
            let _ = std::io::stdout().write_all(ANNOTATED_TEMPLATE.as_bytes());
            Ok(())
        }
        ConfigCmd::Init { output: Some(path), force } => {
            if path.exists() && !force {
                return Err(CliError::usage(
                    format!("{} already exists", path.display()),
                    "pass --force to overwrite it, or choose another file",
                ));
            }
            std::fs::write(path, ANNOTATED_TEMPLATE)
                .map_err(|e| CliError::runtime(format!("cannot write {}: {e}", path.display())))?;
            println!("wrote {}; start with: ferry --config {} serve", path.display(), path.display());
            Ok(())
        }
        ConfigCmd::Check => {
            let env = crate::bootstrap::load(global)?;
            let c = &env.config;
            println!("data dir: {}", env.data_dir.display());
            for l in &c.server.listeners {
                println!("listener: {l}");
            }
            println!("passive ports: {}", c.server.passive_ports);
            println!("shutdown grace: {}s", c.server.shutdown_grace.as_secs());
            println!("configuration OK");
            Ok(())
        }
    }
}
