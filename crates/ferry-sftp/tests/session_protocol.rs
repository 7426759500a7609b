//! The SFTP session loop against byte literals, without SSH: INIT first, a packet that cannot be answered
//! ends the session, one that can is answered with SSH_FX_BAD_MESSAGE and the session goes on, the input
//! bound, the handle limit, and the input credit handed back for the SSH window. The README promises
//! ("SFTP version 3", "memory per session is bounded") and OpenSSH's sftp-server behaviour they follow.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use ferry_sftp::session::{serve, InputCredit, Limits, ReplyWriter};
use ferry_sftp::{Activity, SessionCtx};
use ferry_vfs::local::LocalStorage;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::timeout;

#[path = "support/wire.rs"]
mod wire;
use wire::*;

const WAIT: Duration = Duration::from_secs(5);

const VERSION: u8 = 2;
const OPEN: u8 = 3;
const OPENDIR: u8 = 11;
const REALPATH: u8 = 16;
const STAT: u8 = 17;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const NAME: u8 = 104;

const FX_FAILURE: u32 = 4;
const FX_BAD_MESSAGE: u32 = 5;
const FX_OP_UNSUPPORTED: u32 = 8;

/// Replies as they are written; `None` once the session called `finish`. With a gate, each write first
/// waits for a permit: a client that does not read its replies.
struct Collect(UnboundedSender<Option<Bytes>>, Option<Arc<tokio::sync::Semaphore>>);

#[async_trait]
impl ReplyWriter for Collect {
    async fn write(&mut self, data: Bytes) -> bool {
        if let Some(gate) = &self.1 {
            gate.acquire().await.unwrap().forget();
        }
        self.0.send(Some(data)).is_ok()
    }
    async fn finish(&mut self) {
        let _ = self.0.send(None);
    }
}

#[derive(Default)]
struct Credit(AtomicUsize);

impl InputCredit for Credit {
    fn consumed(&self, bytes: usize) {
        self.0.fetch_add(bytes, Ordering::AcqRel);
    }
}

struct Session {
    input: Option<UnboundedSender<Bytes>>,
    output: UnboundedReceiver<Option<Bytes>>,
    pending: BytesMut,
    credit: Arc<Credit>,
    activity: Arc<Activity>,
    /// Transfers on the core's event stream: `(path, bytes read, bytes written, completed)`.
    transfers: Arc<Transfers>,
    home: std::path::PathBuf,
    task: JoinHandle<()>,
    _root: TempDir,
}

#[derive(Default)]
struct Transfers(std::sync::Mutex<Vec<(String, u64, u64, bool)>>);

impl ferry_core::TransferLog for Transfers {
    fn record(&self, t: &ferry_core::TransferRecord<'_>) {
        self.0.lock().unwrap().push((t.path.to_string(), t.bytes_read, t.bytes_written, t.completed));
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(limits: Limits) -> Session {
    start_gated(limits, None).await
}

async fn start_gated(limits: Limits, gate: Option<Arc<tokio::sync::Semaphore>>) -> Session {
    static N: AtomicUsize = AtomicUsize::new(0);
    let root = std::env::temp_dir().join(format!(
        "ferry-sftp-session-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&root).unwrap();
    // A real login through the core, so the session has the gate and events every served session has.
    let store = ferry_auth::UserStore::open(&root.join("users.db")).unwrap();
    std::fs::create_dir_all(root.join("home")).unwrap();
    store.add_user("alice", Some("pw"), &root.join("home")).unwrap();
    let transfers = Arc::new(Transfers::default());
    let events = ferry_core::Events::with_transfer_log(transfers.clone());
    let core = ferry_core::Core::new(Arc::new(store), Arc::new(LocalStorage::default()), events);
    let client = ferry_core::Client { addr: "192.0.2.1:1".into(), ip: "192.0.2.1".parse().unwrap(), protocol: "sftp" };
    let session = core.password_login("alice", "pw", &client).await.unwrap();
    let ctx = Arc::new(SessionCtx { session: Arc::new(session) });
    let (in_tx, in_rx) = unbounded_channel();
    let (out_tx, out_rx) = unbounded_channel();
    let credit = Arc::new(Credit::default());
    let activity = Arc::new(Activity::default());
    let task = tokio::spawn(serve(ctx, activity.clone(), in_rx, Collect(out_tx, gate), credit.clone(), limits));
    Session {
        input: Some(in_tx),
        output: out_rx,
        pending: BytesMut::new(),
        credit,
        activity,
        transfers,
        home: root.join("home"),
        task,
        _root: TempDir(root),
    }
}

impl Session {
    fn send(&self, bytes: Bytes) {
        self.input.as_ref().unwrap().send(bytes).unwrap();
    }

    /// The next reply packet (type, body after the type byte), or `None` when the session ended.
    async fn reply(&mut self) -> Option<(u8, Bytes)> {
        loop {
            if self.pending.len() >= 4 {
                let len = u32::from_be_bytes(self.pending[..4].try_into().unwrap()) as usize;
                if self.pending.len() >= 4 + len {
                    let frame = self.pending.split_to(4 + len).freeze();
                    return Some((frame[4], frame.slice(5..)));
                }
            }
            match timeout(WAIT, self.output.recv()).await.expect("a reply or the end of the session in time") {
                Some(Some(chunk)) => self.pending.extend_from_slice(&chunk),
                Some(None) | None => {
                    assert!(self.pending.is_empty(), "the session ended inside a reply");
                    return None;
                }
            }
        }
    }

    async fn status(&mut self) -> (u32, u32) {
        let (kind, body) = self.reply().await.expect("a reply");
        assert_eq!(kind, STATUS, "{body:?}");
        (u32::from_be_bytes(body[..4].try_into().unwrap()), u32::from_be_bytes(body[4..8].try_into().unwrap()))
    }

    async fn initialised(mut self) -> Session {
        self.send(init());
        let (kind, body) = self.reply().await.expect("VERSION");
        assert_eq!(kind, VERSION);
        assert_eq!(&body[..4], &3u32.to_be_bytes(), "SFTP version 3");
        self
    }

    /// The session ends on its own, without answering anything more.
    async fn ends(mut self) {
        assert_eq!(self.reply().await.map(|(k, _)| k), None, "the session answered instead of ending");
        timeout(WAIT, &mut self.task).await.expect("the session task ends").unwrap();
    }
}

fn realpath_root(id: u32) -> Bytes {
    request(REALPATH, id, &[b"/"])
}

async fn assert_goes_on(s: &mut Session, id: u32) {
    s.send(realpath_root(id));
    let (kind, body) = s.reply().await.expect("the session goes on");
    assert_eq!((kind, &body[..4]), (NAME, &id.to_be_bytes()[..]));
}

#[tokio::test]
async fn version_3_with_the_openssh_extensions() {
    let mut s = start(Limits::default()).await;
    s.send(init());
    let (kind, body) = s.reply().await.unwrap();
    assert_eq!(kind, VERSION);
    let text = String::from_utf8_lossy(&body);
    for ext in ["posix-rename@openssh.com", "statvfs@openssh.com", "limits@openssh.com", "expand-path@openssh.com"] {
        assert!(text.contains(ext), "{ext} not announced");
    }
    assert_goes_on(&mut s, 1).await;
}

#[tokio::test]
async fn a_request_before_init_ends_the_session() {
    let s = start(Limits::default()).await;
    s.send(realpath_root(1));
    s.ends().await;
}

#[tokio::test]
async fn a_packet_without_a_request_id_ends_the_session() {
    let s = start(Limits::default()).await.initialised().await;
    s.send(packet(STAT, &[0, 0]));
    s.ends().await;
}

#[tokio::test]
async fn a_packet_of_length_zero_or_over_the_limit_ends_the_session() {
    let s = start(Limits::default()).await.initialised().await;
    s.send(Bytes::from_static(&[0, 0, 0, 0]));
    s.ends().await;
    let s = start(Limits::default()).await.initialised().await;
    s.send(Bytes::from_static(&[0, 4, 0, 1])); // 256 KiB + 1
    s.ends().await;
}

#[tokio::test]
async fn a_malformed_request_with_an_id_gets_bad_message_and_the_session_goes_on() {
    let mut s = start(Limits::default()).await.initialised().await;
    // OPEN id 77 whose file name claims 255 bytes the packet does not hold.
    let mut body = BytesMut::new();
    body.put_u32(77);
    body.put_u32(255);
    s.send(packet(OPEN, &body));
    assert_eq!(s.status().await, (77, FX_BAD_MESSAGE));
    assert_goes_on(&mut s, 78).await;
    // An unknown type with an id: unsupported, and the session goes on.
    s.send(request(99, 79, &[]));
    assert_eq!(s.status().await, (79, FX_OP_UNSUPPORTED));
    assert_goes_on(&mut s, 80).await;
}

#[tokio::test]
async fn requests_split_across_chunks_and_several_in_one_chunk() {
    let mut s = start(Limits::default()).await.initialised().await;
    let two = [realpath_root(5), realpath_root(6)].concat();
    let (a, b) = two.split_at(7);
    s.send(Bytes::copy_from_slice(a));
    s.send(Bytes::copy_from_slice(b));
    for id in [5u32, 6] {
        let (kind, body) = s.reply().await.unwrap();
        assert_eq!((kind, &body[..4]), (NAME, &id.to_be_bytes()[..]));
    }
}

#[tokio::test]
async fn input_is_handed_back_as_credit_once_consumed() {
    let mut s = start(Limits::default()).await.initialised().await;
    assert_goes_on(&mut s, 1).await;
    let sent = init().len() + realpath_root(1).len();
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.credit.0.load(Ordering::Acquire) < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(s.credit.0.load(Ordering::Acquire), sent, "every byte consumed is credited, once");
}

#[tokio::test]
async fn a_client_that_sends_past_its_window_is_disconnected() {
    let s = start(Limits { max_buffered_input: 64 * 1024 }).await.initialised().await;
    // A packet announced at 200 KiB (under the packet limit) whose bytes keep coming: more than the bound
    // of unconsumed input is held, so the session ends instead of buffering on.
    let mut big = BytesMut::new();
    big.put_u32(200 * 1024);
    big.put_slice(&vec![0u8; 100 * 1024]);
    s.send(big.freeze());
    s.ends().await;
}

#[tokio::test]
async fn an_open_file_counts_as_a_running_transfer_until_closed() {
    let mut s = start(Limits::default()).await.initialised().await;
    let mut body = BytesMut::new();
    body.put_u32(1);
    body.put_u32(6);
    body.put_slice(b"/f.txt");
    body.put_u32(0x1a); // WRITE | CREAT | TRUNC
    body.put_u32(0); // no attributes
    s.send(packet(OPEN, &body));
    let (kind, reply) = s.reply().await.unwrap();
    assert_eq!(kind, HANDLE);
    assert_eq!(s.activity.open_files(), 1, "a stopping server must wait for this upload");
    let handle = reply.slice(8..);
    s.send(request(4, 2, &[&handle])); // CLOSE
    assert_eq!(s.status().await, (2, 0));
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.activity.open_files() != 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(s.activity.open_files(), 0);
    drop(s.input.take());
    s.ends().await;
}

#[tokio::test]
async fn handles_are_limited_per_session() {
    let mut s = start(Limits::default()).await.initialised().await;
    let limit = ferry_sftp::proto::MAX_OPEN_HANDLES;
    for id in 0..limit {
        s.send(request(OPENDIR, id, &[b"/"]));
    }
    for id in 0..limit {
        let (kind, body) = s.reply().await.unwrap();
        assert_eq!((kind, &body[..4]), (HANDLE, &id.to_be_bytes()[..]), "OPENDIR {id} of {limit}");
    }
    s.send(request(OPENDIR, limit, &[b"/"]));
    assert_eq!(s.status().await, (limit, FX_FAILURE), "one handle past the limit");
    assert_goes_on(&mut s, limit + 1).await;
}

const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const READDIR: u8 = 12;
const MKDIR: u8 = 14;
const DATA: u8 = 103;
const FX_OK: u32 = 0;
const FX_EOF: u32 = 1;
const ATTRS: u8 = 105;

/// A path, then attributes with only the permissions (as OpenSSH sends them: with the file-type bits).
fn path_and_mode(path: &[u8], mode: Option<u32>) -> BytesMut {
    let mut b = BytesMut::new();
    string(&mut b, path);
    match mode {
        Some(m) => {
            b.put_u32(0x4);
            b.put_u32(m);
        }
        None => b.put_u32(0),
    }
    b
}

impl Session {
    async fn handle(&mut self, id: u32) -> Bytes {
        let (kind, body) = self.reply().await.expect("a reply");
        assert_eq!((kind, &body[..4]), (HANDLE, &id.to_be_bytes()[..]), "{body:?}");
        body.slice(8..)
    }

    async fn open(&mut self, id: u32, path: &[u8], pflags: u32, mode: Option<u32>) -> Bytes {
        let mut fields = BytesMut::new();
        string(&mut fields, path);
        fields.put_u32(pflags);
        fields.put_slice(&path_and_mode(b"", mode)[4..]);
        self.send(raw_request(OPEN, id, &fields));
        self.handle(id).await
    }

    async fn on_handle(&mut self, kind: u8, id: u32, handle: &[u8], rest: &[u8]) {
        self.send(handle_request(kind, id, handle, rest));
    }

    async fn close(&mut self, id: u32, handle: &[u8]) {
        self.on_handle(CLOSE, id, handle, &[]).await;
        assert_eq!(self.status().await, (id, FX_OK));
    }
}

#[tokio::test]
async fn transfers_are_recorded_at_close_and_a_file_opened_for_nothing_is_not() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = start(Limits::default()).await.initialised().await;
    // WRITE | CREAT | TRUNC, mode 0100600 as OpenSSH's put sends it.
    let h = s.open(1, b"up.txt", 0x2 | 0x8 | 0x10, Some(0o100600)).await;
    s.on_handle(WRITE, 2, &h, &offset_data(0, b"hello")).await;
    assert_eq!(s.status().await, (2, FX_OK));
    s.close(3, &h).await;
    assert_eq!(std::fs::read(s.home.join("up.txt")).unwrap(), b"hello");
    let mode = std::fs::metadata(s.home.join("up.txt")).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600, "the mode asked for, without the file-type bits");
    // Neither READ nor WRITE: OpenSSH's sftp-server opens for reading.
    let h = s.open(4, b"up.txt", 0, None).await;
    s.on_handle(READ, 5, &h, &offset_len(0, 100)).await;
    let (kind, body) = s.reply().await.unwrap();
    assert_eq!((kind, &body[..4], &body[8..]), (DATA, &5u32.to_be_bytes()[..], &b"hello"[..]));
    s.on_handle(READ, 6, &h, &offset_len(5, 100)).await;
    assert_eq!(s.status().await, (6, FX_EOF));
    s.close(7, &h).await;
    let h = s.open(8, b"up.txt", 0x1, None).await;
    s.close(9, &h).await;
    let got = s.transfers.0.lock().unwrap().clone();
    let up = || "/up.txt".to_string();
    assert_eq!(got, vec![(up(), 0, 5, true), (up(), 5, 0, true)], "the empty open is not a transfer");
    // MKDIR with attributes: the permission bits only.
    s.send(raw_request(MKDIR, 10, &path_and_mode(b"d", Some(0o40700))));
    assert_eq!(s.status().await, (10, FX_OK));
    assert_eq!(std::fs::metadata(s.home.join("d")).unwrap().permissions().mode() & 0o7777, 0o700);
}

#[tokio::test]
async fn directory_listings_show_the_user_as_owner_and_recent_files_with_their_time() {
    let mut s = start(Limits::default()).await.initialised().await;
    std::fs::write(s.home.join("new.txt"), b"n").unwrap();
    let old = std::fs::File::create(s.home.join("old.txt")).unwrap();
    old.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000)).unwrap(); // 2001-09-09
    drop(old);
    s.send(request(OPENDIR, 1, &[b"/"]));
    let h = s.handle(1).await;
    s.on_handle(READDIR, 2, &h, &[]).await;
    let (kind, body) = s.reply().await.unwrap();
    assert_eq!(kind, NAME);
    let listed = names(&body);
    let line = |name: &str| {
        let (_, long) = listed.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} in {listed:?}"));
        long.clone()
    };
    let new = line("new.txt");
    assert!(new.contains(" alice    alice "), "owner and group are the user: {new:?}");
    assert!(new.contains(':'), "modified now: shown with its time, not its year: {new:?}");
    let old = line("old.txt");
    assert!(old.ends_with(" 2001 old.txt"), "an old file shows its year: {old:?}");
    s.on_handle(READDIR, 3, &h, &[]).await;
    assert_eq!(s.status().await, (3, FX_EOF), "then the end of the directory");
}

/// The `(name, longname)` pairs of a NAME reply's body (after the type byte).
fn names(body: &[u8]) -> Vec<(String, String)> {
    fn u32_at(b: &[u8], at: &mut usize) -> u32 {
        let v = u32::from_be_bytes(b[*at..*at + 4].try_into().unwrap());
        *at += 4;
        v
    }
    fn string_at(b: &[u8], at: &mut usize) -> String {
        let len = u32_at(b, at) as usize;
        let s = String::from_utf8_lossy(&b[*at..*at + len]).into_owned();
        *at += len;
        s
    }
    let mut at = 4; // the id
    let count = u32_at(body, &mut at);
    (0..count)
        .map(|_| {
            let (name, long) = (string_at(body, &mut at), string_at(body, &mut at));
            let flags = u32_at(body, &mut at);
            // size (8), uid and gid (8), permissions (4), atime and mtime (8); no extended attributes.
            at += [(0x1, 8), (0x2, 8), (0x4, 4), (0x8, 8)]
                .iter()
                .filter(|(f, _)| flags & f != 0)
                .map(|(_, n)| n)
                .sum::<usize>();
            (name, long)
        })
        .collect()
}

#[tokio::test]
async fn an_upload_open_when_the_connection_ends_is_undone_and_recorded_as_cut_off() {
    let mut s = start(Limits::default()).await.initialised().await;
    std::fs::write(s.home.join("keep.txt"), b"previous").unwrap();
    let h = s.open(1, b"keep.txt", 0x2 | 0x8 | 0x10, None).await;
    s.on_handle(WRITE, 2, &h, &offset_data(0, b"half an upl")).await;
    assert_eq!(s.status().await, (2, FX_OK));
    // A reader that never closes its file is cut off too, and one that read nothing is no transfer.
    let idle = s.open(3, b"keep.txt", 0x1, None).await;
    drop(idle);
    let reader = s.open(4, b"keep.txt", 0x1, None).await;
    s.on_handle(READ, 5, &reader, &offset_len(0, 100)).await;
    assert_eq!(s.reply().await.unwrap().0, DATA);
    drop(s.input.take());
    assert_eq!(s.reply().await.map(|(k, _)| k), None, "the session ends");
    timeout(WAIT, &mut s.task).await.expect("the session task ends").unwrap();
    assert_eq!(std::fs::read(s.home.join("keep.txt")).unwrap(), b"previous", "the upload was undone");
    let mut cut = s.transfers.0.lock().unwrap().clone();
    cut.sort();
    // (The reader read the upload in progress: the default upload mode shows it while it is written.)
    assert_eq!(cut, vec![("/keep.txt".to_string(), 0, 11, false), ("/keep.txt".to_string(), 11, 0, false)]);
}

#[tokio::test]
async fn a_request_on_a_path_waits_for_the_writes_sent_before_it() {
    let mut s = start(Limits::default()).await.initialised().await;
    // WRITE | CREAT without TRUNC: writes go in place, so STAT of the name sees them.
    let h = s.open(1, b"inplace.bin", 0x2 | 0x8, None).await;
    let mut pipelined: Vec<Bytes> = (0..8u64)
        .map(|i| handle_request(WRITE, 10 + i as u32, &h, &offset_data(i * 32 * 1024, &[b'x'; 32 * 1024])))
        .collect();
    pipelined.push(request(STAT, 20, &[b"inplace.bin"]));
    s.send(Bytes::from(pipelined.concat()));
    for id in 10..18 {
        assert_eq!(s.status().await, (id, FX_OK));
    }
    let (kind, body) = s.reply().await.unwrap();
    assert_eq!((kind, &body[..4]), (ATTRS, &20u32.to_be_bytes()[..]));
    // Attributes: flags, then the size first.
    assert_eq!(u64::from_be_bytes(body[8..16].try_into().unwrap()), 8 * 32 * 1024, "STAT saw every WRITE before it");
    s.close(21, &h).await;
}

#[tokio::test]
async fn replies_a_client_does_not_read_stop_new_requests_at_the_budget() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let s = start_gated(Limits::default(), Some(gate.clone())).await;
    std::fs::write(s.home.join("small.txt"), b"small").unwrap();
    gate.add_permits(2); // VERSION and HANDLE
    let mut s = s.initialised().await;
    let h = s.open(1, b"small.txt", 0x1, None).await;
    // 100 READs of the largest size each reserve what their reply may weigh (256 KiB): 16 MiB of replies
    // waiting is about 64 of them, and the writer is stuck on the first.
    let reads: Vec<Bytes> = (0..100u32)
        .map(|i| handle_request(READ, 100 + i, &h, &offset_len(0, ferry_sftp::proto::MAX_READ_LEN)))
        .collect();
    let one = reads[0].len();
    let before = s.credit.0.load(Ordering::Acquire);
    s.send(Bytes::from(reads.concat()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = (s.credit.0.load(Ordering::Acquire) - before) / one;
    let budget = ferry_sftp::session::SFTP_MAX_INFLIGHT_REPLY / ferry_sftp::proto::MAX_READ_LEN as usize;
    assert!(
        (budget - 2..=budget + 2).contains(&started),
        "{started} READs started with replies waiting; the budget holds about {budget}"
    );
    // Once the client reads, the rest runs: the budget is given back as replies go out.
    gate.add_permits(1000);
    for id in 100..200u32 {
        let (kind, body) = s.reply().await.expect("every READ is answered");
        assert_eq!((kind, &body[..4]), (DATA, &id.to_be_bytes()[..]));
    }
}
