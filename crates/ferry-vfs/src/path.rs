use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A normalised absolute path inside a user's virtual root.
///
/// Always starts with `/`, never contains empty, `.` or `..` components and never ends with `/` (except the
/// root itself). Stored as bytes so that file names that are not UTF-8 travel through intact.
///
/// `..` is resolved lexically and stops at the root, as it does inside a chroot: `/../../etc` is `/etc`
/// *inside the root*. Symlinks are resolved by the backend, under its root handle.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VPath(Vec<u8>);

impl VPath {
    pub fn root() -> Self {
        VPath(b"/".to_vec())
    }

    /// Resolves `input` (absolute, or relative to `cwd`) into a normalised path. Never fails: whatever the
    /// input, the result lies inside the root. A NUL byte is the one thing no filesystem accepts, so a path
    /// containing one is refused by [`VPath::checked`] instead.
    pub fn resolve(cwd: &VPath, input: &[u8]) -> VPath {
        let mut parts: Vec<&[u8]> = Vec::new();
        if !input.starts_with(b"/") {
            parts.extend(cwd.components());
        }
        for comp in input.split(|b| *b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        let mut out = Vec::with_capacity(input.len() + cwd.0.len() + 1);
        for p in &parts {
            out.push(b'/');
            out.extend_from_slice(p);
        }
        if out.is_empty() {
            out.push(b'/');
        }
        VPath(out)
    }

    /// Like [`VPath::resolve`], but refuses input containing a NUL byte.
    pub fn checked(cwd: &VPath, input: &[u8]) -> Option<VPath> {
        if input.contains(&0) {
            None
        } else {
            Some(Self::resolve(cwd, input))
        }
    }

    pub fn is_root(&self) -> bool {
        self.0 == b"/"
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The components, without the leading slash.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|b| *b == b'/').filter(|c| !c.is_empty())
    }

    /// The path relative to the root (`.` for the root itself), ready for a backend to resolve under its
    /// root directory handle.
    pub fn to_relative(&self) -> PathBuf {
        if self.is_root() {
            PathBuf::from(".")
        } else {
            PathBuf::from(OsStr::from_bytes(&self.0[1..]))
        }
    }

    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&[u8]> {
        if self.is_root() {
            None
        } else {
            self.0.rsplit(|b| *b == b'/').next()
        }
    }

    /// The parent directory (the root is its own parent).
    pub fn parent(&self) -> VPath {
        match self.0.iter().rposition(|b| *b == b'/') {
            Some(0) | None => VPath::root(),
            Some(i) => VPath(self.0[..i].to_vec()),
        }
    }

    pub fn join(&self, name: &[u8]) -> VPath {
        VPath::resolve(self, name)
    }

    /// Lossy text for logs and messages.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Debug for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VPath({:?})", self.display())
    }
}

impl fmt::Display for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cwd: &str, p: &str) -> String {
        VPath::resolve(&VPath::resolve(&VPath::root(), cwd.as_bytes()), p.as_bytes()).display()
    }

    #[test]
    fn dotdot_stops_at_root() {
        assert_eq!(r("/", "../../etc/passwd"), "/etc/passwd");
        assert_eq!(r("/a/b", "../../../.."), "/");
        assert_eq!(r("/a", "/.."), "/");
    }

    #[test]
    fn relative_and_absolute() {
        assert_eq!(r("/a/b", "c/./d//e/"), "/a/b/c/d/e");
        assert_eq!(r("/a/b", "/x"), "/x");
        assert_eq!(r("/a/b", ""), "/a/b");
        assert_eq!(r("/", "."), "/");
    }

    #[test]
    fn parent_and_name() {
        let p = VPath::resolve(&VPath::root(), b"/a/b/c");
        assert_eq!(p.file_name(), Some(&b"c"[..]));
        assert_eq!(p.parent().display(), "/a/b");
        assert_eq!(VPath::resolve(&VPath::root(), b"/a").parent(), VPath::root());
        assert_eq!(VPath::root().file_name(), None);
        assert_eq!(p.to_relative(), PathBuf::from("a/b/c"));
        assert_eq!(VPath::root().to_relative(), PathBuf::from("."));
    }

    #[test]
    fn non_utf8_kept() {
        let p = VPath::resolve(&VPath::root(), b"/caf\xe9");
        assert_eq!(p.as_bytes(), b"/caf\xe9");
    }

    #[test]
    fn nul_refused() {
        assert!(VPath::checked(&VPath::root(), b"a\0b").is_none());
    }
}
