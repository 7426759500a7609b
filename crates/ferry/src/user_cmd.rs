//! `ferry user ...`: the user store from the command line. Changes reach a running server at the next
//! login, because the server reads the store on every login.

use std::io::BufRead;
use std::path::Path;

use ferry_auth::{generate_password, validate_username};

use crate::bootstrap::{check_home, create_home, default_home, open_store, Env};
use crate::cli::{GlobalArgs, KeyCmd, UserCmd};
use crate::CliError;

fn read_password_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::runtime(format!("reading the password from standard input: {e}")))?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err(CliError::usage(
            "no password on standard input",
            "pipe it in: echo 'PASSWORD' | ferry user add NAME --password-stdin",
        ));
    }
    Ok(pw)
}

fn read_key_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| {
        CliError::runtime(format!("cannot read public key {}: {e}", path.display()))
            .with_hint("give the .pub file, e.g. ~/.ssh/id_ed25519.pub")
    })
}

pub fn run(global: &GlobalArgs, cmd: &UserCmd) -> Result<(), CliError> {
    let Env { data_dir, .. } = crate::bootstrap::load(global)?;
    let store = open_store(&data_dir)?;
    match cmd {
        UserCmd::Add(a) => {
            validate_username(&a.name)?;
            let keys: Vec<String> = a.public_keys.iter().map(|p| read_key_file(p)).collect::<Result<_, _>>()?;
            // With neither a password option nor a key, generate a password: a user who cannot log in
            // is never what was meant.
            let generate = a.generate_password || (!a.password_stdin && keys.is_empty());
            let password = if a.password_stdin {
                Some(read_password_line()?)
            } else if generate {
                Some(generate_password())
            } else {
                None
            };
            let home = match &a.home {
                Some(h) => {
                    std::path::absolute(h).map_err(|e| CliError::runtime(format!("home {}: {e}", h.display())))?
                }
                None => default_home(&data_dir, &a.name),
            };
            check_home(&data_dir, &a.name, &home)?;
            create_home(&home)?;
            store.add_user(&a.name, password.as_deref(), &home)?;
            for (key, path) in keys.iter().zip(&a.public_keys) {
                if let Err(e) = store.add_key(&a.name, key) {
                    // Do not leave a half-made user behind.
                    let _ = store.remove_user(&a.name);
                    return Err(CliError::runtime(format!("{}: {e}", path.display())));
                }
            }
            println!("added user {} (home {})", a.name, home.display());
            if generate {
                println!("password: {}", password.unwrap_or_default());
            }
            Ok(())
        }
        UserCmd::List => {
            for u in store.list()? {
                let auth = match (u.has_password, u.key_count) {
                    (true, 0) => "password".to_string(),
                    (false, n) => format!("{n} key(s)"),
                    (true, n) => format!("password, {n} key(s)"),
                };
                println!("{}\t{}\t{}", u.name, auth, u.home.display());
            }
            Ok(())
        }
        UserCmd::Remove { name } => {
            store.remove_user(name)?;
            println!("removed user {name} (their files are left in place)");
            Ok(())
        }
        UserCmd::Passwd(p) => {
            let password = if p.password_stdin { read_password_line()? } else { generate_password() };
            store.set_password(&p.name, &password)?;
            println!("password changed for {}", p.name);
            if !p.password_stdin {
                println!("password: {password}");
            }
            Ok(())
        }
        UserCmd::Key(KeyCmd::Add { name, file }) => {
            let fp = store.add_key(name, &read_key_file(file)?)?;
            println!("added key {fp} for {name}");
            Ok(())
        }
    }
}
