//! Memory stays bounded however slow the storage is: with every write stalled, a client pushing an
//! upload as fast as it can finds its SSH window closed after about one window of data, and the upload
//! completes once the storage moves again. Regression test for WRITE data queueing without bound
//! (598 MiB held for 597 MiB sent) while russh replenished the window on receipt.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use ferry_auth::UserStore;
use ferry_sftp::{Activity, SshService, SshSettings};
use ferry_vfs::{
    DirHandle, FileHandle, FileKind, FsError, FsResult, FsStats, Metadata, OpenOptions, SetAttrs, Storage, VPath, Vfs,
};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKeyOrCertificate};
use russh::{client, ChannelMsg};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{sleep, timeout};

#[path = "support/wire.rs"]
mod wire;
use wire::*;

const WINDOW: u32 = 16 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// The upload pushed: 1 GiB as the issue asks, less in debug builds where encryption is slow.
fn total() -> u64 {
    if cfg!(debug_assertions) {
        128 << 20
    } else {
        1 << 30
    }
}

/// Storage whose writes wait until `gate` is opened, then only count bytes.
struct Stalling {
    gate: watch::Receiver<bool>,
    written: Arc<AtomicU64>,
}

impl Storage for Stalling {
    fn open_home(&self, _user: &str, _home: &Path) -> std::io::Result<Arc<dyn Vfs>> {
        Ok(Arc::new(StallingFs { gate: self.gate.clone(), written: self.written.clone() }))
    }

    fn usage(&self, _user: &str, _home: &std::path::Path) -> std::io::Result<ferry_vfs::Usage> {
        Ok(ferry_vfs::Usage::default())
    }
}

struct StallingFs {
    gate: watch::Receiver<bool>,
    written: Arc<AtomicU64>,
}

struct StallingFile {
    gate: watch::Receiver<bool>,
    written: Arc<AtomicU64>,
}

fn nope<T>() -> FsResult<T> {
    Err(FsError::Unsupported("test storage"))
}

#[async_trait]
impl Vfs for StallingFs {
    async fn metadata(&self, _: &VPath) -> FsResult<Metadata> {
        nope()
    }
    async fn symlink_metadata(&self, _: &VPath) -> FsResult<Metadata> {
        nope()
    }
    async fn open_dir(&self, _: &VPath) -> FsResult<Box<dyn DirHandle>> {
        nope()
    }
    async fn open(&self, _: &VPath, _: OpenOptions) -> FsResult<Box<dyn FileHandle>> {
        Ok(Box::new(StallingFile { gate: self.gate.clone(), written: self.written.clone() }))
    }
    async fn create_dir(&self, _: &VPath, _: Option<u32>) -> FsResult<()> {
        nope()
    }
    async fn remove_dir(&self, _: &VPath) -> FsResult<()> {
        nope()
    }
    async fn remove_file(&self, _: &VPath) -> FsResult<()> {
        nope()
    }
    async fn rename(&self, _: &VPath, _: &VPath, _: bool) -> FsResult<()> {
        nope()
    }
    async fn set_metadata(&self, _: &VPath, _: &SetAttrs) -> FsResult<()> {
        nope()
    }
    async fn read_link(&self, _: &VPath) -> FsResult<Vec<u8>> {
        nope()
    }
    async fn symlink(&self, _: &[u8], _: &VPath) -> FsResult<()> {
        nope()
    }
    async fn hard_link(&self, _: &VPath, _: &VPath) -> FsResult<()> {
        nope()
    }
    async fn canonicalize(&self, p: &VPath) -> FsResult<VPath> {
        Ok(p.clone())
    }
    async fn stats(&self, _: &VPath) -> FsResult<FsStats> {
        nope()
    }
}

#[async_trait]
impl FileHandle for StallingFile {
    async fn read_at(&self, _: u64, _: u32) -> FsResult<Bytes> {
        nope()
    }
    async fn write_at(&self, _: u64, data: Bytes) -> FsResult<()> {
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        self.written.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    async fn metadata(&self) -> FsResult<Metadata> {
        let size = self.written.load(Ordering::Relaxed);
        Ok(Metadata {
            kind: FileKind::File,
            size,
            permissions: None,
            uid: None,
            gid: None,
            atime: None,
            mtime: None,
            nlink: None,
        })
    }
    async fn set_metadata(&self, _: &SetAttrs) -> FsResult<()> {
        Ok(())
    }
    async fn sync(&self) -> FsResult<()> {
        Ok(())
    }
    async fn close(self: Box<Self>) -> FsResult<()> {
        Ok(())
    }
}

struct Client;

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Resident memory of this process (server and client together), from /proc.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_storage_closes_the_window_and_the_upload_finishes_when_it_resumes() {
    let base = std::env::temp_dir().join(format!("ferry-stall-{}-{:x}", std::process::id(), rand_u64()));
    std::fs::create_dir_all(&base).unwrap();
    let store = UserStore::open(&base.join("users.db")).unwrap();
    store.add_user("u", Some("secret password"), &base.join("home")).unwrap();
    let (gate_tx, gate) = watch::channel(false);
    let written = Arc::new(AtomicU64::new(0));
    let storage = Arc::new(Stalling { gate, written: written.clone() });
    let settings = SshSettings {
        window_size: WINDOW,
        max_packet_size: 128 * 1024,
        idle_timeout: Duration::from_secs(600),
        max_auth_attempts: 6,
        failed_login_delay: Duration::from_millis(10),
        algorithms: Default::default(),
    };
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&[9; 32]));
    let core = ferry_core::Core::new(Arc::new(store), storage, ferry_core::Events::new());
    let svc = Arc::new(SshService::new(vec![key], core, Arc::new(Activity::default()), &settings));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, peer) = listener.accept().await.unwrap();
        svc.serve_connection(tcp, peer, ferry_auth::Admission::new(Duration::from_secs(60), None)).await;
    });

    let mut client = client::connect(Arc::new(client::Config::default()), addr, Client).await.unwrap();
    assert!(client.authenticate_password("u", "secret password").await.unwrap().success());
    let channel = client.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "sftp").await.unwrap();
    let (mut read, write) = channel.split();

    // Replies: the handle from OPEN, then one status per WRITE; counted as they come.
    let (handle_tx, handle_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let statuses = Arc::new(AtomicU64::new(0));
    let counted = statuses.clone();
    tokio::spawn(async move {
        let mut handle_tx = Some(handle_tx);
        let mut buf = BytesMut::new();
        while let Some(msg) = read.wait().await {
            let ChannelMsg::Data { data } = msg else { continue };
            buf.extend_from_slice(&data);
            while buf.len() >= 4 {
                let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                if buf.len() < 4 + len {
                    break;
                }
                let frame = buf.split_to(4 + len);
                match frame[4] {
                    102 => {
                        let hlen = u32::from_be_bytes(frame[9..13].try_into().unwrap()) as usize;
                        if let Some(tx) = handle_tx.take() {
                            let _ = tx.send(frame[13..13 + hlen].to_vec());
                        }
                    }
                    101 => {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
    });

    write.data(&init()[..]).await.unwrap();
    write.data(&open_request(1, b"/big.bin", 0x1a)[..]).await.unwrap(); // WRITE | CREAT | TRUNC
    let handle = timeout(Duration::from_secs(10), handle_rx).await.unwrap().unwrap();

    // Push the whole upload without waiting for replies, as fast as the window allows.
    let sent = Arc::new(AtomicU64::new(0));
    let pushed = sent.clone();
    let total = total();
    let pusher = tokio::spawn(async move {
        let data = vec![0x5a_u8; CHUNK];
        let mut offset = 0u64;
        let mut id = 2u32;
        while offset < total {
            write.data(&handle_request(6, id, &handle, &offset_data(offset, &data))[..]).await.unwrap(); // WRITE
            offset += CHUNK as u64;
            id += 1;
            pushed.store(offset, Ordering::Relaxed);
        }
        write
    });

    // While the storage is stalled the client gets about one window through, no more, and the process
    // does not grow by what the client would like to send.
    let baseline = rss();
    sleep(Duration::from_millis(1500)).await;
    let stalled_at = sent.load(Ordering::Relaxed);
    let grown = rss().saturating_sub(baseline);
    assert!(
        stalled_at <= 3 * u64::from(WINDOW),
        "the client sent {} MiB into a stalled server with a {} MiB window",
        stalled_at >> 20,
        WINDOW >> 20
    );
    assert!(grown < 96 << 20, "memory grew by {} MiB while the storage was stalled", grown >> 20);
    assert_eq!(written.load(Ordering::Relaxed), 0);

    // The storage moves again: everything arrives.
    gate_tx.send(true).unwrap();
    let write = timeout(Duration::from_secs(120), pusher).await.expect("upload finished in time").unwrap();
    let writes = total / CHUNK as u64;
    let done = timeout(Duration::from_secs(30), async {
        while statuses.load(Ordering::Relaxed) < writes {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "only {} of {writes} WRITEs were answered", statuses.load(Ordering::Relaxed));
    assert_eq!(written.load(Ordering::Relaxed), total);
    drop(write);
    let _ = std::fs::remove_dir_all(&base);
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}
