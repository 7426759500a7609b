use std::fmt;

/// What went wrong in the user store, with enough context for the admin to act on it.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthError {
    InvalidName(String),
    NoSuchUser(String),
    UserExists(String),
    InvalidKey {
        reason: String,
    },
    PasswordTooLong,
    Database {
        context: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    Hash(String),
    /// A background task of the store failed (a panic, or the runtime shutting down).
    Task(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::InvalidName(n) => write!(
                f,
                "invalid user name {n:?}: use 1 to {} ASCII letters, digits, '.', '_', '-' or '@', starting with a letter, digit or '_'",
                crate::MAX_USERNAME_LEN
            ),
            AuthError::NoSuchUser(n) => write!(f, "no user named {n:?}"),
            AuthError::Task(e) => write!(f, "user store task failed: {e}"),
            AuthError::UserExists(n) => write!(f, "a user named {n:?} already exists"),
            AuthError::InvalidKey { reason } => write!(f, "not a usable OpenSSH public key: {reason}"),
            AuthError::PasswordTooLong => write!(f, "password longer than {} bytes", crate::MAX_PASSWORD_LEN),
            AuthError::Database { context, source } => write!(f, "user store: {context}: {source}"),
            AuthError::Hash(e) => write!(f, "password hashing failed: {e}"),
        }
    }
}

impl std::error::Error for AuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuthError::Database { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl AuthError {
    /// A database error that is a message (PostgreSQL's, or the store's own check).
    pub(crate) fn db(context: &str, message: impl Into<String>) -> AuthError {
        AuthError::Database { context: context.to_string(), source: message.into().into() }
    }
}

pub(crate) trait DbContext<T> {
    fn ctx(self, context: &str) -> Result<T, AuthError>;
}

impl<T> DbContext<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &str) -> Result<T, AuthError> {
        self.map_err(|source| AuthError::Database { context: context.to_string(), source: Box::new(source) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_say_what_was_being_done_and_keep_the_cause() {
        let e = AuthError::db("adding user", "connection refused");
        assert_eq!(e.to_string(), "user store: adding user: connection refused");
        let cause = std::error::Error::source(&e).expect("the cause is kept for error chains");
        assert_eq!(cause.to_string(), "connection refused");
        assert!(std::error::Error::source(&AuthError::NoSuchUser("x".into())).is_none());
    }
}
