//! One SFTP session: cuts frames from the client's byte stream, runs requests in the client's order and
//! writes replies.
//!
//! Order: every request sees the effect of every request received before it, as with OpenSSH's
//! sftp-server, which answers one request at a time (lftp pipelines MKDIR a, MKDIR a/b; sshfs pipelines
//! OPEN and STAT of the same name). Only READ and WRITE on open files overlap, for speed: each file
//! has a *lane*, a task that runs its READs and WRITEs one after another in the client's order, while
//! the session goes on reading the next requests. Any other request is a barrier: it waits until every
//! READ and WRITE before it has finished, then runs alone.
//!
//! Memory is bounded whatever the client does and however slow the storage is:
//! - input is taken from the transport as it arrives, and handed back as *credit* only once its request
//!   has finished (a WRITE: once its data is on the storage); the SSH adaptor turns that credit into
//!   channel window, so a client that outruns the storage finds its window closed and waits;
//! - replies waiting to be sent are counted, and while they exceed [`SFTP_MAX_INFLIGHT_REPLY`] no new
//!   request starts: a client that does not read its replies stops being served, and then stops
//!   getting window;
//! - a client that ignores the window and sends more than [`Limits::max_buffered_input`] anyway is
//!   disconnected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

use crate::dispatch::{self, DirState, FileState, OpenHandle, PathOutcome, SessionCtx};
use crate::proto::{split_frame, Request, Response, StatusCode, MAX_OPEN_HANDLES};
use ferry_vfs::activity::{Activity, FileGuard};

/// Bytes of replies that may wait to be sent before the session stops starting new requests.
pub const SFTP_MAX_INFLIGHT_REPLY: usize = 16 * 1024 * 1024;
/// Replies smaller than this are gathered into one transport write.
const COALESCE_BELOW: usize = 16 * 1024;
const COALESCE_UP_TO: usize = 64 * 1024;

/// How much a session may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Input received but not yet consumed beyond which the client is taken to ignore flow control.
    pub max_buffered_input: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_buffered_input: 64 * 1024 * 1024 }
    }
}

/// Where replies go: an SSH channel in production, anything in tests.
#[async_trait]
pub trait ReplyWriter: Send + 'static {
    /// Sends bytes; false when the peer is gone.
    async fn write(&mut self, data: Bytes) -> bool;
    /// Called once after the last reply.
    async fn finish(&mut self);
}

/// Told how many input bytes the session has consumed, so the transport can let the client send that
/// much more (SSH: a channel window adjustment).
pub trait InputCredit: Send + Sync + 'static {
    fn consumed(&self, bytes: usize);
}

/// For transports without flow control (tests).
impl InputCredit for () {
    fn consumed(&self, _: usize) {}
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

/// READs and WRITEs handed to lanes and not finished yet.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    done: Notify,
}

impl InFlight {
    fn started(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }
    fn finished(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        // One waiter (the session): a stored permit is never lost, a spurious wake-up only re-checks.
        self.done.notify_one();
    }
    /// Resolves once every lane job handed out so far has finished.
    async fn idle(&self) {
        while self.count.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
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

/// A request for a lane, with what it holds: reply budget, and input bytes to hand back when done.
struct Job {
    req: Request,
    credit: usize,
    input: usize,
}

enum Slot {
    File(UnboundedSender<Job>),
    Dir(DirState),
}

/// Budget a request takes until its reply is written: what the reply may weigh.
fn credit_for(req: &Request) -> usize {
    match req {
        Request::Read { len, .. } => (*len).min(crate::proto::MAX_READ_LEN) as usize + 64,
        Request::Readdir { .. } => 32 * 1024,
        _ => 128,
    }
}

/// The open handles of a session and everything needed to run requests on them.
struct Session {
    ctx: Arc<SessionCtx>,
    activity: Arc<Activity>,
    out: Out,
    credit: Arc<dyn InputCredit>,
    inflight: Arc<InFlight>,
    handles: HashMap<Vec<u8>, Slot>,
    next_handle: u64,
}

/// Serves one SFTP session until the input ends or the client breaks the protocol.
pub async fn serve<W: ReplyWriter>(
    ctx: Arc<SessionCtx>,
    activity: Arc<Activity>,
    mut input: UnboundedReceiver<Bytes>,
    writer: W,
    credit: Arc<dyn InputCredit>,
    limits: Limits,
) {
    let budget = Arc::new(Budget::default());
    let (out_tx, out_rx) = unbounded_channel();
    let writer_task = tokio::spawn(write_loop(writer, out_rx, budget.clone()));
    let mut s = Session {
        ctx,
        activity,
        out: Out(out_tx),
        credit,
        inflight: Arc::default(),
        handles: HashMap::new(),
        next_handle: 1,
    };
    let mut buf = BytesMut::new();
    let mut initialized = false;
    let mut input_open = true;

    'session: loop {
        // Start every complete request the budget allows, in order; once the input has ended, finish
        // them all.
        while !budget.full() || !input_open {
            let total = match split_frame(&buf) {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(user = %s.ctx.user(), client = %s.ctx.client(), "closing SFTP session: {e}");
                    break 'session;
                }
            };
            let body = buf.split_to(total).freeze().slice(4..);
            let req = match Request::decode(body) {
                Ok(req) => req,
                Err((Some(id), e)) => {
                    tracing::warn!(user = %s.ctx.user(), client = %s.ctx.client(), "malformed SFTP request: {e}");
                    s.out.send(Response::status(id, StatusCode::BadMessage, format!("Malformed request: {e}")), 0);
                    s.credit.consumed(total);
                    continue;
                }
                Err((None, e)) => {
                    tracing::warn!(user = %s.ctx.user(), client = %s.ctx.client(), "closing SFTP session: malformed packet: {e}");
                    break 'session;
                }
            };
            if let Request::Init { version } = req {
                tracing::debug!(client = %s.ctx.client(), version, "SFTP init");
                initialized = true;
                s.out.send(Response::Version, 0);
                s.credit.consumed(total);
                continue;
            }
            if !initialized {
                tracing::warn!(user = %s.ctx.user(), client = %s.ctx.client(), "closing SFTP session: request before INIT");
                break 'session;
            }
            let credit = credit_for(&req);
            budget.take(credit);
            s.run(req, credit, total).await;
        }
        if !input_open {
            break;
        }
        tokio::select! {
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
                    if buf.len() > limits.max_buffered_input {
                        tracing::warn!(user = %s.ctx.user(), client = %s.ctx.client(),
                            "closing SFTP session: client sent more than {} MiB of requests beyond its window without reading the replies",
                            limits.max_buffered_input >> 20);
                        break 'session;
                    }
                }
                None => input_open = false,
            },
            _ = budget.freed.notified(), if budget.full() => {}
        }
    }
    // Dropping the lanes' senders lets each lane finish what it was given, then end; a file still open
    // then is an interrupted transfer, undone by its lane. The writer ends when every lane has.
    drop(s);
    let _ = writer_task.await;
}

impl Session {
    /// Runs one request: READ and WRITE go to their file's lane; anything else first waits for every
    /// READ and WRITE before it to finish.
    async fn run(&mut self, req: Request, credit: usize, input: usize) {
        let Some(handle) = req.handle().map(<[u8]>::to_vec) else {
            self.inflight.idle().await;
            // Checked before opening anything: an OPEN that starts an upload changes the directory.
            if matches!(req, Request::Open { .. } | Request::Opendir { .. })
                && self.handles.len() >= MAX_OPEN_HANDLES as usize
            {
                let id = req.id().unwrap_or(0);
                self.out.send(
                    Response::status(id, StatusCode::Failure, "Too many open files and directories in this session"),
                    credit,
                );
                self.credit.consumed(input);
                return;
            }
            let outcome = dispatch::path_request(&self.ctx, req).await;
            match outcome {
                PathOutcome::Reply(r) => self.out.send(r, credit),
                PathOutcome::Opened { id, handle } => self.opened(id, handle, credit).await,
            }
            self.credit.consumed(input);
            return;
        };
        let data_op = matches!(req, Request::Read { .. } | Request::Write { .. });
        let closing = matches!(req, Request::Close { .. });
        match self.handles.get_mut(&handle) {
            Some(Slot::File(lane)) => {
                if !data_op {
                    self.inflight.idle().await;
                }
                self.inflight.started();
                if let Err(e) = lane.send(Job { req, credit, input }) {
                    // The lane ends only after its sender is dropped, so this cannot happen while we hold
                    // the sender; if it somehow did, the client still gets an answer.
                    self.out.send(crate::status::invalid_handle(e.0.req.id().unwrap_or(0)), credit);
                    self.credit.consumed(input);
                    self.inflight.finished();
                }
                if !data_op {
                    self.inflight.idle().await;
                }
            }
            Some(Slot::Dir(_)) => {
                self.inflight.idle().await;
                let Some(Slot::Dir(dir)) = self.handles.remove(&handle) else {
                    return;
                };
                let mut slot = Some(dir);
                let r = dispatch::dir_request(&self.ctx, &mut slot, req).await;
                if let Some(dir) = slot {
                    self.handles.insert(handle.clone(), Slot::Dir(dir));
                }
                self.out.send(r, credit);
                self.credit.consumed(input);
            }
            None => {
                self.out.send(crate::status::invalid_handle(req.id().unwrap_or(0)), credit);
                self.credit.consumed(input);
            }
        }
        if closing {
            self.handles.remove(&handle);
        }
    }

    /// Registers a handle that OPEN or OPENDIR produced and answers with its name.
    async fn opened(&mut self, id: u32, handle: OpenHandle, credit: usize) {
        if self.handles.len() >= MAX_OPEN_HANDLES as usize {
            if let OpenHandle::File(f) = handle {
                dispatch::abandon(&self.ctx, f).await;
            }
            self.out.send(
                Response::status(id, StatusCode::Failure, "Too many open files and directories in this session"),
                credit,
            );
            return;
        }
        let name = self.next_handle.to_string().into_bytes();
        self.next_handle += 1;
        let slot = match handle {
            OpenHandle::File(f) => {
                let (tx, rx) = unbounded_channel();
                let lane = Lane {
                    ctx: self.ctx.clone(),
                    out: self.out.clone(),
                    credit: self.credit.clone(),
                    inflight: self.inflight.clone(),
                    _guard: FileGuard::new(&self.activity),
                };
                tokio::spawn(lane.run(f, rx));
                Slot::File(tx)
            }
            OpenHandle::Dir(d) => Slot::Dir(d),
        };
        self.handles.insert(name.clone(), slot);
        self.out.send(Response::Handle { id, handle: name }, credit);
    }
}

/// Runs the requests of one open file in order.
struct Lane {
    ctx: Arc<SessionCtx>,
    out: Out,
    credit: Arc<dyn InputCredit>,
    inflight: Arc<InFlight>,
    /// Counts the file as a transfer in progress, so a stopping server waits for it.
    _guard: FileGuard,
}

impl Lane {
    async fn run(self, file: FileState, mut jobs: UnboundedReceiver<Job>) {
        let mut slot = Some(file);
        while let Some(job) = jobs.recv().await {
            let r = dispatch::file_request(&self.ctx, &mut slot, job.req).await;
            self.out.send(r, job.credit);
            self.credit.consumed(job.input);
            self.inflight.finished();
            if slot.is_none() {
                return;
            }
        }
        if let Some(f) = slot {
            dispatch::abandon(&self.ctx, f).await;
        }
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
