//! Ferry's users: who may log in, with which password or SSH keys, and where their files live.
//!
//! One [`UserStore`] serves every protocol. It is read on every login, so a user added, changed or removed
//! with `ferry user ...` while the server runs takes effect at the next login, without a restart.
#![forbid(unsafe_code)]

mod admission;
mod bans;
mod db;
mod error;
mod password;
mod pg;
mod store;
#[cfg(test)]
mod testdb;

pub use admission::{Admission, LoginWatch};
pub use bans::{now_unix, Ban, FOREVER};
pub use db::is_postgres_url;
pub use error::AuthError;
pub use password::{generate_password, hash_password, verify_password, Busy, VERIFY_QUEUE};
pub use store::{check_password, PasswordCheck, User, UserStore};

/// Longest user name accepted (vsftpd's limit).
pub const MAX_USERNAME_LEN: usize = 128;
/// Longest password accepted: argon2 does not need more, and a bound keeps hashing cost bounded.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// User names are ASCII letters, digits, `.`, `_`, `-` and `@`, starting with a letter, digit or `_`: safe
/// in paths, logs and every protocol's command syntax.
pub fn validate_username(name: &str) -> Result<(), AuthError> {
    let ok_first = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let ok_rest = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if name.is_empty() || name.len() > MAX_USERNAME_LEN || !ok_first || !ok_rest {
        return Err(AuthError::InvalidName(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["alice", "a.b-c_d", "_svc", "user@example.com", "0day"] {
            assert!(validate_username(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", ".hidden", "a/b", "a b", "ü", &"x".repeat(129)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
        assert!(validate_username(&"x".repeat(MAX_USERNAME_LEN)).is_ok(), "vsftpd's 128 is allowed");
        let e = validate_username("a b").expect_err("space").to_string();
        assert!(e.starts_with("invalid user name \"a b\": use 1 to 128 ASCII letters"), "{e}");
    }
}
