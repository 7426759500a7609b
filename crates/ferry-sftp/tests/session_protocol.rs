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

const WAIT: Duration = Duration::from_secs(5);

const INIT: u8 = 1;
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

/// Replies as they are written; `None` once the session called `finish`.
struct Collect(UnboundedSender<Option<Bytes>>);

#[async_trait]
impl ReplyWriter for Collect {
    async fn write(&mut self, data: Bytes) -> bool {
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
    task: JoinHandle<()>,
    _root: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(limits: Limits) -> Session {
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
    let core = ferry_core::Core::new(Arc::new(store), Arc::new(LocalStorage::default()), ferry_core::Events::new());
    let client = ferry_core::Client { addr: "192.0.2.1:1".into(), ip: "192.0.2.1".parse().unwrap(), protocol: "sftp" };
    let session = core.password_login("alice", "pw", &client).await.unwrap();
    let ctx = Arc::new(SessionCtx { session: Arc::new(session) });
    let (in_tx, in_rx) = unbounded_channel();
    let (out_tx, out_rx) = unbounded_channel();
    let credit = Arc::new(Credit::default());
    let activity = Arc::new(Activity::default());
    let task = tokio::spawn(serve(ctx, activity.clone(), in_rx, Collect(out_tx), credit.clone(), limits));
    Session {
        input: Some(in_tx),
        output: out_rx,
        pending: BytesMut::new(),
        credit,
        activity,
        task,
        _root: TempDir(root),
    }
}

fn packet(kind: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + 5);
    b.put_u32(body.len() as u32 + 1);
    b.put_u8(kind);
    b.put_slice(body);
    b.freeze()
}

/// A request: id, then string fields.
fn request(kind: u8, id: u32, strings: &[&[u8]]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u32(id);
    for s in strings {
        b.put_u32(s.len() as u32);
        b.put_slice(s);
    }
    packet(kind, &b)
}

fn init() -> Bytes {
    packet(INIT, &3u32.to_be_bytes())
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
