//! One SFTP session: cuts frames from the client's byte stream, runs requests and writes replies.
//!
//! Three kinds of task, so that reading input never waits for anything slow:
//! - the reader (this module's [`serve`]) only parses and routes; it must keep draining the transport's
//!   input, because a transport that cannot deliver stalls the whole SSH connection;
//! - requests on a handle go to that handle's *lane*, a task that runs them one after another, so the
//!   order of reads, writes and the close on one file is the client's order; different handles and
//!   path requests (stat, mkdir, ...) run concurrently;
//! - the writer sends replies and coalesces small ones into one transport write.
//!
//! Memory is bounded without ever blocking the reader on the writer: the bytes of replies in flight are
//! counted, and while they exceed [`SFTP_MAX_INFLIGHT_REPLY`] the reader keeps buffering raw input
//! (up to [`SFTP_MAX_QUEUED_INPUT`]) instead of starting new requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

use crate::dispatch::{self, OpenHandle, PathOutcome, SessionCtx};
use crate::proto::{split_frame, Request, Response, StatusCode, MAX_OPEN_HANDLES};
use ferry_vfs::activity::{Activity, FileGuard};

/// See the module comment. Kept here rather than in ferry-config so that the codec crate stands alone.
pub const SFTP_MAX_INFLIGHT_REPLY: usize = 16 * 1024 * 1024;
pub const SFTP_MAX_QUEUED_INPUT: usize = 64 * 1024 * 1024;
/// Replies smaller than this are gathered into one transport write.
const COALESCE_BELOW: usize = 16 * 1024;
const COALESCE_UP_TO: usize = 64 * 1024;

/// Where replies go: an SSH channel in production, anything in tests.
#[async_trait]
pub trait ReplyWriter: Send + 'static {
    /// Sends bytes; false when the peer is gone.
    async fn write(&mut self, data: Bytes) -> bool;
    /// Called once after the last reply.
    async fn finish(&mut self);
}

#[derive(Default)]
struct Budget {
    used: AtomicUsize,
    freed: Notify,
}

impl Budget {
    fn full(&self) -> bool {
        self.used.load(Ordering::Acquire) >= SFTP_MAX_INFLIGHT_REPLY
    }
    fn take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }
    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.freed.notify_one();
    }
}

/// A reply and the budget its request took.
struct Outgoing {
    bytes: Bytes,
    credit: usize,
}

#[derive(Clone)]
struct Out(UnboundedSender<Outgoing>);

impl Out {
    fn send(&self, r: Response, credit: usize) {
        // A closed writer means the client is gone; the reply has nowhere to go.
        let _ = self.0.send(Outgoing { bytes: r.encode(), credit });
    }
}

struct Job {
    req: Request,
    credit: usize,
}

struct Opened {
    id: u32,
    handle: OpenHandle,
    credit: usize,
}

/// Budget a request takes until its reply is written: what the reply may weigh.
fn credit_for(req: &Request) -> usize {
    match req {
        Request::Read { len, .. } => (*len).min(crate::proto::MAX_READ_LEN) as usize + 64,
        Request::Readdir { .. } => 32 * 1024,
        _ => 128,
    }
}

/// Serves one SFTP session until the input ends or the client breaks the protocol.
pub async fn serve<W: ReplyWriter>(
    ctx: Arc<SessionCtx>,
    activity: Arc<Activity>,
    mut input: UnboundedReceiver<Bytes>,
    writer: W,
) {
    let budget = Arc::new(Budget::default());
    let (out_tx, out_rx) = unbounded_channel();
    let writer_task = tokio::spawn(write_loop(writer, out_rx, budget.clone()));
    let out = Out(out_tx);
    let (opened_tx, mut opened_rx) = unbounded_channel::<Opened>();
    let mut lanes: HashMap<Vec<u8>, UnboundedSender<Job>> = HashMap::new();
    let mut next_handle: u64 = 1;
    let mut buf = BytesMut::new();
    let mut initialized = false;
    let mut input_open = true;

    'session: loop {
        // Start every complete request the budget allows; once the input has ended, finish them all.
        while !budget.full() || !input_open {
            let total = match split_frame(&buf) {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(user = %ctx.user, client = %ctx.client, "closing SFTP session: {e}");
                    break 'session;
                }
            };
            let body = buf.split_to(total).freeze().slice(4..);
            let req = match Request::decode(body) {
                Ok(req) => req,
                Err((Some(id), e)) => {
                    tracing::warn!(user = %ctx.user, client = %ctx.client, "malformed SFTP request: {e}");
                    out.send(Response::status(id, StatusCode::BadMessage, format!("Malformed request: {e}")), 0);
                    continue;
                }
                Err((None, e)) => {
                    tracing::warn!(user = %ctx.user, client = %ctx.client, "closing SFTP session: malformed packet: {e}");
                    break 'session;
                }
            };
            if let Request::Init { version } = req {
                tracing::debug!(client = %ctx.client, version, "SFTP init");
                initialized = true;
                out.send(Response::Version, 0);
                continue;
            }
            if !initialized {
                tracing::warn!(user = %ctx.user, client = %ctx.client, "closing SFTP session: request before INIT");
                break 'session;
            }
            let credit = credit_for(&req);
            budget.take(credit);
            route(&ctx, req, credit, &mut lanes, &out, &opened_tx);
        }
        if !input_open {
            break;
        }
        tokio::select! {
            Some(op) = opened_rx.recv() => {
                if lanes.len() >= MAX_OPEN_HANDLES as usize {
                    dispatch::abandon(&ctx, op.handle);
                    out.send(Response::status(op.id, StatusCode::Failure, "Too many open files and directories in this session"), op.credit);
                    continue;
                }
                let name = next_handle.to_string().into_bytes();
                next_handle += 1;
                let (tx, rx) = unbounded_channel();
                let guard = matches!(op.handle, OpenHandle::File(_)).then(|| FileGuard::new(&activity));
                tokio::spawn(lane(ctx.clone(), op.handle, rx, out.clone(), guard));
                lanes.insert(name.clone(), tx);
                out.send(Response::Handle { id: op.id, handle: name }, op.credit);
            }
            chunk = input.recv() => match chunk {
                Some(chunk) => {
                    // Usually the buffer is empty between packets: then take the chunk as it is, and
                    // WRITE data is sliced out of it without another copy.
                    if buf.is_empty() {
                        match chunk.try_into_mut() {
                            Ok(owned) => buf = owned,
                            Err(shared) => buf.extend_from_slice(&shared),
                        }
                    } else {
                        buf.extend_from_slice(&chunk);
                    }
                    if buf.len() > SFTP_MAX_QUEUED_INPUT {
                        tracing::warn!(user = %ctx.user, client = %ctx.client,
                            "closing SFTP session: client sent more than {} MiB of requests without reading the replies",
                            SFTP_MAX_QUEUED_INPUT >> 20);
                        break 'session;
                    }
                }
                None => input_open = false,
            },
            _ = budget.freed.notified(), if budget.full() => {}
        }
    }
    // Dropping the lanes' senders lets each lane finish what it was given, then end; a file still open
    // then is an interrupted transfer and is abandoned by its lane.
    drop(lanes);
    drop(opened_tx);
    while let Ok(op) = opened_rx.try_recv() {
        dispatch::abandon(&ctx, op.handle);
    }
    drop(out);
    let _ = writer_task.await;
}

fn route(
    ctx: &Arc<SessionCtx>,
    req: Request,
    credit: usize,
    lanes: &mut HashMap<Vec<u8>, UnboundedSender<Job>>,
    out: &Out,
    opened: &UnboundedSender<Opened>,
) {
    if let Some(handle) = req.handle() {
        let closing = matches!(req, Request::Close { .. });
        let id = req.id().unwrap_or(0);
        let handle = handle.to_vec();
        match lanes.get(&handle) {
            Some(lane) => {
                // The lane ends only after its sender is dropped, so this send cannot fail while we
                // hold the sender; if it somehow did, the client still gets an answer.
                if let Err(e) = lane.send(Job { req, credit }) {
                    out.send(crate::status::invalid_handle(e.0.req.id().unwrap_or(0)), credit);
                }
            }
            None => out.send(crate::status::invalid_handle(id), credit),
        }
        if closing {
            lanes.remove(&handle);
        }
        return;
    }
    let ctx = ctx.clone();
    let out = out.clone();
    let opened = opened.clone();
    tokio::spawn(async move {
        match dispatch::path_request(&ctx, req).await {
            PathOutcome::Reply(r) => out.send(r, credit),
            PathOutcome::Opened { id, handle } => {
                if let Err(e) = opened.send(Opened { id, handle, credit }) {
                    // The session ended while the open ran: nobody will use this handle.
                    dispatch::abandon(&ctx, e.0.handle);
                }
            }
        }
    });
}

async fn lane(
    ctx: Arc<SessionCtx>,
    handle: OpenHandle,
    mut jobs: UnboundedReceiver<Job>,
    out: Out,
    _guard: Option<FileGuard>,
) {
    let mut slot = Some(handle);
    while let Some(job) = jobs.recv().await {
        let r = dispatch::handle_request(&ctx, &mut slot, job.req).await;
        out.send(r, job.credit);
        if slot.is_none() {
            return;
        }
    }
    if let Some(h) = slot {
        dispatch::abandon(&ctx, h);
    }
}

async fn write_loop<W: ReplyWriter>(mut w: W, mut rx: UnboundedReceiver<Outgoing>, budget: Arc<Budget>) {
    let mut carry: Option<Outgoing> = None;
    loop {
        let first = match carry.take() {
            Some(o) => o,
            None => match rx.recv().await {
                Some(o) => o,
                None => break,
            },
        };
        let mut credit = first.credit;
        let data = if first.bytes.len() >= COALESCE_BELOW {
            first.bytes
        } else {
            let mut acc = BytesMut::from(&first.bytes[..]);
            while acc.len() < COALESCE_UP_TO {
                match rx.try_recv() {
                    Ok(o) if o.bytes.len() < COALESCE_BELOW => {
                        acc.extend_from_slice(&o.bytes);
                        credit += o.credit;
                    }
                    Ok(o) => {
                        carry = Some(o);
                        break;
                    }
                    Err(_) => break,
                }
            }
            acc.freeze()
        };
        let alive = w.write(data).await;
        budget.give(credit);
        if !alive {
            // Keep draining so senders never pile up replies for a dead peer.
            while let Some(o) = rx.recv().await {
                budget.give(o.credit);
            }
            break;
        }
    }
    w.finish().await;
}
