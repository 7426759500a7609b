//! Virtual paths to object keys: pure functions, no I/O.
//!
//! Each user's files live under `PREFIX` + `NAME` + `/` (the user's root). A file `/a/b.txt` is the object
//! `PREFIX NAME/a/b.txt`; a directory `/a` is the prefix `PREFIX NAME/a/`, with an empty marker object of
//! that name when it has nothing else in it (the convention of the S3 console, rclone and s3fs).

use ferry_vfs::{FsError, FsResult, VPath};

/// A user's root in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(String);

impl Root {
    /// `prefix` as configured (`users/` by default; a missing trailing `/` is added, an empty one means the
    /// bucket's top) and the user's name, which Ferry has checked ([A-Za-z0-9._@-]).
    pub fn new(prefix: &str, user: &str) -> Root {
        let prefix = prefix.trim_start_matches('/');
        let mut key = String::with_capacity(prefix.len() + user.len() + 2);
        key.push_str(prefix);
        if !key.is_empty() && !key.ends_with('/') {
            key.push('/');
        }
        key.push_str(user);
        key.push('/');
        Root(key)
    }

    /// The prefix everything of this user is under (ends with `/`).
    pub fn prefix(&self) -> &str {
        &self.0
    }

    /// The key of a file. Names must be UTF-8 (S3 keys are); the root is not a file.
    pub fn file(&self, path: &VPath) -> FsResult<String> {
        if path.is_root() {
            return Err(FsError::IsADirectory);
        }
        let mut key = self.0.clone();
        for (i, c) in path.components().enumerate() {
            if i > 0 {
                key.push('/');
            }
            key.push_str(std::str::from_utf8(c).map_err(|_| FsError::InvalidPath)?);
        }
        Ok(key)
    }

    /// The prefix of a directory (ends with `/`); the root's is the user's prefix.
    pub fn dir(&self, path: &VPath) -> FsResult<String> {
        if path.is_root() {
            return Ok(self.0.clone());
        }
        let mut key = self.file(path)?;
        key.push('/');
        Ok(key)
    }
}

/// The name of a listed entry under `dir` (its last component, without a directory's trailing `/`), or
/// `None` for the directory's own marker.
pub fn entry_name<'a>(dir: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(dir)?.trim_end_matches('/');
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(s: &str) -> VPath {
        VPath::resolve(&VPath::root(), s.as_bytes())
    }

    #[test]
    fn keys_of_files_and_directories() {
        let r = Root::new("users/", "alice");
        assert_eq!(r.prefix(), "users/alice/");
        assert_eq!(r.file(&vp("/a/b.txt")).expect("file"), "users/alice/a/b.txt");
        assert_eq!(r.dir(&vp("/a")).expect("dir"), "users/alice/a/");
        assert_eq!(r.dir(&VPath::root()).expect("root"), "users/alice/");
        assert!(matches!(r.file(&VPath::root()), Err(FsError::IsADirectory)));
        // `..` never reaches a key: VPath resolved it inside the root already.
        assert_eq!(r.file(&vp("/../../bob/x")).expect("file"), "users/alice/bob/x");
        assert_eq!(Root::new("tenants", "bob").prefix(), "tenants/bob/", "the slash is added");
        assert_eq!(Root::new("", "bob").prefix(), "bob/", "an empty prefix: the bucket's top");
        assert_eq!(Root::new("/x/", "bob").prefix(), "x/bob/");
        let bad = VPath::resolve(&VPath::root(), b"/caf\xe9");
        assert!(matches!(r.file(&bad), Err(FsError::InvalidPath)), "S3 keys are UTF-8");
    }

    #[test]
    fn listed_names() {
        assert_eq!(entry_name("u/a/", "u/a/x.txt"), Some("x.txt"));
        assert_eq!(entry_name("u/a/", "u/a/sub/"), Some("sub"));
        assert_eq!(entry_name("u/a/", "u/a/"), None, "the directory's own marker");
        assert_eq!(entry_name("u/a/", "u/b/x"), None);
        assert_eq!(entry_name("u/a/", "u/a/sub/deeper"), None);
    }
}
