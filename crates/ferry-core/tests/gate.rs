//! The gate every file operation of every protocol passes: each operation needs its own permission, a
//! refusal is `PermissionDenied` with one log line naming the permission and the path, a change that
//! happened is logged, and the quota follows files removed and replaced. Through a real login, on local
//! storage, as the protocols use it.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use ferry_core::Session;
use ferry_vfs::{FsError, OpenOptions, SetAttrs, VPath, Vfs};
use support::{capture_logs, client, fixture, Fixture, Logs, PASSWORD};

fn p(name: &str) -> VPath {
    VPath::resolve(&VPath::root(), name.as_bytes())
}

fn upload() -> OpenOptions {
    OpenOptions { write: true, create: true, truncate: true, ..Default::default() }
}

fn read() -> OpenOptions {
    OpenOptions { read: true, ..Default::default() }
}

async fn login(f: &Fixture) -> Session {
    f.core.password_login("alice", PASSWORD, &client("sftp")).await.expect("login")
}

/// Alice with `perms` at `/`, logged in.
async fn with_perms(perms: &str) -> (Fixture, Session) {
    let f = fixture();
    f.store.set_permission("alice", "/", perms).expect("permission");
    std::fs::create_dir(f.home.join("dir")).expect("dir");
    let s = login(&f).await;
    (f, s)
}

async fn put(vfs: &Arc<dyn Vfs>, path: &VPath, data: &'static [u8]) -> Result<(), FsError> {
    let file = vfs.open(path, upload()).await?;
    if let Err(e) = file.write_at(0, Bytes::from_static(data)).await {
        file.abort().await;
        return Err(e);
    }
    file.close().await
}

/// `r` is a refusal of `perm` at `path`, logged once.
fn denied<T: std::fmt::Debug>(logs: &Logs, r: Result<T, FsError>, perm: &str, path: &str) {
    assert!(matches!(r, Err(FsError::PermissionDenied)), "{perm} at {path} should be refused: {r:?}");
    let line = format!("permission denied: {perm} is not allowed here");
    let lines = logs.lines_with(&[&line, &format!("path={path}"), "user=alice"]);
    assert_eq!(lines.len(), 1, "one line for {perm} at {path}: {}", logs.text());
}

#[tokio::test]
async fn with_no_permission_every_operation_is_refused_by_name() {
    let (f, s) = with_perms("none").await;
    let (logs, _guard) = capture_logs();
    let vfs = s.vfs();
    denied(&logs, vfs.read_dir(&VPath::root()).await, "list", "/");
    denied(&logs, vfs.open_dir(&p("dir")).await.map(|_| ()), "list", "/dir");
    denied(&logs, vfs.read_link(&p("file.txt")).await, "list", "/file.txt");
    denied(&logs, vfs.open(&p("file.txt"), read()).await.map(|_| ()), "download", "/file.txt");
    denied(&logs, vfs.open(&p("new.txt"), upload()).await.map(|_| ()), "upload", "/new.txt");
    denied(&logs, vfs.open(&p("file.txt"), upload()).await.map(|_| ()), "overwrite", "/file.txt");
    denied(&logs, vfs.create_dir(&p("d2"), None).await, "mkdir", "/d2");
    denied(&logs, vfs.remove_dir(&p("dir")).await, "rmdir", "/dir");
    denied(&logs, vfs.remove_file(&p("file.txt")).await, "delete", "/file.txt");
    denied(&logs, vfs.rename(&p("file.txt"), &p("moved.txt"), false).await, "rename", "/file.txt");
    denied(&logs, vfs.symlink(b"file.txt", &p("link")).await, "symlink", "/link");
    denied(&logs, vfs.hard_link(&p("file.txt"), &p("hard")).await, "symlink", "/hard");
    let chmod = SetAttrs { permissions: Some(0o600), ..Default::default() };
    denied(&logs, vfs.set_metadata(&p("file.txt"), &chmod).await, "chmod", "/file.txt");
    let chown = SetAttrs { uid_gid: Some((0, 0)), ..Default::default() };
    denied(&logs, vfs.set_metadata(&p("dir"), &chown).await, "chmod", "/dir");
    let touch = SetAttrs { times: Some((1, 1)), ..Default::default() };
    denied(&logs, vfs.set_metadata(&p("dir"), &touch).await, "times", "/dir");
    // lsetstat is checked the same way.
    denied(&logs, vfs.set_link_metadata(&p("other.txt"), &touch).await, "times", "/other.txt");
    denied(&logs, vfs.set_link_metadata(&p("other.txt"), &chmod).await, "chmod", "/other.txt");
    let truncate = SetAttrs { size: Some(0), ..Default::default() };
    denied(&logs, vfs.set_metadata(&p("other.txt"), &truncate).await, "overwrite", "/other.txt");
    // Nothing changed on disk, and no change was logged.
    assert_eq!(std::fs::read(f.home.join("file.txt")).expect("file"), b"hello");
    assert!(f.home.join("dir").is_dir());
    assert!(logs.lines_with(&["user=alice"]).iter().all(|l| l.contains("permission denied")), "{}", logs.text());
    // Looking at a name is not listing: a client must be able to stat what it may upload over.
    assert_eq!(vfs.metadata(&p("file.txt")).await.expect("stat").size, 5);
    assert_eq!(vfs.canonicalize(&p("dir/../file.txt")).await.expect("realpath"), p("file.txt"));
}

#[tokio::test]
async fn every_allowed_operation_goes_through_and_changes_are_logged() {
    let (f, s) = with_perms("full").await;
    let (logs, _guard) = capture_logs();
    let vfs = s.vfs();
    assert_eq!(vfs.read_dir(&VPath::root()).await.expect("list").len(), 2);
    put(vfs, &p("new.txt"), b"new").await.expect("upload");
    vfs.create_dir(&p("d2"), None).await.expect("mkdir");
    vfs.remove_dir(&p("d2")).await.expect("rmdir");
    vfs.rename(&p("new.txt"), &p("moved.txt"), false).await.expect("rename");
    vfs.symlink(b"moved.txt", &p("link")).await.expect("symlink");
    assert_eq!(vfs.read_link(&p("link")).await.expect("readlink"), b"moved.txt");
    vfs.hard_link(&p("moved.txt"), &p("hard")).await.expect("hard link");
    vfs.remove_file(&p("hard")).await.expect("delete");
    let attrs = SetAttrs { permissions: Some(0o600), times: Some((1, 1)), ..Default::default() };
    vfs.set_metadata(&p("moved.txt"), &attrs).await.expect("chmod and times");
    let touch = SetAttrs { times: Some((2, 2)), ..Default::default() };
    vfs.set_link_metadata(&p("link"), &touch).await.expect("times of the link itself");
    let link = std::fs::symlink_metadata(f.home.join("link")).expect("link");
    assert_eq!(link.modified().expect("mtime"), std::time::UNIX_EPOCH + std::time::Duration::from_secs(2));
    assert_eq!(std::fs::read(f.home.join("moved.txt")).expect("moved"), b"new");
    for (what, field) in [
        ("mkdir", "path=/d2"),
        ("rmdir", "path=/d2"),
        ("rename", "to=/moved.txt"),
        ("symlink", "link=/link"),
        ("delete", "path=/hard"),
    ] {
        assert_eq!(logs.lines_with(&[what, field, "user=alice"]).len(), 1, "{what}: {}", logs.text());
    }
    // A change that failed is not logged as done.
    assert!(vfs.remove_dir(&p("missing")).await.is_err());
    assert!(vfs.remove_file(&p("missing")).await.is_err());
    assert!(vfs.create_dir(&p("dir"), None).await.is_err());
    assert!(vfs.rename(&p("missing"), &p("x"), false).await.is_err());
    assert!(vfs.symlink(b"x", &p("link")).await.is_err());
    for field in ["path=/missing", "path=/dir", "from=/missing", "target=x"] {
        assert!(logs.lines_with(&[field]).is_empty(), "{field}: {}", logs.text());
    }
}

#[tokio::test]
async fn a_drop_box_takes_new_files_and_refuses_the_rest() {
    let (f, s) = with_perms("upload-only").await;
    let (logs, _guard) = capture_logs();
    let vfs = s.vfs();
    put(vfs, &p("report.csv"), b"a,b").await.expect("a new file");
    assert!(vfs.read_dir(&VPath::root()).await.is_ok(), "upload-only lists");
    denied(&logs, put(vfs, &p("report.csv"), b"x").await, "overwrite", "/report.csv");
    denied(&logs, vfs.open(&p("report.csv"), read()).await.map(|_| ()), "download", "/report.csv");
    // Opening to append or resume is writing over what is there.
    let append = OpenOptions { write: true, append: true, ..Default::default() };
    denied(&logs, vfs.open(&p("file.txt"), append).await.map(|_| ()), "overwrite", "/file.txt");
    assert_eq!(std::fs::read(f.home.join("report.csv")).expect("kept"), b"a,b");
}

#[tokio::test]
async fn the_most_specific_directory_rule_wins() {
    let f = fixture();
    f.store.set_permission("alice", "/", "read-only").expect("root");
    f.store.set_permission("alice", "/in", "full").expect("in");
    std::fs::create_dir(f.home.join("in")).expect("in");
    let s = login(&f).await;
    let (logs, _guard) = capture_logs();
    put(s.vfs(), &p("in/a.txt"), b"a").await.expect("upload under /in");
    denied(&logs, put(s.vfs(), &p("a.txt"), b"a").await, "upload", "/a.txt");
}

#[tokio::test]
async fn an_open_file_needs_the_paths_permissions_to_change_its_attributes() {
    let (_f, s) = with_perms("list,download,upload,overwrite").await;
    let (logs, _guard) = capture_logs();
    let file = s.vfs().open(&p("up.bin"), upload()).await.expect("open");
    file.write_at(0, Bytes::from_static(b"0123456789")).await.expect("write");
    // Truncating one's own upload through the handle is writing.
    file.set_metadata(&SetAttrs { size: Some(4), ..Default::default() }).await.expect("truncate");
    let chmod = SetAttrs { permissions: Some(0o600), ..Default::default() };
    denied(&logs, file.set_metadata(&chmod).await, "chmod", "/up.bin");
    let touch = SetAttrs { times: Some((1, 1)), ..Default::default() };
    denied(&logs, file.set_metadata(&touch).await, "times", "/up.bin");
    file.close().await.expect("close");
    let file = s.vfs().open(&p("up.bin"), read()).await.expect("download");
    assert_eq!(file.read_at(0, 100).await.expect("read"), Bytes::from_static(b"0123"));
}

#[tokio::test]
async fn removing_and_replacing_files_gives_their_quota_back() {
    let f = fixture();
    // file.txt counts 5 bytes and 1 file.
    f.store.set_quota("alice", Some(12), Some(2)).expect("quota");
    let s = login(&f).await;
    let vfs = s.vfs();
    put(vfs, &p("b.txt"), b"1234567").await.expect("12 bytes, 2 files: at the limit");
    assert!(matches!(put(vfs, &p("c.txt"), b"1").await, Err(FsError::QuotaExceeded)), "a third file");
    assert!(matches!(put(vfs, &p("b.txt"), b"12345678").await, Err(FsError::QuotaExceeded)), "13 bytes");
    assert_eq!(std::fs::read(f.home.join("b.txt")).expect("kept"), b"1234567", "the refused upload left b.txt whole");
    // A rename over a file removes that file: 1 file, 7 bytes.
    vfs.rename(&p("b.txt"), &p("file.txt"), true).await.expect("rename over");
    put(vfs, &p("c.txt"), b"12345").await.expect("room for a second file again");
    vfs.remove_file(&p("c.txt")).await.expect("delete");
    put(vfs, &p("d.txt"), b"12345").await.expect("the deleted file's room");
    // Renaming a file onto itself frees nothing.
    vfs.rename(&p("d.txt"), &p("d.txt"), true).await.expect("rename onto itself");
    assert!(matches!(put(vfs, &p("e.txt"), b"1").await, Err(FsError::QuotaExceeded)));
}

#[tokio::test]
async fn a_rate_limit_on_one_direction_slows_that_direction() {
    let f = fixture();
    // 64 KiB/s up, no limit down: 128 KiB up takes about 2 s, minus a 0.1 s burst.
    f.store.set_rates("alice", Some(Some(64 * 1024)), None).expect("rates");
    let s = login(&f).await;
    static DATA: [u8; 128 * 1024] = [7; 128 * 1024];
    let started = std::time::Instant::now();
    let file = s.vfs().open(&p("big.bin"), upload()).await.expect("open");
    for (i, chunk) in DATA.chunks(32 * 1024).enumerate() {
        file.write_at((i * 32 * 1024) as u64, Bytes::from_static(chunk)).await.expect("write");
    }
    file.close().await.expect("close");
    let up = started.elapsed();
    assert!(up >= std::time::Duration::from_millis(1400), "uploading 128 KiB at 64 KiB/s took {up:?}");
    let started = std::time::Instant::now();
    let file = s.vfs().open(&p("big.bin"), read()).await.expect("open");
    assert_eq!(file.read_at(0, 128 * 1024).await.expect("read").len(), 128 * 1024);
    assert!(started.elapsed() < std::time::Duration::from_millis(1000), "downloads are not limited");
}

#[tokio::test]
async fn any_one_write_flag_makes_an_open_a_write_and_reading_needs_download() {
    let (f, s) = with_perms("read-only").await;
    let (logs, _guard) = capture_logs();
    let vfs = s.vfs();
    let file = vfs.open(&p("file.txt"), read()).await.expect("read-only reads");
    assert_eq!(file.read_at(0, 10).await.expect("read"), Bytes::from_static(b"hello"));
    for (flag, opts) in [
        ("write", OpenOptions { write: true, ..Default::default() }),
        ("append", OpenOptions { append: true, ..Default::default() }),
        ("create", OpenOptions { create: true, ..Default::default() }),
        ("truncate", OpenOptions { truncate: true, ..Default::default() }),
    ] {
        let r = vfs.open(&p("file.txt"), opts).await;
        assert!(matches!(r, Err(FsError::PermissionDenied)), "{flag} alone is writing: {:?}", r.map(|_| ()));
    }
    assert_eq!(logs.lines_with(&["permission denied: overwrite is not allowed here"]).len(), 4, "{}", logs.text());
    assert_eq!(std::fs::read(f.home.join("file.txt")).expect("file"), b"hello");
    drop(s);

    // May write but not read: a read-write open is refused, as a download.
    let (_f, s) = with_perms("list,upload,overwrite").await;
    let (logs, _guard) = capture_logs();
    let rw = OpenOptions { read: true, write: true, ..Default::default() };
    denied(&logs, s.vfs().open(&p("file.txt"), rw).await.map(|_| ()), "download", "/file.txt");
}
