//! What each request does, in terms of the [`Vfs`] trait. No sockets here: the session loop
//! ([`crate::session`]) decides what runs when, this module decides what a request means.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ferry_vfs::{DirHandle, FileHandle, FsError, OpenOptions, VPath, Vfs};

use crate::attrs_map::{to_attrs, to_set_attrs};
use crate::proto::{Extended, OpenFlags, Request, Response, StatusCode, StatvfsReply};
use crate::proto::{MAX_OPEN_HANDLES, MAX_PACKET_LEN, MAX_READ_LEN, READDIR_BATCH};
use crate::status::fs_error;

/// Who the session serves, shared by all its tasks: the logged-in session from the core, whose storage
/// every request goes to and whose events record the transfers.
pub struct SessionCtx {
    pub session: Arc<ferry_core::Session>,
}

impl SessionCtx {
    pub(crate) fn vfs(&self) -> &dyn Vfs {
        &**self.session.vfs()
    }

    pub(crate) fn user(&self) -> &str {
        self.session.user()
    }

    pub(crate) fn client(&self) -> &str {
        self.session.client()
    }
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
    /// The first WRITE that failed on this handle (a full disk, an I/O error). From then on the upload is
    /// lost: later WRITEs fail the same way without touching the disk, and CLOSE undoes the upload and
    /// answers with this error, so a partial file never replaces a good one.
    pub(crate) failed: Option<FsError>,
}

pub(crate) struct DirState {
    pub(crate) path: VPath,
    /// Read a batch per READDIR, so a huge directory never sits in memory whole.
    pub(crate) dir: Box<dyn DirHandle>,
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
    let vfs = ctx.vfs();
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
                    failed: None,
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
                let dir = vfs.open_dir(&path).await?;
                Ok::<_, FsError>(OpenHandle::Dir(DirState { path, dir }))
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
        Request::Setstat { id, path, attrs } => {
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
                // Stored as given, so READLINK gives it back unchanged; an absolute target is followed
                // inside the user's root, as under a chroot.
                vfs.symlink(&target, &link).await
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
    let vfs = ctx.vfs();
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
                let expanded = expand_tilde(ctx.user(), &path)?;
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
            ok_or_err(id, async { vfs.set_link_metadata(&vpath(&path)?, &to_set_attrs(&attrs)).await }.await)
        }
        Extended::Fstatvfs { .. } | Extended::Fsync { .. } => {
            Response::status(id, StatusCode::Failure, "Internal error: misrouted request")
        }
    }
}

/// Runs a request on an open file. `slot` becomes `None` when the request closes the handle.
pub(crate) async fn file_request(ctx: &SessionCtx, slot: &mut Option<FileState>, req: Request) -> Response {
    let id = req.id().unwrap_or(0);
    let Some(f) = slot.as_mut() else {
        return crate::status::invalid_handle(id);
    };
    match req {
        Request::Read { id, offset, len, .. } => match f.file.read_at(offset, len.min(MAX_READ_LEN)).await {
            Ok(data) if data.is_empty() => Response::status(id, StatusCode::Eof, "End of file"),
            Ok(data) => {
                f.read += data.len() as u64;
                Response::Data { id, data }
            }
            Err(e) => fs_error(id, &e),
        },
        Request::Write { id, offset, data, .. } => {
            if let Some(e) = &f.failed {
                return fs_error(id, &e.duplicate());
            }
            let len = data.len() as u64;
            match f.file.write_at(offset, data).await {
                Ok(()) => {
                    f.written += len;
                    Response::ok(id)
                }
                Err(e) => {
                    tracing::warn!(user = %ctx.user(), client = %ctx.client(), path = %f.path, error = %e,
                        "write failed; the upload will be undone when the client closes the file");
                    let r = fs_error(id, &e);
                    f.failed = Some(e);
                    r
                }
            }
        }
        Request::Fstat { id, .. } => {
            reply(id, f.file.metadata().await.map(|m| Response::Attrs { id, attrs: to_attrs(&m) }))
        }
        Request::Fsetstat { id, attrs, .. } => ok_or_err(id, f.file.set_metadata(&to_set_attrs(&attrs)).await),
        Request::Extended { id, request: Extended::Fsync { .. } } => ok_or_err(id, f.file.sync().await),
        Request::Extended { id, request: Extended::Fstatvfs { .. } } => {
            reply(id, ctx.vfs().stats(&f.path).await.map(|s| statvfs_reply(id, s)))
        }
        Request::Close { id, .. } => match slot.take() {
            Some(f) => close_file(ctx, id, f).await,
            None => crate::status::invalid_handle(id),
        },
        other => {
            Response::status(other.id().unwrap_or(0), StatusCode::Failure, "This handle is a file, not a directory")
        }
    }
}

/// Runs a request on an open directory. `slot` becomes `None` when the request closes the handle.
pub(crate) async fn dir_request(ctx: &SessionCtx, slot: &mut Option<DirState>, req: Request) -> Response {
    let id = req.id().unwrap_or(0);
    let Some(d) = slot.as_mut() else {
        return crate::status::invalid_handle(id);
    };
    match req {
        Request::Readdir { id, .. } => match d.dir.next_batch(READDIR_BATCH).await {
            Ok(batch) if batch.is_empty() => Response::status(id, StatusCode::Eof, "End of directory"),
            Ok(batch) => {
                let now = now();
                let entries = batch
                    .into_iter()
                    .map(|e| {
                        let long = ferry_vfs::listing::ls_line(&e.name, &e.metadata, ctx.user(), now);
                        (e.name, long, to_attrs(&e.metadata))
                    })
                    .collect();
                Response::Name { id, entries }
            }
            Err(e) => fs_error(id, &e),
        },
        Request::Fstat { id, .. } => {
            reply(id, ctx.vfs().metadata(&d.path).await.map(|m| Response::Attrs { id, attrs: to_attrs(&m) }))
        }
        Request::Extended { id, request: Extended::Fstatvfs { .. } } => {
            reply(id, ctx.vfs().stats(&d.path).await.map(|s| statvfs_reply(id, s)))
        }
        Request::Close { id, .. } => {
            *slot = None;
            Response::ok(id)
        }
        other => {
            Response::status(other.id().unwrap_or(0), StatusCode::Failure, "This handle is a directory, not a file")
        }
    }
}

async fn close_file(ctx: &SessionCtx, id: u32, f: FileState) -> Response {
    let FileState { file, path, opened, read, written, failed } = f;
    if let Some(e) = failed {
        file.abort().await;
        let why = format!("a write failed ({e}); an upload that replaced or created the file was undone");
        ctx.session.interrupted(&path, read, written, opened, &why);
        return Response::status(
            id,
            StatusCode::Failure,
            format!("Upload failed: {}; an upload that replaced or created the file was undone", e.user_message()),
        );
    }
    let result = file.close().await;
    match &result {
        Ok(()) if read > 0 || written > 0 => ctx.session.transfer(&path, read, written, opened),
        Ok(()) => {}
        Err(e) => {
            let why = format!("the upload could not be completed ({e}); the previous file is kept");
            ctx.session.interrupted(&path, read, written, opened, &why);
        }
    }
    ok_or_err(id, result)
}

/// Called when a session ends with a file still open: a transfer cut off mid-way. An upload is undone,
/// so the previous version stays in place.
pub(crate) async fn abandon(ctx: &SessionCtx, f: FileState) {
    if f.written > 0 || f.read > 0 {
        ctx.session.interrupted(
            &f.path,
            f.read,
            f.written,
            f.opened,
            "connection closed before the file was closed; an upload that replaced or created the file was undone",
        );
    }
    f.file.abort().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde() {
        assert_eq!(expand_tilde("bob", b"~").expect("ok"), b"/");
        assert_eq!(expand_tilde("bob", b"~/d/f").expect("ok"), b"/d/f");
        assert_eq!(expand_tilde("bob", b"~bob/x").expect("ok"), b"/x");
        assert!(expand_tilde("bob", b"~alice").is_err());
        assert_eq!(expand_tilde("bob", b"a/~").expect("ok"), b"a/~");
    }
}
