//! Path operations of the local backend: listing, rename, links, attributes, canonicalize, stats, and the
//! FsError each failure maps to.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use ferry_vfs::{FileKind, FsError, SetAttrs, Vfs};
use std::os::unix::fs::MetadataExt;

#[tokio::test]
async fn metadata_and_listing() {
    let s = scratch();
    std::fs::create_dir(s.root.join("d")).unwrap();
    std::fs::write(s.root.join("b.txt"), b"12345").unwrap();
    std::fs::write(s.root.join("a.txt"), b"").unwrap();
    set_mode(&s.root.join("b.txt"), 0o640);
    s.fs.symlink(b"b.txt", &vp("/c-link")).await.unwrap();

    let m = s.fs.metadata(&vp("/b.txt")).await.unwrap();
    let real = std::fs::metadata(s.root.join("b.txt")).unwrap();
    assert_eq!(m.kind, FileKind::File);
    assert_eq!(m.size, 5);
    assert_eq!(m.permissions, Some(0o640));
    assert_eq!((m.uid, m.gid, m.nlink), (Some(real.uid()), Some(real.gid()), Some(1)));
    assert_eq!((m.mtime, m.atime), (Some(real.mtime()), Some(real.atime())));
    // metadata follows the link, symlink_metadata does not.
    assert_eq!(s.fs.metadata(&vp("/c-link")).await.unwrap().size, 5);
    assert_eq!(s.fs.symlink_metadata(&vp("/c-link")).await.unwrap().kind, FileKind::Symlink);

    let entries = s.fs.read_dir(&vp("/")).await.unwrap();
    let names: Vec<_> = entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, [&b"a.txt"[..], b"b.txt", b"c-link", b"d"]);
    assert_eq!(entries[2].metadata.kind, FileKind::Symlink);
    assert_eq!(entries[3].metadata.kind, FileKind::Dir);
    assert!(s.fs.read_dir(&vp("/d")).await.unwrap().is_empty());
}

#[tokio::test]
async fn read_dir_hides_uploads_in_progress() {
    let s = scratch_with(atomic());
    put(&s.fs, &vp("/f"), b"x").await.unwrap();
    let h = s.fs.open(&vp("/f"), put_opts()).await.unwrap();
    let h2 = s.fs.open(&vp("/g"), put_opts()).await.unwrap();
    assert_eq!(temp_files(&s.root).len(), 2);
    let names: Vec<_> = s.fs.read_dir(&vp("/")).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![b"f".to_vec()]);
    h.close().await.unwrap();
    h2.close().await.unwrap();
    let names: Vec<_> = s.fs.read_dir(&vp("/")).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![b"f".to_vec(), b"g".to_vec()]);
}

#[tokio::test]
async fn rename_with_and_without_overwrite() {
    let s = scratch();
    put(&s.fs, &vp("/a"), b"A").await.unwrap();
    put(&s.fs, &vp("/b"), b"B").await.unwrap();
    assert!(matches!(s.fs.rename(&vp("/a"), &vp("/b"), false).await, Err(FsError::AlreadyExists)));
    assert_eq!(read_all(&s.fs, &vp("/a")).await.unwrap(), b"A");
    assert_eq!(read_all(&s.fs, &vp("/b")).await.unwrap(), b"B");

    s.fs.rename(&vp("/a"), &vp("/c"), false).await.unwrap();
    assert!(matches!(s.fs.metadata(&vp("/a")).await, Err(FsError::NotFound)));
    assert_eq!(read_all(&s.fs, &vp("/c")).await.unwrap(), b"A");
    assert_eq!(std::fs::metadata(s.root.join("c")).unwrap().nlink(), 1);

    s.fs.rename(&vp("/c"), &vp("/b"), true).await.unwrap();
    assert_eq!(read_all(&s.fs, &vp("/b")).await.unwrap(), b"A");
    assert!(matches!(s.fs.metadata(&vp("/c")).await, Err(FsError::NotFound)));

    // Directories and symlinks take the check-then-rename path.
    s.fs.create_dir(&vp("/d1"), None).await.unwrap();
    s.fs.create_dir(&vp("/d2"), None).await.unwrap();
    assert!(matches!(s.fs.rename(&vp("/d1"), &vp("/d2"), false).await, Err(FsError::AlreadyExists)));
    assert!(matches!(s.fs.rename(&vp("/d1"), &vp("/b"), false).await, Err(FsError::AlreadyExists)));
    s.fs.rename(&vp("/d1"), &vp("/d2/inner"), false).await.unwrap();
    assert_eq!(s.fs.metadata(&vp("/d2/inner")).await.unwrap().kind, FileKind::Dir);
    s.fs.symlink(b"b", &vp("/l")).await.unwrap();
    s.fs.rename(&vp("/l"), &vp("/d2/l"), false).await.unwrap();
    assert_eq!(s.fs.read_link(&vp("/d2/l")).await.unwrap(), b"b");

    // Overwriting a non-empty directory, or a directory with a file.
    s.fs.create_dir(&vp("/d3"), None).await.unwrap();
    assert!(matches!(s.fs.rename(&vp("/d3"), &vp("/d2"), true).await, Err(FsError::DirectoryNotEmpty)));
    assert!(matches!(s.fs.rename(&vp("/b"), &vp("/d3"), true).await, Err(FsError::IsADirectory)));

    assert!(matches!(s.fs.rename(&vp("/missing"), &vp("/x"), false).await, Err(FsError::NotFound)));
    assert!(matches!(s.fs.rename(&vp("/missing"), &vp("/x"), true).await, Err(FsError::NotFound)));
    assert!(matches!(s.fs.rename(&vp("/b"), &vp("/nodir/x"), false).await, Err(FsError::NotFound)));
    assert!(matches!(s.fs.rename(&vp("/b"), &vp("/"), true).await, Err(FsError::PermissionDenied)));
    assert!(matches!(s.fs.rename(&vp("/b"), &vp("/.ferry-upload.1.b"), true).await, Err(FsError::InvalidPath)));
}

#[tokio::test]
async fn error_variants() {
    let s = scratch();
    put(&s.fs, &vp("/file"), b"x").await.unwrap();
    s.fs.create_dir(&vp("/full"), None).await.unwrap();
    put(&s.fs, &vp("/full/inside"), b"x").await.unwrap();

    assert!(matches!(s.fs.metadata(&vp("/nope")).await, Err(FsError::NotFound)));
    assert!(matches!(s.fs.metadata(&vp("/file/x")).await, Err(FsError::NotADirectory)));
    assert!(matches!(s.fs.read_dir(&vp("/file")).await, Err(FsError::NotADirectory)));
    assert!(matches!(s.fs.read_dir(&vp("/nope")).await, Err(FsError::NotFound)));
    assert!(matches!(s.fs.remove_dir(&vp("/full")).await, Err(FsError::DirectoryNotEmpty)));
    assert!(matches!(s.fs.remove_dir(&vp("/file")).await, Err(FsError::NotADirectory)));
    assert!(matches!(s.fs.remove_dir(&vp("/nope")).await, Err(FsError::NotFound)));
    assert!(matches!(s.fs.remove_file(&vp("/full")).await, Err(FsError::IsADirectory)));
    assert!(matches!(s.fs.remove_file(&vp("/nope")).await, Err(FsError::NotFound)));
    assert!(matches!(s.fs.create_dir(&vp("/full"), None).await, Err(FsError::AlreadyExists)));
    assert!(matches!(s.fs.create_dir(&vp("/file"), None).await, Err(FsError::AlreadyExists)));
    assert!(matches!(s.fs.create_dir(&vp("/nope/x"), None).await, Err(FsError::NotFound)));
    assert!(matches!(s.fs.symlink(b"x", &vp("/file")).await, Err(FsError::AlreadyExists)));
    assert!(matches!(s.fs.hard_link(&vp("/file"), &vp("/full/inside")).await, Err(FsError::AlreadyExists)));
    assert!(matches!(s.fs.read_link(&vp("/file")).await, Err(FsError::InvalidPath)));
    assert!(matches!(s.fs.read_link(&vp("/nope")).await, Err(FsError::NotFound)));
    // Link targets that are refused before the filesystem sees them: empty, a NUL, or a name of an upload
    // in progress (a link to one would let a client read another's unfinished upload).
    for target in [&b""[..], b"a\0b", b".ferry-upload.1234", b"dir/.ferry-upload.x/y"] {
        let r = s.fs.symlink(target, &vp("/link")).await;
        assert!(matches!(r, Err(FsError::InvalidPath)), "{:?}: {r:?}", String::from_utf8_lossy(target));
    }

    s.fs.remove_file(&vp("/full/inside")).await.unwrap();
    s.fs.remove_dir(&vp("/full")).await.unwrap();
    assert!(!s.root.join("full").exists());
}

#[tokio::test]
async fn create_dir_mode_and_links() {
    let s = scratch();
    s.fs.create_dir(&vp("/d"), Some(0o700)).await.unwrap();
    assert_eq!(mode_of(&s.root.join("d")), 0o700);
    s.fs.create_dir(&vp("/e"), None).await.unwrap();
    assert_eq!(mode_of(&s.root.join("e")) & 0o700, 0o700);

    put(&s.fs, &vp("/d/f"), b"data").await.unwrap();
    s.fs.hard_link(&vp("/d/f"), &vp("/e/g")).await.unwrap();
    assert_eq!(s.fs.metadata(&vp("/e/g")).await.unwrap().nlink, Some(2));
    assert_eq!(read_all(&s.fs, &vp("/e/g")).await.unwrap(), b"data");

    // Removing a symlink removes the link, not its target.
    s.fs.symlink(b"../d/f", &vp("/e/l")).await.unwrap();
    s.fs.remove_file(&vp("/e/l")).await.unwrap();
    assert_eq!(read_all(&s.fs, &vp("/d/f")).await.unwrap(), b"data");
}

#[tokio::test]
async fn set_metadata_by_path() {
    let s = scratch();
    put(&s.fs, &vp("/f"), b"0123456789").await.unwrap();
    s.fs.create_dir(&vp("/d"), None).await.unwrap();

    s.fs.set_metadata(&vp("/f"), &SetAttrs { size: Some(4), ..Default::default() }).await.unwrap();
    assert_eq!(std::fs::read(s.root.join("f")).unwrap(), b"0123");
    s.fs.set_metadata(&vp("/f"), &SetAttrs { permissions: Some(0o604), ..Default::default() }).await.unwrap();
    assert_eq!(mode_of(&s.root.join("f")), 0o604);
    let times = SetAttrs { times: Some((1_500_000_000, 1_600_000_000)), ..Default::default() };
    s.fs.set_metadata(&vp("/f"), &times).await.unwrap();
    s.fs.set_metadata(&vp("/d"), &times).await.unwrap();
    for p in ["/f", "/d"] {
        let m = s.fs.metadata(&vp(p)).await.unwrap();
        assert_eq!((m.atime, m.mtime), (Some(1_500_000_000), Some(1_600_000_000)), "{p}");
    }
    // Before the epoch is representable too.
    let old = SetAttrs { times: Some((-10, -20)), ..Default::default() };
    s.fs.set_metadata(&vp("/f"), &old).await.unwrap();
    assert_eq!(s.fs.metadata(&vp("/f")).await.unwrap().mtime, Some(-20));

    let m = s.fs.metadata(&vp("/f")).await.unwrap();
    let same = SetAttrs { uid_gid: Some((m.uid.unwrap(), m.gid.unwrap())), ..Default::default() };
    s.fs.set_metadata(&vp("/f"), &same).await.unwrap();
    // A refused ownership change changes nothing else either.
    let other = SetAttrs {
        uid_gid: Some((m.uid.unwrap().wrapping_add(1), m.gid.unwrap())),
        permissions: Some(0o600),
        ..Default::default()
    };
    assert!(matches!(s.fs.set_metadata(&vp("/f"), &other).await, Err(FsError::PermissionDenied)));
    assert_eq!(mode_of(&s.root.join("f")), 0o604);

    let size = SetAttrs { size: Some(0), ..Default::default() };
    assert!(matches!(s.fs.set_metadata(&vp("/d"), &size).await, Err(FsError::IsADirectory)));
    assert!(matches!(s.fs.set_metadata(&vp("/nope"), &size).await, Err(FsError::NotFound)));
}

#[tokio::test]
async fn times_on_a_dangling_link_go_to_the_link() {
    // rsync -a through sshfs sets a new link's times before the file it points to exists.
    let s = scratch();
    s.fs.create_dir(&vp("/d"), None).await.unwrap();
    s.fs.symlink(b"later.txt", &vp("/d/link")).await.unwrap();
    let times = SetAttrs { times: Some((1_500_000_000, 1_600_000_000)), ..Default::default() };
    s.fs.set_metadata(&vp("/d/link"), &times).await.unwrap();
    let link = std::fs::symlink_metadata(s.root.join("d/link")).unwrap();
    assert_eq!((link.atime(), link.mtime()), (1_500_000_000, 1_600_000_000));
    assert!(!s.root.join("d/later.txt").exists(), "the missing target must not be created");
    // At the top of the root too.
    s.fs.symlink(b"nowhere", &vp("/top")).await.unwrap();
    s.fs.set_metadata(&vp("/top"), &times).await.unwrap();
    assert_eq!(std::fs::symlink_metadata(s.root.join("top")).unwrap().mtime(), 1_600_000_000);

    // Anything but times still needs the target, and a missing plain path stays missing.
    for attrs in
        [SetAttrs { permissions: Some(0o600), ..times.clone() }, SetAttrs { size: Some(0), ..Default::default() }]
    {
        assert!(matches!(s.fs.set_metadata(&vp("/d/link"), &attrs).await, Err(FsError::NotFound)));
    }
    assert!(matches!(s.fs.set_metadata(&vp("/d/nope"), &times).await, Err(FsError::NotFound)));

    // Once the target exists, times follow the link to it, as SETSTAT does.
    put(&s.fs, &vp("/d/later.txt"), b"x").await.unwrap();
    let newer = SetAttrs { times: Some((1_700_000_000, 1_700_000_000)), ..Default::default() };
    s.fs.set_metadata(&vp("/d/link"), &newer).await.unwrap();
    assert_eq!(std::fs::metadata(s.root.join("d/later.txt")).unwrap().mtime(), 1_700_000_000);
    assert_eq!(std::fs::symlink_metadata(s.root.join("d/link")).unwrap().mtime(), 1_600_000_000);
    // So is an absolute link (inside the root, which the OS refuses to follow at first).
    s.fs.symlink(b"/d/later.txt", &vp("/abs")).await.unwrap();
    s.fs.set_metadata(&vp("/abs"), &times).await.unwrap();
    assert_eq!(std::fs::metadata(s.root.join("d/later.txt")).unwrap().mtime(), 1_600_000_000);
    assert_ne!(std::fs::symlink_metadata(s.root.join("abs")).unwrap().mtime(), 1_600_000_000);
}

#[tokio::test]
async fn set_link_metadata_changes_a_link_itself() {
    // lsetstat@openssh.com (`sftp`'s `chmod -h`): a final link is not followed.
    let s = scratch();
    put(&s.fs, &vp("/f"), b"0123456789").await.unwrap();
    set_mode(&s.root.join("f"), 0o640);
    s.fs.symlink(b"f", &vp("/link")).await.unwrap();
    let before = std::fs::metadata(s.root.join("f")).unwrap();
    let times = SetAttrs { times: Some((1_500_000_000, 1_600_000_000)), ..Default::default() };
    s.fs.set_link_metadata(&vp("/link"), &times).await.unwrap();
    let link = std::fs::symlink_metadata(s.root.join("link")).unwrap();
    assert_eq!((link.atime(), link.mtime()), (1_500_000_000, 1_600_000_000));
    assert_eq!(std::fs::metadata(s.root.join("f")).unwrap().mtime(), before.mtime(), "the target was touched");

    // A link has no size, and Linux keeps no mode on it: refused, and nothing else in the request is done.
    let later = SetAttrs { times: Some((1_700_000_000, 1_700_000_000)), ..Default::default() };
    for refused in [SetAttrs { size: Some(0), ..later.clone() }, SetAttrs { permissions: Some(0o777), ..later.clone() }]
    {
        assert!(matches!(s.fs.set_link_metadata(&vp("/link"), &refused).await, Err(FsError::Unsupported(_))));
    }
    assert_eq!(std::fs::symlink_metadata(s.root.join("link")).unwrap().mtime(), 1_600_000_000);
    assert_eq!((mode_of(&s.root.join("f")), std::fs::read(s.root.join("f")).unwrap().len()), (0o640, 10));
    // Its owner may be "set" to what it is; another owner is refused.
    let m = s.fs.symlink_metadata(&vp("/link")).await.unwrap();
    let same = SetAttrs { uid_gid: Some((m.uid.unwrap(), m.gid.unwrap())), ..Default::default() };
    s.fs.set_link_metadata(&vp("/link"), &same).await.unwrap();
    let other = SetAttrs { uid_gid: Some((m.uid.unwrap().wrapping_add(1), m.gid.unwrap())), ..later.clone() };
    assert!(matches!(s.fs.set_link_metadata(&vp("/link"), &other).await, Err(FsError::PermissionDenied)));
    assert_eq!(std::fs::symlink_metadata(s.root.join("link")).unwrap().mtime(), 1_600_000_000);

    // Anything else is changed as by set_metadata; a missing name stays missing.
    s.fs.set_link_metadata(&vp("/f"), &SetAttrs { permissions: Some(0o600), ..later.clone() }).await.unwrap();
    assert_eq!(mode_of(&s.root.join("f")), 0o600);
    assert_eq!(std::fs::metadata(s.root.join("f")).unwrap().mtime(), 1_700_000_000);
    assert!(matches!(s.fs.set_link_metadata(&vp("/nope"), &later).await, Err(FsError::NotFound)));
}

#[tokio::test]
async fn canonicalize_resolves_links_virtually() {
    let s = scratch();
    std::fs::create_dir_all(s.root.join("a/b")).unwrap();
    std::fs::write(s.root.join("a/b/file"), b"x").unwrap();
    s.fs.symlink(b"a/b", &vp("/rel")).await.unwrap();
    s.fs.symlink(b"/a", &vp("/abs")).await.unwrap();
    s.fs.symlink(b"../../../a", &vp("/a/up")).await.unwrap();
    s.fs.symlink(b"../rel/file", &vp("/a/chain")).await.unwrap();
    s.fs.symlink(b"loop2", &vp("/loop1")).await.unwrap();
    s.fs.symlink(b"loop1", &vp("/loop2")).await.unwrap();

    let c = |p: &'static str| {
        let fs = s.fs.clone();
        async move { fs.canonicalize(&vp(p)).await }
    };
    assert_eq!(c("/").await.unwrap(), vp("/"));
    assert_eq!(c("/a/b/file").await.unwrap(), vp("/a/b/file"));
    assert_eq!(c("/rel").await.unwrap(), vp("/a/b"));
    assert_eq!(c("/rel/file").await.unwrap(), vp("/a/b/file"));
    assert_eq!(c("/abs/b").await.unwrap(), vp("/a/b"));
    assert_eq!(c("/a/up/b").await.unwrap(), vp("/a/b"));
    assert_eq!(c("/a/chain").await.unwrap(), vp("/a/b/file"));
    // A missing last component is fine (realpath of a file about to be uploaded), an intermediate one not.
    assert_eq!(c("/rel/new.txt").await.unwrap(), vp("/a/b/new.txt"));
    assert!(matches!(c("/rel/nodir/new.txt").await, Err(FsError::NotFound)));
    assert!(matches!(c("/a/b/file/x").await, Err(FsError::NotADirectory)));
    assert!(matches!(c("/loop1").await, Err(FsError::InvalidPath)));
}

#[tokio::test]
async fn stats_reports_the_filesystem() {
    let s = scratch();
    put(&s.fs, &vp("/f"), b"x").await.unwrap();
    for p in ["/", "/f"] {
        let st = s.fs.stats(&vp(p)).await.unwrap();
        assert!(st.blocks > 0, "{st:?}");
        assert!(st.block_size > 0 && st.fragment_size > 0, "{st:?}");
        assert!(st.name_max >= 255, "{st:?}");
        assert!(st.blocks_available <= st.blocks_free && st.blocks_free <= st.blocks, "{st:?}");
    }
    assert!(matches!(s.fs.stats(&vp("/nope")).await, Err(FsError::NotFound)));
}
