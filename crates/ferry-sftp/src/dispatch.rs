//! What each request does, in terms of the [`Vfs`] trait. No sockets here: the session loop
//! ([`crate::session`]) decides what runs when, this module decides what a request means.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ferry_vfs::{DirEntry, FileHandle, FsError, OpenOptions, VPath, Vfs};

use crate::attrs_map::{to_attrs, to_set_attrs};
use crate::proto::{Extended, OpenFlags, Request, Response, StatusCode, StatvfsReply};
use crate::proto::{MAX_OPEN_HANDLES, MAX_PACKET_LEN, MAX_READ_LEN, READDIR_BATCH};
use crate::status::fs_error;

/// Who the session serves, shared by all its tasks.
pub struct SessionCtx {
    pub vfs: Arc<dyn Vfs>,
    pub user: String,
    /// The client's address, for log lines.
    pub client: String,
    /// The protocol name in log lines ("sftp").
    pub protocol: &'static str,
}

/// An open handle: a file being transferred or a directory being listed.
pub(crate) enum OpenHandle {
    File(FileState),
    Dir(DirState),
}

pub(crate) struct FileState {
    pub(crate) file: Box<dyn FileHandle>,
    pub(crate) path: VPath,
    pub(crate) opened: Instant,
    pub(crate) read: u64,
    pub(crate) written: u64,
}

pub(crate) struct DirState {
    pub(crate) path: VPath,
    pub(crate) entries: VecDeque<DirEntry>,
}

/// What a request without a handle produced: a reply, or a new handle for the session to register.
pub(crate) enum PathOutcome {
    Reply(Response),
    Opened { id: u32, handle: OpenHandle },
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Client paths are resolved against the virtual root: SFTP has no working directory on the server
/// side, and clients ask REALPATH(".") to learn theirs, which is `/`.
fn vpath(p: &[u8]) -> Result<VPath, FsError> {
    VPath::checked(&VPath::root(), p).ok_or(FsError::InvalidPath)
}

fn reply(id: u32, r: Result<Response, FsError>) -> Response {
    r.unwrap_or_else(|e| fs_error(id, &e))
}

fn ok_or_err(id: u32, r: Result<(), FsError>) -> Response {
    match r {
        Ok(()) => Response::ok(id),
        Err(e) => fs_error(id, &e),
    }
}

fn single_name(id: u32, path: &VPath) -> Response {
    let name = path.as_bytes().to_vec();
    Response::Name { id, entries: vec![(name.clone(), name, Default::default())] }
}

fn statvfs_reply(id: u32, s: ferry_vfs::FsStats) -> Response {
    let r = StatvfsReply {
        bsize: s.block_size,
        frsize: s.fragment_size,
        blocks: s.blocks,
        bfree: s.blocks_free,
        bavail: s.blocks_available,
        files: s.files,
        ffree: s.files_free,
        favail: s.files_available,
        fsid: s.fs_id,
        flag: s.flags,
        namemax: s.name_max,
    };
    Response::ExtendedReply { id, data: r.encode() }
}

/// A symlink target given as an absolute virtual path is stored relative to the link's directory, so
/// that it points inside the user's root both for Ferry and for anything else reading the disk.
fn link_target(link: &VPath, target: &[u8]) -> Vec<u8> {
    if !target.starts_with(b"/") {
        return target.to_vec();
    }
    let target = VPath::resolve(&VPath::root(), target);
    let depth = link.parent().components().count();
    let mut out = Vec::new();
    for _ in 0..depth {
        out.extend_from_slice(b"../");
    }
    let rel = &target.as_bytes()[1..];
    if rel.is_empty() {
        out.push(b'.');
    } else {
        out.extend_from_slice(rel);
    }
    out
}

/// `~` and `~/x` mean the user's root; `~name` only the user's own name.
fn expand_tilde(user: &str, path: &[u8]) -> Result<Vec<u8>, FsError> {
    let Some(rest) = path.strip_prefix(b"~") else {
        return Ok(path.to_vec());
    };
    let (name, tail) = match rest.iter().position(|b| *b == b'/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, &b""[..]),
    };
    if !name.is_empty() && name != user.as_bytes() {
        return Err(FsError::NotFound);
    }
    Ok(if tail.is_empty() { b"/".to_vec() } else { tail.to_vec() })
}

pub(crate) async fn path_request(ctx: &SessionCtx, req: Request) -> PathOutcome {
    use PathOutcome::Reply;
    let vfs = &*ctx.vfs;
    match req {
        Request::Open { id, path, flags, attrs } => {
            let result = async {
                let path = vpath(&path)?;
                let opts = OpenOptions {
                    // A client that sets neither bit wants to read, as OpenSSH assumes.
                    read: flags.has(OpenFlags::READ) || !flags.has(OpenFlags::WRITE),
                    write: flags.has(OpenFlags::WRITE),
                    append: flags.has(OpenFlags::APPEND),
                    create: flags.has(OpenFlags::CREAT),
                    truncate: flags.has(OpenFlags::TRUNC),
                    exclusive: flags.has(OpenFlags::EXCL),
                    mode: attrs.permissions.map(|p| p & 0o7777),
                };
                let file = vfs.open(&path, opts).await?;
                Ok::<_, FsError>(OpenHandle::File(FileState {
                    file,
                    path,
                    opened: Instant::now(),
                    read: 0,
                    written: 0,
                }))
            }
            .await;
            match result {
                Ok(handle) => PathOutcome::Opened { id, handle },
                Err(e) => Reply(fs_error(id, &e)),
            }
        }
        Request::Opendir { id, path } => {
            let result = async {
                let path = vpath(&path)?;
                let entries = vfs.read_dir(&path).await?;
                Ok::<_, FsError>(OpenHandle::Dir(DirState { path, entries: entries.into() }))
            }
            .await;
            match result {
                Ok(handle) => PathOutcome::Opened { id, handle },
                Err(e) => Reply(fs_error(id, &e)),
            }
        }
        Request::Lstat { id, path } => Reply(reply(
            id,
            async {
                let m = vfs.symlink_metadata(&vpath(&path)?).await?;
                Ok(Response::Attrs { id, attrs: to_attrs(&m) })
            }
            .await,
        )),
        Request::Stat { id, path } => Reply(reply(
            id,
            async {
                let m = vfs.metadata(&vpath(&path)?).await?;
                Ok(Response::Attrs { id, attrs: to_attrs(&m) })
            }
            .await,
        )),
        Request::Setstat { id, path, attrs }
        | Request::Extended { id, request: Extended::Lsetstat { path, attrs } } => {
            Reply(ok_or_err(id, async { vfs.set_metadata(&vpath(&path)?, &to_set_attrs(&attrs)).await }.await))
        }
        Request::Remove { id, path } => Reply(ok_or_err(id, async { vfs.remove_file(&vpath(&path)?).await }.await)),
        Request::Mkdir { id, path, attrs } => Reply(ok_or_err(
            id,
            async { vfs.create_dir(&vpath(&path)?, attrs.permissions.map(|p| p & 0o7777)).await }.await,
        )),
        Request::Rmdir { id, path } => Reply(ok_or_err(id, async { vfs.remove_dir(&vpath(&path)?).await }.await)),
        Request::Realpath { id, path } => Reply(reply(
            id,
            async {
                let canon = vfs.canonicalize(&vpath(&path)?).await?;
                Ok(single_name(id, &canon))
            }
            .await,
        )),
        Request::Rename { id, from, to } => {
            Reply(ok_or_err(id, async { vfs.rename(&vpath(&from)?, &vpath(&to)?, false).await }.await))
        }
        Request::Readlink { id, path } => Reply(reply(
            id,
            async {
                let target = vfs.read_link(&vpath(&path)?).await?;
                Ok(Response::Name { id, entries: vec![(target.clone(), target, Default::default())] })
            }
            .await,
        )),
        Request::Symlink { id, target, link } => Reply(ok_or_err(
            id,
            async {
                let link = vpath(&link)?;
                if target.contains(&0) {
                    return Err(FsError::InvalidPath);
                }
                vfs.symlink(&link_target(&link, &target), &link).await
            }
            .await,
        )),
        Request::Extended { id, request } => Reply(extended(ctx, id, request).await),
        Request::Init { .. } => Reply(Response::status(0, StatusCode::BadMessage, "INIT sent twice")),
        Request::Unknown { id, kind } => Reply(Response::status(
            id.unwrap_or(0),
            StatusCode::OpUnsupported,
            format!("Request type {kind} is not supported by this server"),
        )),
        // Requests on a handle never come here: the session routes them to the handle's lane.
        other => {
            Reply(Response::status(other.id().unwrap_or(0), StatusCode::Failure, "Internal error: misrouted request"))
        }
    }
}

async fn extended(ctx: &SessionCtx, id: u32, request: Extended) -> Response {
    let vfs = &*ctx.vfs;
    match request {
        Extended::PosixRename { from, to } => {
            ok_or_err(id, async { vfs.rename(&vpath(&from)?, &vpath(&to)?, true).await }.await)
        }
        Extended::Statvfs { path } => {
            reply(id, async { Ok(statvfs_reply(id, vfs.stats(&vpath(&path)?).await?)) }.await)
        }
        Extended::Hardlink { existing, link } => {
            ok_or_err(id, async { vfs.hard_link(&vpath(&existing)?, &vpath(&link)?).await }.await)
        }
        Extended::Limits => Response::limits(
            id,
            u64::from(MAX_PACKET_LEN),
            u64::from(MAX_READ_LEN),
            u64::from(MAX_READ_LEN),
            u64::from(MAX_OPEN_HANDLES),
        ),
        Extended::ExpandPath { path } => reply(
            id,
            async {
                let expanded = expand_tilde(&ctx.user, &path)?;
                let canon = vfs.canonicalize(&vpath(&expanded)?).await?;
                Ok(single_name(id, &canon))
            }
            .await,
        ),
        Extended::Unknown { name } => Response::status(
            id,
            StatusCode::OpUnsupported,
            format!("Extension {:?} is not supported by this server", String::from_utf8_lossy(&name)),
        ),
        Extended::Lsetstat { path, attrs } => {
            ok_or_err(id, async { vfs.set_metadata(&vpath(&path)?, &to_set_attrs(&attrs)).await }.await)
        }
        Extended::Fstatvfs { .. } | Extended::Fsync { .. } => {
            Response::status(id, StatusCode::Failure, "Internal error: misrouted request")
        }
    }
}

/// Runs a request on an open handle. `slot` becomes `None` when the request closes the handle.
pub(crate) async fn handle_request(ctx: &SessionCtx, slot: &mut Option<OpenHandle>, req: Request) -> Response {
    let id = req.id().unwrap_or(0);
    let Some(handle) = slot.as_mut() else {
        return crate::status::invalid_handle(id);
    };
    match (handle, req) {
        (OpenHandle::File(f), Request::Read { id, offset, len, .. }) => {
            match f.file.read_at(offset, len.min(MAX_READ_LEN)).await {
                Ok(data) if data.is_empty() => Response::status(id, StatusCode::Eof, "End of file"),
                Ok(data) => {
                    f.read += data.len() as u64;
                    Response::Data { id, data }
                }
                Err(e) => fs_error(id, &e),
            }
        }
        (OpenHandle::File(f), Request::Write { id, offset, data, .. }) => {
            let len = data.len() as u64;
            match f.file.write_at(offset, data).await {
                Ok(()) => {
                    f.written += len;
                    Response::ok(id)
                }
                Err(e) => {
                    tracing::warn!(user = %ctx.user, client = %ctx.client, path = %f.path, error = %e, "write failed");
                    fs_error(id, &e)
                }
            }
        }
        (OpenHandle::File(f), Request::Fstat { id, .. }) => {
            reply(id, f.file.metadata().await.map(|m| Response::Attrs { id, attrs: to_attrs(&m) }))
        }
        (OpenHandle::File(f), Request::Fsetstat { id, attrs, .. }) => {
            ok_or_err(id, f.file.set_metadata(&to_set_attrs(&attrs)).await)
        }
        (OpenHandle::File(f), Request::Extended { id, request: Extended::Fsync { .. } }) => {
            ok_or_err(id, f.file.sync().await)
        }
        (OpenHandle::File(f), Request::Extended { id, request: Extended::Fstatvfs { .. } }) => {
            reply(id, ctx.vfs.stats(&f.path).await.map(|s| statvfs_reply(id, s)))
        }
        (OpenHandle::Dir(d), Request::Extended { id, request: Extended::Fstatvfs { .. } }) => {
            reply(id, ctx.vfs.stats(&d.path).await.map(|s| statvfs_reply(id, s)))
        }
        (OpenHandle::Dir(d), Request::Fstat { id, .. }) => {
            reply(id, ctx.vfs.metadata(&d.path).await.map(|m| Response::Attrs { id, attrs: to_attrs(&m) }))
        }
        (OpenHandle::Dir(d), Request::Readdir { id, .. }) => {
            if d.entries.is_empty() {
                return Response::status(id, StatusCode::Eof, "End of directory");
            }
            let now = now();
            let n = d.entries.len().min(READDIR_BATCH);
            let entries = d
                .entries
                .drain(..n)
                .map(|e| {
                    let long = ferry_vfs::listing::ls_line(&e.name, &e.metadata, &ctx.user, now);
                    (e.name, long, to_attrs(&e.metadata))
                })
                .collect();
            Response::Name { id, entries }
        }
        (_, Request::Close { id, .. }) => match slot.take() {
            Some(OpenHandle::File(f)) => close_file(ctx, id, f).await,
            _ => Response::ok(id),
        },
        (OpenHandle::Dir(_), req) => {
            Response::status(req.id().unwrap_or(0), StatusCode::Failure, "This handle is a directory, not a file")
        }
        (OpenHandle::File(_), req) => {
            Response::status(req.id().unwrap_or(0), StatusCode::Failure, "This handle is a file, not a directory")
        }
    }
}

async fn close_file(ctx: &SessionCtx, id: u32, f: FileState) -> Response {
    let FileState { file, path, opened, read, written } = f;
    let result = file.close().await;
    let ms = opened.elapsed().as_millis() as u64;
    match &result {
        Ok(()) if read > 0 || written > 0 => tracing::info!(
            user = %ctx.user, client = %ctx.client, protocol = ctx.protocol, path = %path,
            bytes_read = read, bytes_written = written, duration_ms = ms, "transfer"
        ),
        Ok(()) => {}
        Err(e) => tracing::warn!(
            user = %ctx.user, client = %ctx.client, protocol = ctx.protocol, path = %path,
            bytes_written = written, error = %e, "upload could not be completed; the previous file is kept"
        ),
    }
    ok_or_err(id, result)
}

/// Called when a session ends with a file still open: an upload cut off mid-way. Dropping the handle
/// discards its temporary file, so the previous version stays in place.
pub(crate) fn abandon(ctx: &SessionCtx, handle: OpenHandle) {
    if let OpenHandle::File(f) = handle {
        if f.written > 0 {
            tracing::warn!(
                user = %ctx.user, client = %ctx.client, protocol = ctx.protocol, path = %f.path,
                bytes_written = f.written, duration_ms = f.opened.elapsed().as_millis() as u64,
                "transfer interrupted: connection closed before the file was closed; an upload replacing a file was discarded"
            );
        } else if f.read > 0 {
            tracing::info!(
                user = %ctx.user, client = %ctx.client, protocol = ctx.protocol, path = %f.path,
                bytes_read = f.read, duration_ms = f.opened.elapsed().as_millis() as u64,
                "transfer interrupted"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_link_targets_become_relative() {
        let link = VPath::resolve(&VPath::root(), b"/a/b/link");
        assert_eq!(link_target(&link, b"/etc/passwd"), b"../../etc/passwd");
        assert_eq!(link_target(&VPath::resolve(&VPath::root(), b"/l"), b"/x"), b"x");
        assert_eq!(link_target(&link, b"/"), b"../../.");
        assert_eq!(link_target(&link, b"rel/t"), b"rel/t");
        assert_eq!(link_target(&link, b"/../../x"), b"../../x");
    }

    #[test]
    fn tilde() {
        assert_eq!(expand_tilde("bob", b"~").expect("ok"), b"/");
        assert_eq!(expand_tilde("bob", b"~/d/f").expect("ok"), b"/d/f");
        assert_eq!(expand_tilde("bob", b"~bob/x").expect("ok"), b"/x");
        assert!(expand_tilde("bob", b"~alice").is_err());
        assert_eq!(expand_tilde("bob", b"a/~").expect("ok"), b"a/~");
    }
}
