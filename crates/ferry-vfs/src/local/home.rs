//! Opening a user's home: the one place that uses a host path, so it trusts none of its components.
//!
//! Every component is opened with `O_NOFOLLOW` from the one before, starting at `/`. A symlink anywhere
//! in the path is refused rather than followed: otherwise a user whose home contains another user's home
//! could replace that directory with a symlink and move the other user's jail anywhere on the machine.

use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path};

use cap_std::fs::Dir;
use rustix::fs::{Mode, OFlags};

/// Opens the directory `home`, which must be absolute, without following a symlink in any component;
/// with `create`, missing components are made (mode 0755 less the umask).
pub(super) fn open_home(home: &Path, create: bool) -> io::Result<Dir> {
    if !home.is_absolute() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a home directory must be an absolute path"));
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open("/", flags, Mode::empty())?;
    for comp in home.components() {
        let name: &OsStr = match comp {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => n,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "a home directory must not contain `..`"))
            }
        };
        dir = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
            Ok(d) => d,
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&dir, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                rustix::fs::openat(&dir, name, flags, Mode::empty())?
            }
            // O_NOFOLLOW on a symlink: ELOOP (or ENOTDIR with O_DIRECTORY on some systems).
            Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::NOTDIR) => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} has a symlink or a non-directory in its path ({:?}); use the real path",
                        home.display(),
                        name
                    ),
                ))
            }
            Err(e) => return Err(e.into()),
        };
    }
    Ok(Dir::from_std_file(std::fs::File::from(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_anywhere_in_the_path_are_refused() {
        let base = std::env::temp_dir().join(format!("ferry-home-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("real/alice")).expect("mkdir");
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).expect("symlink");
        assert!(open_home(&base.join("real/alice"), true).is_ok());
        assert!(open_home(&base.join("real/bob/deeper"), true).is_ok(), "missing components are created");
        let e = open_home(&base.join("link/alice"), true).expect_err("through a symlink");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        std::os::unix::fs::symlink("/etc", base.join("real/carol")).expect("symlink");
        assert!(open_home(&base.join("real/carol"), true).is_err(), "the last component too");
        assert!(open_home(Path::new("relative/home"), true).is_err());
        assert!(open_home(&base.join("real/nobody"), false).is_err(), "not created when asked not to");
        std::fs::write(base.join("real/file"), b"not a directory").expect("file");
        let e = open_home(&base.join("real/file"), true).expect_err("a file is no home");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(open_home(&base.join("real/file/below"), true).is_err(), "nor a path through a file");
        let _ = std::fs::remove_dir_all(&base);
    }
}
