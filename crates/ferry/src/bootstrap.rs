//! Where Ferry's data lives, and the first-start defaults: an empty data dir gets a user store and a
//! demo user, so `ferry serve` works on a fresh machine with nothing else.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_auth::UserStore;
use ferry_config::Config;

use crate::cli::GlobalArgs;
use crate::CliError;

pub struct Env {
    pub config: Config,
    pub data_dir: PathBuf,
}

/// Loads the configuration (if any) and settles the data dir: `--data-dir` / `FERRY_DATA_DIR`, then the
/// config's `server.data_dir`, then `./ferry-data`. The result is absolute, so homes recorded in the user
/// store stay valid whatever directory the server is started from.
pub fn load(global: &GlobalArgs) -> Result<Env, CliError> {
    let config = match &global.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let dir = global
        .data_dir
        .clone()
        .or_else(|| config.server.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("ferry-data"));
    let data_dir =
        std::path::absolute(&dir).map_err(|e| CliError::runtime(format!("data dir {}: {e}", dir.display())))?;
    // Its real path: homes under it are opened without following any symlink, so a data dir reached
    // through one (/var/lib -> /data/lib) would otherwise refuse every login.
    let data_dir = real_path(&data_dir);
    Ok(Env { config, data_dir })
}

/// `path` with the symlinks of its longest existing prefix resolved (the rest does not exist yet).
fn real_path(path: &Path) -> PathBuf {
    let mut head = path.to_path_buf();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = fs::canonicalize(&head) {
            return tail.iter().rev().fold(real, |p: PathBuf, c| p.join(c));
        }
        match (head.file_name().map(|n| n.to_os_string()), head.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                head = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Creates the data dir, private to the user running Ferry (it holds host keys and password hashes).
pub fn ensure_data_dir(dir: &Path) -> Result<(), CliError> {
    fs::create_dir_all(dir).map_err(|e| {
        CliError::runtime(format!("cannot create data dir {}: {e}", dir.display()))
            .with_hint("choose another place with --data-dir DIR or FERRY_DATA_DIR")
    })?;
    set_private(dir, 0o700);
    Ok(())
}

pub fn set_private(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
}

/// The user store the configuration names (`[users] database`): PostgreSQL, another SQLite file, or
/// `users.db` in the data dir.
pub fn open_store(env: &Env) -> Result<UserStore, CliError> {
    ensure_data_dir(&env.data_dir)?;
    match env.config.users.database.as_deref() {
        Some(url) if ferry_auth::is_postgres_url(url) => UserStore::open_postgres(url).map_err(|e| {
            CliError::runtime(e.to_string()).with_hint(
                "check [users] database in the configuration: postgres://USER:PASSWORD@HOST:PORT/DATABASE, and that the server accepts this user from here",
            )
        }),
        other => {
            let path = other.map(PathBuf::from).unwrap_or_else(|| env.data_dir.join("users.db"));
            let store = UserStore::open(&path)?;
            set_private(&path, 0o600);
            Ok(store)
        }
    }
}

pub fn default_home(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("files").join(name)
}

/// Why `home` cannot be a user's root in `data_dir`, if it cannot: the data dir itself, anything inside
/// it but under `files/` (keys, users.db, the upload journal would be the user's to read or replace), or
/// a directory that contains the data dir. Compared lexically on absolute paths, before anything exists.
pub fn home_conflict(data_dir: &Path, home: &Path) -> Option<String> {
    let norm = |p: &Path| -> PathBuf {
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    };
    let (data, home) = (norm(data_dir), norm(home));
    let files = data.join("files");
    if home == data {
        Some("it is the data dir".into())
    } else if data.starts_with(&home) {
        Some(format!("it contains the data dir {}", data.display()))
    } else if home.starts_with(&data) && !(home.starts_with(&files) && home != files) {
        Some(format!("it is inside the data dir {} but not under its files/ directory", data.display()))
    } else {
        None
    }
}

/// Refuses a home [`home_conflict`] finds wrong, with the way out.
pub fn check_home(data_dir: &Path, user: &str, home: &Path) -> Result<(), CliError> {
    match home_conflict(data_dir, home) {
        None => Ok(()),
        Some(why) => Err(CliError::usage(
            format!("home {} of user {user} cannot be used: {why}", home.display()),
            format!("give the user a home of their own, for example --home {}", default_home(data_dir, user).display()),
        )),
    }
}

/// Makes a user's home directory, so the first login finds it.
pub fn create_home(home: &Path) -> Result<(), CliError> {
    fs::create_dir_all(home)
        .map_err(|e| CliError::runtime(format!("cannot create home directory {}: {e}", home.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_that_would_expose_the_data_dir_are_refused() {
        let d = Path::new("/srv/ferry");
        assert!(home_conflict(d, Path::new("/srv/ferry/files/alice")).is_none());
        assert!(home_conflict(d, Path::new("/home/alice")).is_none());
        assert!(home_conflict(d, Path::new("/srv/ferry-other")).is_none());
        assert!(home_conflict(d, Path::new("/srv/ferry")).is_some());
        assert!(home_conflict(d, Path::new("/srv/ferry/")).is_some());
        assert!(home_conflict(d, Path::new("/srv/ferry/files")).is_some());
        assert!(home_conflict(d, Path::new("/srv/ferry/keys")).is_some());
        assert!(home_conflict(d, Path::new("/srv")).is_some());
        assert!(home_conflict(d, Path::new("/")).is_some());
        assert!(home_conflict(d, Path::new("/srv/ferry/files/../keys")).is_some());
    }
}
