//! Opening files on the local backend: atomic uploads, resume, append, exclusive create, handle I/O.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use ferry_vfs::local::{UploadPolicy, Uploads};
use ferry_vfs::{FileKind, FsError, OpenOptions, SetAttrs, Vfs};
use std::os::unix::fs::MetadataExt;

fn b(s: &'static [u8]) -> bytes::Bytes {
    bytes::Bytes::from_static(s)
}

// ---- Standard mode (the default): visible from the OPEN, undone when cut off ----

#[tokio::test]
async fn replacement_is_visible_while_written_and_cut_off_restores_the_old_file() {
    let s = scratch();
    put(&s.fs, &vp("/f.txt"), b"old content").await.unwrap();
    let old_ino = std::fs::metadata(s.root.join("f.txt")).unwrap().ino();
    let h = s.fs.open(&vp("/f.txt"), put_opts()).await.unwrap();
    // From the OPEN the name is the new, empty file, as with OpenSSH's O_TRUNC.
    assert_eq!(s.fs.metadata(&vp("/f.txt")).await.unwrap().size, 0);
    h.write_at(0, b(b"new")).await.unwrap();
    assert_eq!(read_all(&s.fs, &vp("/f.txt")).await.unwrap(), b"new");
    let listed = s.fs.read_dir(&vp("/")).await.unwrap();
    assert_eq!((listed.len(), listed[0].metadata.size), (1, 3));
    assert_eq!(journal_entries(&s), 1);
    abandon(h).await;
    // The previous version is back, the very same inode, and nothing hidden is left.
    assert_eq!(std::fs::read(s.root.join("f.txt")).unwrap(), b"old content");
    assert_eq!(std::fs::metadata(s.root.join("f.txt")).unwrap().ino(), old_ino);
    assert_eq!(all_names(&s.root), vec!["f.txt"]);
    assert_eq!(journal_entries(&s), 0);
}

#[tokio::test]
async fn replacement_closed_leaves_only_the_new_file() {
    let s = scratch();
    put(&s.fs, &vp("/f.txt"), b"a much longer old content").await.unwrap();
    let h = s.fs.open(&vp("/f.txt"), put_opts()).await.unwrap();
    h.write_at(3, b(b"def")).await.unwrap();
    h.write_at(0, b(b"abc")).await.unwrap();
    assert_eq!(h.metadata().await.unwrap().size, 6);
    h.close().await.unwrap();
    assert_eq!(read_all(&s.fs, &vp("/f.txt")).await.unwrap(), b"abcdef");
    assert_eq!(all_names(&s.root), vec!["f.txt"]);
    assert_eq!(journal_entries(&s), 0);
}

#[tokio::test]
async fn new_file_is_visible_and_cut_off_removes_it() {
    let s = scratch();
    std::fs::create_dir(s.root.join("d")).unwrap();
    let h = s.fs.open(&vp("/d/new.bin"), put_opts()).await.unwrap();
    h.write_at(0, b(b"partial")).await.unwrap();
    assert_eq!(s.fs.metadata(&vp("/d/new.bin")).await.unwrap().size, 7);
    // Another handle on the name reads what was written so far (sshfs re-opens what it creates).
    assert_eq!(read_all(&s.fs, &vp("/d/new.bin")).await.unwrap(), b"partial");
    abandon(h).await;
    assert!(all_names(&s.root.join("d")).is_empty());
    s.fs.remove_dir(&vp("/d")).await.unwrap();
}

#[tokio::test]
async fn a_dropped_handle_is_undone_too() {
    let s = scratch();
    put(&s.fs, &vp("/f.txt"), b"good").await.unwrap();
    let h = s.fs.open(&vp("/f.txt"), put_opts()).await.unwrap();
    h.write_at(0, b(b"partial")).await.unwrap();
    drop(h);
    let restored = async {
        while std::fs::read(s.root.join("f.txt")).unwrap() != b"good" || all_names(&s.root).len() != 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), restored).await.expect("undone in the background");
}

#[tokio::test]
async fn keep_partial_keeps_a_cut_off_new_file_but_never_a_cut_off_replacement() {
    let s = scratch_with(UploadPolicy { keep_partial: true, ..Default::default() });
    let h = s.fs.open(&vp("/new.bin"), put_opts()).await.unwrap();
    h.write_at(0, b(b"first half")).await.unwrap();
    abandon(h).await;
    assert_eq!(std::fs::read(s.root.join("new.bin")).unwrap(), b"first half");
    let h = s.fs.open(&vp("/new.bin"), put_opts()).await.unwrap();
    h.write_at(0, b(b"xx")).await.unwrap();
    h.abort().await;
    assert_eq!(std::fs::read(s.root.join("new.bin")).unwrap(), b"first half");
    assert_eq!(all_names(&s.root), vec!["new.bin"]);
}

#[tokio::test]
async fn removing_a_name_being_uploaded_leaves_nothing_behind() {
    let s = scratch();
    put(&s.fs, &vp("/old.txt"), b"old").await.unwrap();
    let replacing = s.fs.open(&vp("/old.txt"), put_opts()).await.unwrap();
    let creating = s.fs.open(&vp("/new.txt"), put_opts()).await.unwrap();
    replacing.write_at(0, b(b"r")).await.unwrap();
    creating.write_at(0, b(b"c")).await.unwrap();
    // rclone does this after a failed transfer, keeping its handle open.
    s.fs.remove_file(&vp("/old.txt")).await.unwrap();
    s.fs.remove_file(&vp("/new.txt")).await.unwrap();
    assert!(all_names(&s.root).is_empty(), "hidden files left: {:?}", all_names(&s.root));
    // Closing or dropping the handles afterwards brings nothing back.
    replacing.close().await.unwrap();
    abandon(creating).await;
    assert!(all_names(&s.root).is_empty());
    assert_eq!(journal_entries(&s), 0);
}

#[tokio::test]
async fn a_retry_before_the_first_attempt_was_seen_cut_off_still_restores_the_good_file() {
    let s = scratch();
    put(&s.fs, &vp("/f.txt"), b"good").await.unwrap();
    // A client reconnects and retries while its first, cut-off attempt is still open on the server.
    let first = s.fs.open(&vp("/f.txt"), put_opts()).await.unwrap();
    first.write_at(0, b(b"partial one")).await.unwrap();
    let second = s.fs.open(&vp("/f.txt"), put_opts()).await.unwrap();
    second.write_at(0, b(b"partial two")).await.unwrap();
    abandon(first).await;
    assert_eq!(std::fs::read(s.root.join("f.txt")).unwrap(), b"partial two");
    abandon(second).await;
    assert_eq!(std::fs::read(s.root.join("f.txt")).unwrap(), b"good");
    assert_eq!(all_names(&s.root), vec!["f.txt"]);
    assert_eq!(journal_entries(&s), 0);

    // The newest upload wins when it completes; an older one still open then changes nothing.
    let first = s.fs.open(&vp("/f.txt"), put_opts()).await.unwrap();
    let second = s.fs.open(&vp("/f.txt"), put_opts()).await.unwrap();
    second.write_at(0, b(b"second")).await.unwrap();
    second.close().await.unwrap();
    first.write_at(0, b(b"first")).await.unwrap();
    // The older upload is told its data did not make it.
    assert!(first.close().await.is_err());
    assert_eq!(std::fs::read(s.root.join("f.txt")).unwrap(), b"second");

    // Same for a new file: nothing of either attempt is left.
    let first = s.fs.open(&vp("/n.bin"), put_opts()).await.unwrap();
    let second = s.fs.open(&vp("/n.bin"), put_opts()).await.unwrap();
    abandon(first).await;
    abandon(second).await;
    assert_eq!(all_names(&s.root), vec!["f.txt"]);
    assert_eq!(journal_entries(&s), 0);
}

#[tokio::test]
async fn a_crash_mid_upload_is_undone_at_the_next_start() {
    let s = scratch();
    put(&s.fs, &vp("/good.txt"), b"good").await.unwrap();
    let replacing = s.fs.open(&vp("/good.txt"), put_opts()).await.unwrap();
    let creating = s.fs.open(&vp("/partial.bin"), put_opts()).await.unwrap();
    replacing.write_at(0, b(b"half of the new")).await.unwrap();
    creating.write_at(0, b(b"half")).await.unwrap();
    // A crash: no close, no drop; the process state is gone but the disk and the journal stay.
    std::mem::forget(replacing);
    std::mem::forget(creating);
    assert_eq!(journal_entries(&s), 2);
    let fresh = Uploads::new(UploadPolicy::default(), Some(s.journal.clone())).unwrap();
    let notes = fresh.recover();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("restored the previous version") && n.contains("good.txt")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("removed the partial new file") && n.contains("partial.bin")), "{notes:?}");
    assert_eq!(std::fs::read(s.root.join("good.txt")).unwrap(), b"good");
    assert_eq!(all_names(&s.root), vec!["good.txt"]);
    assert_eq!(journal_entries(&s), 0);
    assert!(fresh.recover().is_empty());
}

/// An upload of `path` cut by a crash after `data`: no close, no drop, only the disk and the journal stay.
async fn crash_during_upload(s: &Scratch, path: &str, data: &'static [u8]) {
    let h = s.fs.open(&vp(path), put_opts()).await.unwrap();
    h.write_at(0, b(data)).await.unwrap();
    std::mem::forget(h);
}

fn recover_after_restart(s: &Scratch, policy: UploadPolicy) -> Vec<String> {
    Uploads::new(policy, Some(s.journal.clone())).unwrap().recover()
}

#[tokio::test]
async fn recovery_keeps_a_partial_new_file_when_the_policy_keeps_partials() {
    let policy = UploadPolicy { keep_partial: true, ..Default::default() };
    let s = scratch_with(policy);
    crash_during_upload(&s, "/resume-me.bin", b"first half").await;
    let notes = recover_after_restart(&s, policy);
    assert!(notes.iter().any(|n| n.contains("kept the partial new file") && n.contains("resume-me.bin")), "{notes:?}");
    assert_eq!(std::fs::read(s.root.join("resume-me.bin")).unwrap(), b"first half");
    assert_eq!(journal_entries(&s), 0);
}

#[tokio::test]
async fn recovery_never_removes_or_overwrites_a_file_that_took_the_name_after_the_crash() {
    let s = scratch();
    put(&s.fs, &vp("/report.csv"), b"good").await.unwrap();
    crash_during_upload(&s, "/report.csv", b"half of the new").await;
    crash_during_upload(&s, "/fresh.bin", b"half").await;
    // Before the restart, an admin (or another process) put newer files under both names.
    for name in ["report.csv", "fresh.bin"] {
        std::fs::remove_file(s.root.join(name)).unwrap();
        std::fs::write(s.root.join(name), b"newer, written by hand").unwrap();
    }
    let notes = recover_after_restart(&s, UploadPolicy::default());
    assert!(notes.iter().any(|n| n.contains("was replaced by a newer file; dropped the older version")), "{notes:?}");
    for name in ["report.csv", "fresh.bin"] {
        assert_eq!(std::fs::read(s.root.join(name)).unwrap(), b"newer, written by hand", "{name}");
    }
    assert_eq!(all_names(&s.root), vec!["fresh.bin", "report.csv"], "no hidden file left");
    assert_eq!(journal_entries(&s), 0);
}

#[tokio::test]
async fn recovery_of_an_upload_whose_directory_is_gone_has_nothing_to_undo() {
    let s = scratch();
    s.fs.create_dir(&vp("/inbox"), None).await.unwrap();
    crash_during_upload(&s, "/inbox/x.bin", b"half").await;
    std::fs::remove_dir_all(s.root.join("inbox")).unwrap();
    let notes = recover_after_restart(&s, UploadPolicy::default());
    assert!(notes.iter().any(|n| n.contains("no longer exists; nothing to undo")), "{notes:?}");
    assert_eq!(journal_entries(&s), 0, "the entry is done with");
}

#[tokio::test]
async fn exclusive_create_in_place() {
    let s = scratch();
    put(&s.fs, &vp("/f.txt"), b"x").await.unwrap();
    let excl = OpenOptions { write: true, create: true, exclusive: true, ..Default::default() };
    assert!(matches!(s.fs.open(&vp("/f.txt"), excl).await.map(|_| ()), Err(FsError::AlreadyExists)));
    // The name exists from the first OPEN, so a second exclusive OPEN fails at once, as on OpenSSH.
    let a = s.fs.open(&vp("/n.txt"), excl).await.unwrap();
    assert!(matches!(s.fs.open(&vp("/n.txt"), excl).await.map(|_| ()), Err(FsError::AlreadyExists)));
    a.write_at(0, b(b"first")).await.unwrap();
    a.close().await.unwrap();
    assert_eq!(read_all(&s.fs, &vp("/n.txt")).await.unwrap(), b"first");
    assert_eq!(all_names(&s.root), vec!["f.txt", "n.txt"]);
}

// ---- Atomic mode: hidden until complete ----

#[tokio::test]
async fn atomic_upload_cut_off_keeps_the_old_file() {
    let s = scratch_with(atomic());
    put(&s.fs, &vp("/f.txt"), b"old content").await.unwrap();
    let h = s.fs.open(&vp("/f.txt"), put_opts()).await.unwrap();
    h.write_at(0, b(b"new")).await.unwrap();
    // While the upload runs the target is untouched and the temporary file is hidden.
    assert_eq!(std::fs::read(s.root.join("f.txt")).unwrap(), b"old content");
    assert_eq!(temp_files(&s.root).len(), 1);
    assert_eq!(s.fs.read_dir(&vp("/")).await.unwrap().len(), 1);
    abandon(h).await;
    assert_eq!(std::fs::read(s.root.join("f.txt")).unwrap(), b"old content");
    assert!(temp_files(&s.root).is_empty());
    assert_eq!(journal_entries(&s), 0);
}

#[tokio::test]
async fn atomic_new_file_cut_off_leaves_nothing() {
    let s = scratch_with(atomic());
    std::fs::create_dir(s.root.join("d")).unwrap();
    let h = s.fs.open(&vp("/d/new.bin"), put_opts()).await.unwrap();
    h.write_at(0, b(b"partial")).await.unwrap();
    assert!(matches!(s.fs.metadata(&vp("/d/new.bin")).await, Err(FsError::NotFound)));
    abandon(h).await;
    assert!(std::fs::read_dir(s.root.join("d")).unwrap().next().is_none());
}

#[tokio::test]
async fn atomic_upload_close_replaces_and_cleans_up() {
    let s = scratch_with(atomic());
    put(&s.fs, &vp("/f.txt"), b"a much longer old content").await.unwrap();
    let old_ino = std::fs::metadata(s.root.join("f.txt")).unwrap().ino();
    let h = s.fs.open(&vp("/f.txt"), put_opts()).await.unwrap();
    h.write_at(3, b(b"def")).await.unwrap();
    h.write_at(0, b(b"abc")).await.unwrap();
    assert_eq!(h.metadata().await.unwrap().size, 6);
    h.close().await.unwrap();
    assert_eq!(read_all(&s.fs, &vp("/f.txt")).await.unwrap(), b"abcdef");
    assert!(temp_files(&s.root).is_empty());
    // A new inode: the rename replaced the file rather than rewriting it.
    assert_ne!(std::fs::metadata(s.root.join("f.txt")).unwrap().ino(), old_ino);
}

#[tokio::test]
async fn atomic_removing_the_name_cancels_the_upload() {
    let s = scratch_with(atomic());
    let h = s.fs.open(&vp("/new.txt"), put_opts()).await.unwrap();
    h.write_at(0, b(b"data")).await.unwrap();
    s.fs.remove_file(&vp("/new.txt")).await.unwrap();
    assert!(all_names(&s.root).is_empty());
    h.close().await.unwrap();
    assert!(all_names(&s.root).is_empty());
}

#[tokio::test]
async fn atomic_crash_leaves_no_temporary_file_after_recovery() {
    let s = scratch_with(atomic());
    let h = s.fs.open(&vp("/x.bin"), put_opts()).await.unwrap();
    h.write_at(0, b(b"data")).await.unwrap();
    std::mem::forget(h);
    assert_eq!(temp_files(&s.root).len(), 1);
    let notes = Uploads::new(atomic(), Some(s.journal.clone())).unwrap().recover();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(all_names(&s.root).is_empty());
}

#[tokio::test]
async fn atomic_exclusive_create() {
    let s = scratch_with(atomic());
    let excl = OpenOptions { write: true, create: true, exclusive: true, ..Default::default() };
    // Two exclusive uploads of one new name: the first to close wins, the second cannot replace it.
    let a = s.fs.open(&vp("/n.txt"), excl).await.unwrap();
    let b2 = s.fs.open(&vp("/n.txt"), excl).await.unwrap();
    a.write_at(0, b(b"first")).await.unwrap();
    b2.write_at(0, b(b"second")).await.unwrap();
    a.close().await.unwrap();
    assert!(matches!(b2.close().await, Err(FsError::AlreadyExists)));
    assert_eq!(read_all(&s.fs, &vp("/n.txt")).await.unwrap(), b"first");
    assert!(temp_files(&s.root).is_empty());
    assert_eq!(std::fs::metadata(s.root.join("n.txt")).unwrap().nlink(), 1);
}

#[tokio::test]
async fn upload_keeps_the_mode_of_the_file_it_replaces() {
    let s = scratch();
    put(&s.fs, &vp("/f.txt"), b"old").await.unwrap();
    // Not 0600: that is the mode a replacement starts with before the old file's bits are copied.
    set_mode(&s.root.join("f.txt"), 0o640);
    // `put` sends the local file's mode; as with OpenSSH it applies to new files only.
    let opts = OpenOptions { mode: Some(0o644), ..put_opts() };
    let h = s.fs.open(&vp("/f.txt"), opts).await.unwrap();
    h.write_at(0, bytes::Bytes::from_static(b"new")).await.unwrap();
    h.close().await.unwrap();
    assert_eq!(mode_of(&s.root.join("f.txt")), 0o640);
    // An open handle reports the permission bits alone, as a path's metadata does.
    let h = s.fs.open(&vp("/f.txt"), read_opts()).await.unwrap();
    assert_eq!(h.metadata().await.unwrap().permissions, Some(0o640));
    assert_eq!(s.fs.metadata(&vp("/f.txt")).await.unwrap().permissions, Some(0o640));

    // A new file gets the requested mode (less the umask, which never removes the owner's bits).
    let opts = OpenOptions { mode: Some(0o640), ..put_opts() };
    let h = s.fs.open(&vp("/g.txt"), opts).await.unwrap();
    h.close().await.unwrap();
    let mode = mode_of(&s.root.join("g.txt"));
    assert_eq!(mode & !0o640, 0);
    assert_eq!(mode & 0o600, 0o600);

    // An explicit chmod through the handle still wins.
    let h = s.fs.open(&vp("/f.txt"), put_opts()).await.unwrap();
    h.set_metadata(&SetAttrs { permissions: Some(0o604), ..Default::default() }).await.unwrap();
    h.close().await.unwrap();
    assert_eq!(mode_of(&s.root.join("f.txt")), 0o604);
}

#[tokio::test]
async fn resume_writes_in_place() {
    let s = scratch();
    put(&s.fs, &vp("/f.txt"), b"hello world").await.unwrap();
    let ino = std::fs::metadata(s.root.join("f.txt")).unwrap().ino();
    let opts = OpenOptions { write: true, ..Default::default() };
    let h = s.fs.open(&vp("/f.txt"), opts).await.unwrap();
    assert!(temp_files(&s.root).is_empty());
    h.write_at(6, bytes::Bytes::from_static(b"WORLD!")).await.unwrap();
    // Visible immediately: the file is written in place.
    assert_eq!(std::fs::read(s.root.join("f.txt")).unwrap(), b"hello WORLD!");
    h.close().await.unwrap();
    assert_eq!(std::fs::metadata(s.root.join("f.txt")).unwrap().ino(), ino);

    // Write + create on an existing file is also in place (FTP REST + STOR).
    let opts = OpenOptions { write: true, create: true, ..Default::default() };
    let h = s.fs.open(&vp("/f.txt"), opts).await.unwrap();
    h.write_at(0, bytes::Bytes::from_static(b"J")).await.unwrap();
    h.close().await.unwrap();
    assert_eq!(std::fs::read(s.root.join("f.txt")).unwrap(), b"Jello WORLD!");
}

#[tokio::test]
async fn append_ignores_the_offset() {
    let s = scratch();
    put(&s.fs, &vp("/f.txt"), b"abc").await.unwrap();
    let opts = OpenOptions { write: true, append: true, ..Default::default() };
    let h = s.fs.open(&vp("/f.txt"), opts).await.unwrap();
    h.write_at(0, bytes::Bytes::from_static(b"def")).await.unwrap();
    h.write_at(1, bytes::Bytes::from_static(b"ghi")).await.unwrap();
    h.close().await.unwrap();
    assert_eq!(read_all(&s.fs, &vp("/f.txt")).await.unwrap(), b"abcdefghi");

    // APPEND + CREAT on a missing file (FTP APPE) creates it.
    let opts = OpenOptions { write: true, append: true, create: true, ..Default::default() };
    let h = s.fs.open(&vp("/new.txt"), opts).await.unwrap();
    h.write_at(100, bytes::Bytes::from_static(b"xy")).await.unwrap();
    h.close().await.unwrap();
    assert_eq!(read_all(&s.fs, &vp("/new.txt")).await.unwrap(), b"xy");
}

#[tokio::test]
async fn open_errors() {
    let s = scratch();
    std::fs::create_dir(s.root.join("d")).unwrap();
    std::fs::write(s.root.join("file"), b"x").unwrap();
    let write = OpenOptions { write: true, ..Default::default() };
    let trunc = OpenOptions { write: true, truncate: true, ..Default::default() };
    let open = |p: &'static str, o: OpenOptions| {
        let fs = s.fs.clone();
        async move { fs.open(&vp(p), o).await.map(|_| ()) }
    };
    assert!(matches!(open("/missing", read_opts()).await, Err(FsError::NotFound)));
    assert!(matches!(open("/missing", write).await, Err(FsError::NotFound)));
    assert!(matches!(open("/missing", trunc).await, Err(FsError::NotFound)));
    assert!(matches!(open("/nodir/f", put_opts()).await, Err(FsError::NotFound)));
    assert!(matches!(open("/file/f", put_opts()).await, Err(FsError::NotADirectory)));
    assert!(matches!(open("/file/f", read_opts()).await, Err(FsError::NotADirectory)));
    assert!(matches!(open("/d", read_opts()).await, Err(FsError::IsADirectory)));
    assert!(matches!(open("/d", write).await, Err(FsError::IsADirectory)));
    assert!(matches!(open("/d", put_opts()).await, Err(FsError::IsADirectory)));
    assert!(temp_files(&s.root).is_empty());

    // A read-only handle refuses writes and a write-only one refuses reads.
    let h = s.fs.open(&vp("/file"), read_opts()).await.unwrap();
    assert!(matches!(h.write_at(0, bytes::Bytes::from_static(b"y")).await, Err(FsError::PermissionDenied)));
    let h = s.fs.open(&vp("/file"), write).await.unwrap();
    assert!(matches!(h.read_at(0, 1).await, Err(FsError::PermissionDenied)));
}

#[tokio::test]
async fn reads_are_positional_and_end_with_empty() {
    let s = scratch();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    put(&s.fs, &vp("/big"), &data).await.unwrap();
    let h = s.fs.open(&vp("/big"), read_opts()).await.unwrap();
    assert_eq!(&h.read_at(99_990, 100).await.unwrap()[..], &data[99_990..]);
    assert_eq!(&h.read_at(5, 10).await.unwrap()[..], &data[5..15]);
    assert_eq!(&h.read_at(0, 65536).await.unwrap()[..], &data[..65536]);
    assert!(h.read_at(100_000, 10).await.unwrap().is_empty());
    assert!(h.read_at(u64::MAX - 1, 10).await.unwrap().is_empty());
    assert!(h.read_at(0, 0).await.unwrap().is_empty());
    let m = h.metadata().await.unwrap();
    assert_eq!((m.kind, m.size), (FileKind::File, 100_000));
    h.sync().await.unwrap();
    h.close().await.unwrap();
}

#[tokio::test]
async fn read_write_handle_on_an_upload() {
    let s = scratch();
    let opts = OpenOptions { read: true, ..put_opts() };
    let h = s.fs.open(&vp("/rw"), opts).await.unwrap();
    h.write_at(0, bytes::Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(&h.read_at(1, 3).await.unwrap()[..], b"ell");
    h.set_metadata(&SetAttrs { size: Some(2), times: Some((1_000_000, 2_000_000)), ..Default::default() })
        .await
        .unwrap();
    let m = h.metadata().await.unwrap();
    assert_eq!((m.size, m.mtime), (2, Some(2_000_000)));
    let (uid, gid) = (m.uid.unwrap(), m.gid.unwrap());
    h.set_metadata(&SetAttrs { uid_gid: Some((uid, gid)), ..Default::default() }).await.unwrap();
    let other = SetAttrs { uid_gid: Some((uid.wrapping_add(1), gid)), ..Default::default() };
    assert!(matches!(h.set_metadata(&other).await, Err(FsError::PermissionDenied)));
    h.close().await.unwrap();
    assert_eq!(std::fs::read(s.root.join("rw")).unwrap(), b"he");
    assert_eq!(std::fs::metadata(s.root.join("rw")).unwrap().mtime(), 2_000_000);
}

#[tokio::test]
async fn upload_through_a_symlink_updates_its_target() {
    let s = scratch();
    put(&s.fs, &vp("/real.txt"), b"old").await.unwrap();
    s.fs.symlink(b"real.txt", &vp("/link")).await.unwrap();
    put(&s.fs, &vp("/link"), b"new!").await.unwrap();
    assert_eq!(s.fs.symlink_metadata(&vp("/link")).await.unwrap().kind, FileKind::Symlink);
    assert_eq!(read_all(&s.fs, &vp("/real.txt")).await.unwrap(), b"new!");
}

#[tokio::test]
async fn non_utf8_names_round_trip() {
    let s = scratch();
    let name: &[u8] = b"caf\xe9 \xff.txt";
    let mut path = b"/".to_vec();
    path.extend_from_slice(name);
    put(&s.fs, &vpb(&path), b"bytes").await.unwrap();
    let entries = s.fs.read_dir(&vp("/")).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, name);
    assert_eq!(entries[0].metadata.size, 5);
    let again = vp("/").join(&entries[0].name);
    assert_eq!(read_all(&s.fs, &again).await.unwrap(), b"bytes");
}

#[tokio::test]
async fn long_names_still_upload() {
    let s = scratch();
    // The temporary name adds a prefix; it must still fit in NAME_MAX.
    let name = "n".repeat(255);
    put(&s.fs, &vp(&format!("/{name}")), b"x").await.unwrap();
    assert_eq!(read_all(&s.fs, &vp(&format!("/{name}"))).await.unwrap(), b"x");
}

/// Writes `chunks` MiB, each chunk filled with its own index, to an open upload.
async fn write_mib_chunks(h: &dyn ferry_vfs::FileHandle, chunks: u8) {
    for i in 0..chunks {
        let chunk = bytes::Bytes::from(vec![i; 1 << 20]);
        h.write_at(u64::from(i) << 20, chunk).await.unwrap();
    }
}

// Uploads past the background-flush step (32 MiB) run flushes while later writes arrive, and replacing
// an existing file first drops its page cache: neither may change what ends up on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_with_background_flushes_replaces_the_file_exactly() {
    let s = scratch();
    put(&s.fs, &vp("/big.bin"), &vec![0xAA; 3 << 20]).await.unwrap();
    let h = s.fs.open(&vp("/big.bin"), put_opts()).await.unwrap();
    write_mib_chunks(h.as_ref(), 72).await;
    h.close().await.unwrap();
    let data = std::fs::read(s.root.join("big.bin")).unwrap();
    assert_eq!(data.len(), 72 << 20);
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        assert!(chunk.iter().all(|&b| usize::from(b) == i), "chunk {i} differs");
    }
    assert!(temp_files(&s.root).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_cut_off_after_background_flushes_keeps_the_old_file() {
    let s = scratch();
    put(&s.fs, &vp("/big.bin"), b"the good old version").await.unwrap();
    let h = s.fs.open(&vp("/big.bin"), put_opts()).await.unwrap();
    write_mib_chunks(h.as_ref(), 40).await;
    abandon(h).await;
    assert_eq!(std::fs::read(s.root.join("big.bin")).unwrap(), b"the good old version");
    assert!(temp_files(&s.root).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_large_upload_replaces_the_file_exactly() {
    let s = scratch_with(atomic());
    put(&s.fs, &vp("/big.bin"), &vec![0xAA; 3 << 20]).await.unwrap();
    let h = s.fs.open(&vp("/big.bin"), put_opts()).await.unwrap();
    write_mib_chunks(h.as_ref(), 40).await;
    h.close().await.unwrap();
    assert_eq!(std::fs::metadata(s.root.join("big.bin")).unwrap().len(), 40 << 20);
    assert!(temp_files(&s.root).is_empty());
}
