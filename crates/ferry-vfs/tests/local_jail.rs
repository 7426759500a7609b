//! The local backend never lets a path leave the user's root.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use ferry_vfs::{FileKind, FsError, OpenOptions, SetAttrs, Vfs};
use std::os::unix::fs::symlink;

/// Every way out of the root must be refused, never reach outside and never end as a generic I/O error.
/// Links are followed in chroot terms (an absolute target or a `..` above the root stays inside the root,
/// as with OpenSSH's ChrootDirectory), so an escape ends as "not found" inside the root, a loop, or
/// cap-std's "a path led outside of the filesystem" (PermissionDenied).
fn is_denied(r: &Result<impl std::fmt::Debug, FsError>) -> bool {
    matches!(r, Err(FsError::PermissionDenied | FsError::NotFound | FsError::InvalidPath))
}

#[tokio::test]
async fn absolute_symlink_to_etc_cannot_be_followed() {
    let s = scratch();
    symlink("/etc", s.root.join("etc")).unwrap();
    symlink("/etc/passwd", s.root.join("passwd")).unwrap();

    // Followed inside the root, /etc names the link itself again (a loop) and /etc/passwd nothing.
    assert!(is_denied(&s.fs.metadata(&vp("/etc")).await));
    assert!(is_denied(&s.fs.metadata(&vp("/passwd")).await));
    assert!(is_denied(&s.fs.read_dir(&vp("/etc")).await));
    assert!(is_denied(&s.fs.open(&vp("/etc/passwd"), read_opts()).await.map(|_| ())));
    assert!(is_denied(&s.fs.open(&vp("/passwd"), read_opts()).await.map(|_| ())));
    assert!(is_denied(&s.fs.metadata(&vp("/etc/passwd")).await));
    assert!(is_denied(&s.fs.stats(&vp("/etc/passwd")).await));

    // The link itself is visible.
    let m = s.fs.symlink_metadata(&vp("/etc")).await.unwrap();
    assert_eq!(m.kind, FileKind::Symlink);
    assert_eq!(s.fs.read_link(&vp("/etc")).await.unwrap(), b"/etc");
    let names: Vec<_> = s.fs.read_dir(&vp("/")).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![b"etc".to_vec(), b"passwd".to_vec()]);
}

#[tokio::test]
async fn relative_symlink_outside_cannot_be_used() {
    let s = scratch();
    symlink("../outside", s.root.join("out")).unwrap();
    symlink("../../outside/secret.txt", s.root.join("sub-secret")).unwrap();
    std::fs::create_dir(s.root.join("sub")).unwrap();
    symlink("../../outside/secret.txt", s.root.join("sub/secret")).unwrap();
    let secret = s.outside.join("secret.txt");
    let secret_mode = mode_of(&secret);

    // Read, list, stat.
    assert!(is_denied(&read_all(&s.fs, &vp("/out/secret.txt")).await));
    assert!(is_denied(&read_all(&s.fs, &vp("/sub/secret")).await));
    assert!(is_denied(&s.fs.read_dir(&vp("/out")).await));
    assert!(is_denied(&s.fs.metadata(&vp("/out")).await));
    assert!(is_denied(&s.fs.metadata(&vp("/sub/secret")).await));

    // Write through: in place, atomic replace, create inside, and every other mutation.
    let w = OpenOptions { write: true, ..Default::default() };
    assert!(is_denied(&s.fs.open(&vp("/sub/secret"), w).await.map(|_| ())));
    assert!(is_denied(&s.fs.open(&vp("/out/secret.txt"), put_opts()).await.map(|_| ())));
    assert!(is_denied(&s.fs.open(&vp("/out/new.txt"), put_opts()).await.map(|_| ())));
    assert!(is_denied(&s.fs.create_dir(&vp("/out/newdir"), None).await));
    assert!(is_denied(&s.fs.remove_file(&vp("/out/secret.txt")).await));
    assert!(is_denied(&s.fs.rename(&vp("/out/secret.txt"), &vp("/stolen"), true).await));
    assert!(is_denied(&s.fs.rename(&vp("/sub"), &vp("/out/sub"), false).await));
    assert!(is_denied(&s.fs.symlink(b"x", &vp("/out/link")).await));
    let chmod = SetAttrs { permissions: Some(0o777), ..Default::default() };
    assert!(is_denied(&s.fs.set_metadata(&vp("/sub/secret"), &chmod).await));
    let trunc = SetAttrs { size: Some(0), ..Default::default() };
    assert!(is_denied(&s.fs.set_metadata(&vp("/out/secret.txt"), &trunc).await));

    // A hard link cannot bring an outside file in: both names resolve under the root.
    assert!(is_denied(&s.fs.hard_link(&vp("/out/secret.txt"), &vp("/grabbed")).await));
    assert!(!s.root.join("grabbed").exists());
    // Nor push an inside file out.
    std::fs::write(s.root.join("mine"), b"mine").unwrap();
    assert!(is_denied(&s.fs.hard_link(&vp("/mine"), &vp("/out/mine")).await));
    let touch = SetAttrs { times: Some((0, 0)), ..Default::default() };
    assert!(is_denied(&s.fs.set_metadata(&vp("/out/secret.txt"), &touch).await));
    // Without following (lsetstat): a directory link on the way is still not a way out, and a link at
    // the end is changed itself, inside the root.
    assert!(is_denied(&s.fs.set_link_metadata(&vp("/out/secret.txt"), &touch).await));
    assert!(is_denied(&s.fs.set_link_metadata(&vp("/out/secret.txt"), &chmod).await));
    s.fs.set_link_metadata(&vp("/sub/secret"), &touch).await.unwrap();
    assert_eq!(
        std::fs::symlink_metadata(s.root.join("sub/secret")).unwrap().modified().unwrap(),
        std::time::UNIX_EPOCH
    );

    // Nothing outside changed.
    assert_eq!(std::fs::read(&secret).unwrap(), b"top secret");
    assert_eq!(mode_of(&secret), secret_mode);
    assert!(!s.outside.join("new.txt").exists());
    assert!(!s.outside.join("newdir").exists());
    assert!(!s.outside.join("sub").exists());
    assert!(!s.outside.join("mine").exists());
    assert_ne!(std::fs::metadata(&secret).unwrap().modified().unwrap(), std::time::UNIX_EPOCH);
    assert!(temp_files(&s.outside).is_empty());

    // Removing the link removes only the link.
    s.fs.remove_file(&vp("/sub/secret")).await.unwrap();
    assert!(secret.exists());
}

#[tokio::test]
async fn dotdot_never_leaves_the_root() {
    let s = scratch();
    // VPath clamps `..` at the root, so this names <root>/outside/secret.txt, which does not exist.
    let p = vp("/../outside/secret.txt");
    assert_eq!(p.as_bytes(), b"/outside/secret.txt");
    assert!(matches!(s.fs.metadata(&p).await, Err(FsError::NotFound)));
    assert!(matches!(read_all(&s.fs, &p).await, Err(FsError::NotFound)));
}

#[tokio::test]
async fn creating_an_escaping_symlink_is_allowed_but_following_it_fails() {
    let s = scratch();
    s.fs.symlink(b"/etc/passwd", &vp("/p")).await.unwrap();
    s.fs.symlink(b"../../outside/secret.txt", &vp("/q")).await.unwrap();
    assert_eq!(s.fs.read_link(&vp("/p")).await.unwrap(), b"/etc/passwd");
    assert_eq!(s.fs.read_link(&vp("/q")).await.unwrap(), b"../../outside/secret.txt");
    assert_eq!(s.fs.symlink_metadata(&vp("/q")).await.unwrap().kind, FileKind::Symlink);
    assert!(is_denied(&read_all(&s.fs, &vp("/p")).await));
    assert!(is_denied(&read_all(&s.fs, &vp("/q")).await));
    assert!(is_denied(&s.fs.open(&vp("/q"), put_opts()).await.map(|_| ())));
    assert_eq!(std::fs::read(s.outside.join("secret.txt")).unwrap(), b"top secret");
    // canonicalize is virtual: an absolute target is read relative to the user's root and `..` clamps
    // there. Only a missing last component is allowed, so /p (whose /etc does not exist in the root) is
    // NotFound.
    assert!(matches!(s.fs.canonicalize(&vp("/p")).await, Err(FsError::NotFound)));
    s.fs.symlink(b"/etc", &vp("/e")).await.unwrap();
    s.fs.symlink(b"../../outside", &vp("/o")).await.unwrap();
    assert_eq!(s.fs.canonicalize(&vp("/e")).await.unwrap(), vp("/etc"));
    assert_eq!(s.fs.canonicalize(&vp("/o")).await.unwrap(), vp("/outside"));
}

#[tokio::test]
async fn symlinks_inside_the_root_work() {
    let s = scratch();
    std::fs::create_dir(s.root.join("d")).unwrap();
    std::fs::write(s.root.join("d/f.txt"), b"inside").unwrap();
    s.fs.symlink(b"d", &vp("/dl")).await.unwrap();
    s.fs.symlink(b"../d/f.txt", &vp("/d/up")).await.unwrap();
    assert_eq!(read_all(&s.fs, &vp("/dl/f.txt")).await.unwrap(), b"inside");
    assert_eq!(read_all(&s.fs, &vp("/d/up")).await.unwrap(), b"inside");
    assert_eq!(s.fs.metadata(&vp("/dl")).await.unwrap().kind, FileKind::Dir);
    assert_eq!(s.fs.read_dir(&vp("/dl")).await.unwrap().len(), 2);
}

#[tokio::test]
async fn temporary_upload_names_are_refused_everywhere() {
    let s = scratch();
    let name = ".ferry-upload.0123456789abcdef.f.txt";
    std::fs::write(s.root.join(name), b"partial").unwrap();
    std::fs::create_dir(s.root.join("d")).unwrap();
    let p = vp(&format!("/{name}"));
    let inner = vp(&format!("/d/{name}"));
    assert!(matches!(s.fs.metadata(&p).await, Err(FsError::InvalidPath)));
    assert!(matches!(s.fs.symlink_metadata(&p).await, Err(FsError::InvalidPath)));
    assert!(matches!(s.fs.open(&p, read_opts()).await.map(|_| ()), Err(FsError::InvalidPath)));
    assert!(matches!(s.fs.open(&inner, put_opts()).await.map(|_| ()), Err(FsError::InvalidPath)));
    assert!(matches!(s.fs.remove_file(&p).await, Err(FsError::InvalidPath)));
    assert!(matches!(s.fs.rename(&p, &vp("/x"), true).await, Err(FsError::InvalidPath)));
    assert!(matches!(s.fs.rename(&vp("/d"), &inner, true).await, Err(FsError::InvalidPath)));
    assert!(matches!(s.fs.hard_link(&p, &vp("/x")).await, Err(FsError::InvalidPath)));
    assert!(matches!(s.fs.create_dir(&inner, None).await, Err(FsError::InvalidPath)));
    assert!(matches!(s.fs.canonicalize(&p).await, Err(FsError::InvalidPath)));
    // A link whose target names one would read it indirectly.
    assert!(matches!(s.fs.symlink(name.as_bytes(), &vp("/peek")).await, Err(FsError::InvalidPath)));
    // Listings hide it.
    let names: Vec<_> = s.fs.read_dir(&vp("/")).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![b"d".to_vec()]);
    assert_eq!(std::fs::read(s.root.join(name)).unwrap(), b"partial");
}

#[tokio::test]
async fn the_root_itself_is_protected() {
    let s = scratch();
    let root = vp("/");
    assert!(matches!(s.fs.remove_dir(&root).await, Err(FsError::PermissionDenied)));
    assert!(matches!(s.fs.rename(&root, &vp("/x"), true).await, Err(FsError::PermissionDenied)));
    assert!(matches!(s.fs.create_dir(&root, None).await, Err(FsError::AlreadyExists)));
    assert!(matches!(s.fs.open(&root, read_opts()).await.map(|_| ()), Err(FsError::IsADirectory)));
    assert!(matches!(s.fs.open(&root, put_opts()).await.map(|_| ()), Err(FsError::IsADirectory)));
    assert_eq!(s.fs.metadata(&root).await.unwrap().kind, FileKind::Dir);
    assert!(s.root.is_dir());
}

#[tokio::test]
async fn absolute_targets_are_kept_as_given_and_followed_inside_the_root() {
    let s = scratch();
    std::fs::create_dir_all(s.root.join("abs/dir")).unwrap();
    std::fs::write(s.root.join("abs/dir/original.txt"), b"inside").unwrap();
    s.fs.symlink(b"/abs/dir/original.txt", &vp("/link")).await.unwrap();
    s.fs.symlink(b"/abs/dir", &vp("/dlink")).await.unwrap();
    // READLINK gives back exactly what SYMLINK was given (paramiko's round trip).
    assert_eq!(s.fs.read_link(&vp("/link")).await.unwrap(), b"/abs/dir/original.txt");
    // Following treats `/` as the user's root, like a chroot.
    assert_eq!(read_all(&s.fs, &vp("/link")).await.unwrap(), b"inside");
    assert_eq!(s.fs.metadata(&vp("/link")).await.unwrap().size, 6);
    assert_eq!(read_all(&s.fs, &vp("/dlink/original.txt")).await.unwrap(), b"inside");
    assert_eq!(s.fs.read_dir(&vp("/dlink")).await.unwrap().len(), 1);
    // Writes through the link land inside the root too, and never follow it out.
    put(&s.fs, &vp("/dlink/new.txt"), b"via link").await.unwrap();
    assert_eq!(std::fs::read(s.root.join("abs/dir/new.txt")).unwrap(), b"via link");
    put(&s.fs, &vp("/link"), b"replaced").await.unwrap();
    assert_eq!(std::fs::read(s.root.join("abs/dir/original.txt")).unwrap(), b"replaced");
    assert_eq!(s.fs.symlink_metadata(&vp("/link")).await.unwrap().kind, FileKind::Symlink);
    s.fs.rename(&vp("/dlink/new.txt"), &vp("/dlink/renamed.txt"), false).await.unwrap();
    s.fs.remove_file(&vp("/dlink/renamed.txt")).await.unwrap();
    assert_eq!(all_names(&s.root.join("abs/dir")), vec!["original.txt"]);
}
