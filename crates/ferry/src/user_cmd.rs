//! `ferry user ...`: the user store from the command line. Changes reach a running server at the next
//! login, because the server reads the store on every login.

use std::io::BufRead;
use std::path::Path;

use ferry_auth::{generate_password, validate_username};

use crate::authorized_keys;
use crate::bootstrap::{check_home, create_home, default_home, open_store, Env};
use crate::cli::{GlobalArgs, KeyCmd, PermCmd, UserCmd};
use crate::CliError;
use ferry_core::account::{parse_date, Cidr};
use ferry_core::permissions::PermSet;
use ferry_vfs::VPath;

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

/// Every key of a .pub or authorized_keys file, checked (options, key format) before anything is stored.
fn read_key_file(path: &Path) -> Result<Vec<String>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::runtime(format!("cannot read public key {}: {e}", path.display()))
            .with_hint("give the .pub file, e.g. ~/.ssh/id_ed25519.pub, or an authorized_keys file")
    })?;
    // Exit 1, as for a file that cannot be read: the command was right, the file's content is not.
    let lines = authorized_keys::parse(&text).map_err(|(line, why)| {
        CliError::runtime(format!("{}:{line}: {why}", path.display()))
            .with_hint("fix or remove that line and run the command again")
    })?;
    if lines.is_empty() {
        return Err(CliError::runtime(format!("{} has no key in it", path.display()))
            .with_hint("give a .pub file or an authorized_keys file with at least one key line"));
    }
    for l in &lines {
        russh::keys::PublicKey::from_openssh(&l.key).map_err(|e| {
            CliError::runtime(format!("{}:{}: not a usable OpenSSH public key: {e}", path.display(), l.line_no))
                .with_hint("each line must be `TYPE BASE64 [comment]`, as in a .pub file")
        })?;
    }
    Ok(lines.into_iter().map(|l| l.key).collect())
}

/// A stored key as `ssh-keygen -l` prints it: `256 SHA256:... comment (ED25519)`.
fn describe_key(fingerprint: &str, line: &str) -> String {
    use russh::keys::ssh_key::public::KeyData;
    let Ok(key) = russh::keys::PublicKey::from_openssh(line) else {
        return format!("? {fingerprint} (unreadable key)");
    };
    let (bits, kind) = match key.key_data() {
        KeyData::Ed25519(_) => (256, "ED25519".to_string()),
        KeyData::Rsa(r) => (r.key_size(), "RSA".to_string()),
        KeyData::Ecdsa(e) => match e.curve() {
            russh::keys::EcdsaCurve::NistP256 => (256, "ECDSA".to_string()),
            russh::keys::EcdsaCurve::NistP384 => (384, "ECDSA".to_string()),
            russh::keys::EcdsaCurve::NistP521 => (521, "ECDSA".to_string()),
        },
        other => (0, other.algorithm().to_string().to_ascii_uppercase()),
    };
    let comment = key.comment().to_string();
    let comment = if comment.is_empty() { "no comment".to_string() } else { comment };
    format!("{bits} {fingerprint} {comment} ({kind})")
}

/// Everything about a user, for `user show` and `user list --json`.
fn user_json(store: &ferry_auth::UserStore, u: &ferry_auth::User) -> Result<serde_json::Value, CliError> {
    let keys: Vec<serde_json::Value> = store
        .keys(&u.name)?
        .iter()
        .map(|(fp, line)| serde_json::json!({ "fingerprint": fp, "description": describe_key(fp, line) }))
        .collect();
    let rules: Vec<serde_json::Value> = store
        .permissions(&u.name)?
        .into_iter()
        .map(|(p, perms)| serde_json::json!({ "path": p, "permissions": perms }))
        .collect();
    Ok(serde_json::json!({
        "name": u.name,
        "home": u.home.display().to_string(),
        "password": u.has_password,
        "keys": keys,
        "disabled": u.disabled,
        "expires": u.expires,
        "allow_from": u.allow_from,
        "protocols": u.protocols,
        "permissions": rules,
        "max_sessions": u.max_sessions,
        "upload_rate": u.upload_rate,
        "download_rate": u.download_rate,
        "quota_bytes": u.quota_bytes,
        "storage": u.storage,
        "quota_files": u.quota_files,
        // Walked only for users with a quota: `user list --json` must not walk every tree.
        "usage": (u.quota_bytes.is_some() || u.quota_files.is_some())
            .then(|| ferry_vfs::local::disk_usage(&u.home).ok())
            .flatten()
            .map(|x| serde_json::json!({ "bytes": x.bytes, "files": x.files })),
    }))
}

/// A rate as people read it: `no limit`, `1048576 bytes/s (1.0 MiB/s)`.
fn show_rate(rate: Option<u64>) -> String {
    match rate {
        None | Some(0) => "no limit".into(),
        Some(r) => format!("{r} bytes/s ({:.1} MiB/s)", r as f64 / 1_048_576.0),
    }
}

/// A preset or a comma list of permissions, checked before anything is stored.
fn parse_perms(text: &str) -> Result<PermSet, CliError> {
    PermSet::parse(text).map_err(|e| CliError::usage(e, "see `ferry user perm --help` for the presets and permissions"))
}

/// A rule's directory as stored: absolute and normalised (`in/` and `/in` are the same rule).
fn rule_path(path: &str) -> Result<String, CliError> {
    VPath::checked(&VPath::root(), path.as_bytes())
        .map(|p| p.display().to_string())
        .ok_or_else(|| CliError::usage(format!("{path:?} is not a path"), "for example /in or /out/reports"))
}

pub fn run(global: &GlobalArgs, cmd: &UserCmd) -> Result<(), CliError> {
    if let UserCmd::Sheet(args) = cmd {
        return crate::sheet::run(global, args);
    }
    let env = crate::bootstrap::load(global)?;
    let store = open_store(&env)?;
    let Env { data_dir, .. } = env;
    match cmd {
        UserCmd::Add(a) => {
            validate_username(&a.name)?;
            let keys: Vec<(String, &Path)> = a
                .public_keys
                .iter()
                .map(|p| read_key_file(p).map(|ks| ks.into_iter().map(|k| (k, p.as_path())).collect::<Vec<_>>()))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect();
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
            let perms = a.permissions.as_deref().map(parse_perms).transpose()?;
            check_home(&data_dir, &a.name, &home)?;
            create_home(&home)?;
            store.add_user(&a.name, password.as_deref(), &home)?;
            if let Some(perms) = perms {
                if let Err(e) = store.set_permission(&a.name, "/", &perms.to_string()) {
                    let _ = store.remove_user(&a.name);
                    return Err(e.into());
                }
            }
            for (key, path) in &keys {
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
        UserCmd::List { json: true } => {
            let users = store.list()?.iter().map(|u| user_json(&store, u)).collect::<Result<Vec<_>, _>>()?;
            println!("{}", serde_json::Value::Array(users));
            Ok(())
        }
        UserCmd::Show { name, json } => {
            let Some(u) = store.get(name)? else {
                return Err(ferry_auth::AuthError::NoSuchUser(name.clone()).into());
            };
            if *json {
                println!("{}", user_json(&store, &u)?);
                return Ok(());
            }
            println!("user        {}", u.name);
            println!("home        {}", u.home.display());
            println!("password    {}", if u.has_password { "set" } else { "none" });
            println!("state       {}", if u.disabled { "disabled" } else { "enabled" });
            println!("expires     {}", u.expires.as_deref().unwrap_or("never"));
            println!(
                "allow from  {}",
                if u.allow_from.is_empty() { "anywhere".into() } else { u.allow_from.join(", ") }
            );
            println!("protocols   {}", u.protocols.as_ref().map(|p| p.join(",")).unwrap_or_else(|| "any".into()));
            println!(
                "sessions    {}",
                match u.max_sessions {
                    None => "server default ([limits] max_sessions_per_user)".to_string(),
                    Some(0) => "no limit".to_string(),
                    Some(n) => format!("at most {n} at once"),
                }
            );
            if u.quota_bytes.is_some() || u.quota_files.is_some() {
                // Measured here, from the files themselves: a running server keeps its own count.
                let used = ferry_vfs::local::disk_usage(&u.home)
                    .map(|used| format!("{} bytes in {} files used", used.bytes, used.files))
                    .unwrap_or_else(|e| format!("usage unknown: {e}"));
                let bytes = u.quota_bytes.map(|b| format!("{b} bytes")).unwrap_or_else(|| "no byte limit".into());
                let files = u.quota_files.map(|f| format!("{f} files")).unwrap_or_else(|| "no file limit".into());
                println!("quota       {bytes}, {files} ({used})");
            } else {
                println!("quota       none");
            }
            println!("storage     {}", u.storage.as_deref().unwrap_or("the server's default ([storage] backend)"));
            println!("upload      {}", show_rate(u.upload_rate));
            println!("download    {}", show_rate(u.download_rate));
            let keys = store.keys(&u.name)?;
            println!("keys        {}", keys.len());
            for (fp, line) in &keys {
                println!("  {}", describe_key(fp, line));
            }
            let rules = store.permissions(&u.name)?;
            println!("permissions {}", if rules.is_empty() { "full (no rules)" } else { "" }.trim_end());
            for (path, perms) in &rules {
                println!("  {path}\t{perms}");
            }
            Ok(())
        }
        UserCmd::List { json: false } => {
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
        UserCmd::Set(a) => {
            if store.get(&a.name)?.is_none() {
                return Err(ferry_auth::AuthError::NoSuchUser(a.name.clone()).into());
            }
            // Everything is checked before anything is written.
            let perms = a.permissions.as_deref().map(parse_perms).transpose()?;
            let expires = match a.expires.as_deref() {
                None => None,
                Some("never") => Some(None),
                Some(d) => {
                    parse_date(d).map_err(|e| CliError::usage(e, "for example --expires 2027-03-31, or never"))?;
                    Some(Some(d.trim().to_string()))
                }
            };
            let allow_from = if a.allow_from.is_empty() {
                None
            } else if a.allow_from.iter().any(|c| c == "any") {
                Some(Vec::new())
            } else {
                for c in &a.allow_from {
                    Cidr::parse(c).map_err(|e| CliError::usage(e, "for example --allow-from 203.0.113.0/24"))?;
                }
                Some(a.allow_from.iter().map(|c| c.trim().to_string()).collect())
            };
            let protocols = match a.protocols.as_deref() {
                None => None,
                Some("any") => Some(None),
                Some(list) => {
                    let names: Vec<String> =
                        list.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
                    if names.is_empty() || names.iter().any(|p| !["sftp", "ftps", "ftp"].contains(&p.as_str())) {
                        return Err(CliError::usage(
                            format!("{list:?} is not a list of protocols"),
                            "a comma list of sftp, ftps, ftp, or any",
                        ));
                    }
                    Some(Some(names))
                }
            };
            let mut changed = Vec::new();
            if let Some(perms) = perms {
                store.set_permission(&a.name, "/", &perms.to_string())?;
                changed.push(format!("permissions at /: {perms}"));
            }
            if let Some(expires) = expires {
                store.set_expires(&a.name, expires.as_deref())?;
                changed.push(format!("expires: {}", expires.as_deref().unwrap_or("never")));
            }
            if let Some(cidrs) = allow_from {
                store.set_allow_from(&a.name, &cidrs)?;
                changed.push(format!(
                    "allowed from: {}",
                    if cidrs.is_empty() { "anywhere".into() } else { cidrs.join(", ") }
                ));
            }
            if let Some(protocols) = protocols {
                store.set_protocols(&a.name, protocols.as_deref())?;
                changed.push(format!("protocols: {}", protocols.map(|p| p.join(",")).unwrap_or_else(|| "any".into())));
            }
            if let Some(n) = a.max_sessions {
                store.set_max_sessions(&a.name, Some(n))?;
                changed.push(format!("max sessions: {}", if n == 0 { "no limit".into() } else { n.to_string() }));
            }
            if a.upload_rate.is_some() || a.download_rate.is_some() {
                store.set_rates(&a.name, a.upload_rate.map(Some), a.download_rate.map(Some))?;
                for (what, rate) in [("upload rate", a.upload_rate), ("download rate", a.download_rate)] {
                    if let Some(r) = rate {
                        changed.push(format!("{what}: {}", show_rate(Some(r))));
                    }
                }
            }
            if a.quota_bytes.is_some() || a.quota_files.is_some() {
                store.set_quota(&a.name, a.quota_bytes, a.quota_files)?;
                if let Some(b) = a.quota_bytes {
                    changed
                        .push(format!("quota: {}", if b == 0 { "no byte limit".into() } else { format!("{b} bytes") }));
                }
                if let Some(f) = a.quota_files {
                    changed
                        .push(format!("quota: {}", if f == 0 { "no file limit".into() } else { format!("{f} files") }));
                }
            }
            if let Some(storage) = a.storage.as_deref() {
                let chosen = match storage {
                    "default" => None,
                    "local" | "s3" => Some(storage),
                    other => {
                        return Err(CliError::usage(
                            format!("{other:?} is not a storage backend"),
                            "--storage local (the user's home directory), s3 (the bucket in [storage]) or default",
                        ))
                    }
                };
                store.set_storage(&a.name, chosen)?;
                changed.push(format!("storage: {}", chosen.unwrap_or("the server's default")));
            }
            if changed.is_empty() {
                return Err(CliError::usage(
                    format!("nothing to change for {}", a.name),
                    "for example: ferry user set NAME --permissions read-only",
                ));
            }
            println!(
                "changed {}: {} (live sessions it no longer allows end within seconds)",
                a.name,
                changed.join("; ")
            );
            Ok(())
        }
        UserCmd::Sheet(_) => Ok(()),
        UserCmd::Disable { name } => {
            store.set_disabled(name, true)?;
            println!("disabled {name}: no login, and a running server ends their sessions within seconds");
            Ok(())
        }
        UserCmd::Enable { name } => {
            store.set_disabled(name, false)?;
            println!("enabled {name}");
            Ok(())
        }
        UserCmd::Perm(PermCmd::Set { name, path, perms }) => {
            let perms = parse_perms(perms)?;
            let path = rule_path(path)?;
            store.set_permission(name, &path, &perms.to_string())?;
            println!("{name}: {path} {perms} (applies at the user's next login)");
            Ok(())
        }
        UserCmd::Perm(PermCmd::List { name }) => {
            if store.get(name)?.is_none() {
                return Err(ferry_auth::AuthError::NoSuchUser(name.clone()).into());
            }
            let rules = store.permissions(name)?;
            if rules.iter().all(|(p, _)| p != "/") {
                println!("/\tfull\t(no rule at /: everything is allowed where no other rule applies)");
            }
            for (path, perms) in rules {
                println!("{path}\t{perms}");
            }
            Ok(())
        }
        UserCmd::Perm(PermCmd::Remove { name, path }) => {
            let path = rule_path(path)?;
            if !store.remove_permission(name, &path)? {
                return Err(CliError::usage(
                    format!("{name} has no rule at {path}"),
                    format!("see them with: ferry user perm list {name}"),
                ));
            }
            println!("{name}: removed the rule at {path}");
            Ok(())
        }
        UserCmd::Key(KeyCmd::Add { name, file }) => {
            if store.get(name)?.is_none() {
                return Err(ferry_auth::AuthError::NoSuchUser(name.clone()).into());
            }
            for key in read_key_file(file)? {
                let fp = store.add_key(name, &key)?;
                println!("added key {fp} for {name}");
            }
            Ok(())
        }
        UserCmd::Key(KeyCmd::List { name }) => {
            if store.get(name)?.is_none() {
                return Err(ferry_auth::AuthError::NoSuchUser(name.clone()).into());
            }
            for (fp, line) in store.keys(name)? {
                println!("{}", describe_key(&fp, &line));
            }
            Ok(())
        }
        UserCmd::Key(KeyCmd::Remove { name, fingerprint }) => {
            if !store.remove_key(name, fingerprint.trim())? {
                return Err(CliError::usage(
                    format!("{name} has no key {fingerprint}"),
                    format!("see the fingerprints with: ferry user key list {name}"),
                ));
            }
            println!("removed key {fingerprint} from {name} (their live sessions end)");
            Ok(())
        }
    }
}
