//! Commands that act on the filesystem without a data connection (CWD, SIZE, MDTM, MFMT, DELE, RNFR/RNTO,
//! MKD, RMD, SITE CHMOD, MLST, STAT path), and the listings that LIST, NLST, MLSD and STAT send.

use std::time::{SystemTime, UNIX_EPOCH};

use ferry_vfs::{DirEntry, FileKind, FsError, Metadata, SetAttrs, VPath, Vfs};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::proto::listing::{glob_match, is_pattern, list_line, mlsx_line, EntryType, Facts};
use crate::proto::time::format_timeval;
use crate::proto::{fs_error_reply, quote_path, Reply};
use crate::session::Session;

/// Which listing a data connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    List,
    Nlst,
    Mlsd,
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Runs a fallible command body, turning its error into its reply.
fn done(r: Result<Reply, Reply>) -> Reply {
    r.unwrap_or_else(|e| e)
}

fn fs(e: FsError) -> Reply {
    fs_error_reply(&e)
}

/// A listing's lines (without CRLF), built before the data connection opens so that a missing directory
/// is answered 550 without one.
pub(crate) async fn listing(
    vfs: &dyn Vfs,
    cwd: &VPath,
    arg: Option<&[u8]>,
    kind: ListKind,
    owner: &str,
    facts: &Facts,
) -> Result<Vec<Vec<u8>>, Reply> {
    let now = now();
    let target = match arg {
        Some(a) => VPath::checked(cwd, a).ok_or_else(|| fs(FsError::InvalidPath))?,
        None => cwd.clone(),
    };
    // `LIST *.txt`: the last component is a pattern over the parent directory (not for MLSD, RFC 3659).
    let pattern = match (kind, target.file_name()) {
        (ListKind::List | ListKind::Nlst, Some(name)) if is_pattern(name) => Some(name.to_vec()),
        _ => None,
    };
    let dir = if pattern.is_some() { target.parent() } else { target.clone() };
    let meta = vfs.metadata(&dir).await.map_err(fs)?;
    if meta.kind != FileKind::Dir {
        return match kind {
            ListKind::Mlsd => Err(Reply::new(501, "MLSD needs a directory; use MLST for a file")),
            ListKind::Nlst => Ok(vec![arg.unwrap_or_default().to_vec()]),
            ListKind::List => {
                let lmeta = vfs.symlink_metadata(&target).await.map_err(fs)?;
                let link = link_target(vfs, &target, &lmeta).await;
                Ok(vec![list_line(arg.unwrap_or_default(), &lmeta, link.as_deref(), owner, now)])
            }
        };
    }
    let mut entries = vfs.read_dir(&dir).await.map_err(fs)?;
    if let Some(p) = &pattern {
        entries.retain(|e| glob_match(p, &e.name));
    }
    // A name with a line break would end its listing line early and make the rest look like another
    // entry (or a forged one); FTP listings cannot carry it, so the entry is left out, with a hint.
    let before = entries.len();
    entries.retain(|e| !breaks_line(&e.name));
    if entries.len() < before {
        tracing::info!(
            user = owner, dir = %dir, skipped = before - entries.len(),
            "hint: left entries out of an FTP listing: their names contain line breaks (CR or LF), which FTP listings cannot carry; SFTP lists them"
        );
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut lines = Vec::with_capacity(entries.len() + 1);
    match kind {
        ListKind::Nlst => lines.extend(entries.into_iter().map(|e| e.name)),
        ListKind::List => {
            for e in entries {
                let path = dir.join(&e.name);
                let link = link_target(vfs, &path, &e.metadata).await;
                lines.push(list_line(&e.name, &e.metadata, link.as_deref(), owner, now));
            }
        }
        ListKind::Mlsd => {
            lines.push(mlsx_line(b".", &meta, EntryType::Cdir, facts));
            for e in entries {
                let m = followed(vfs, &dir, &e).await;
                lines.push(mlsx_line(&e.name, &m, EntryType::Normal, facts));
            }
        }
    }
    Ok(lines)
}

fn breaks_line(name: &[u8]) -> bool {
    name.iter().any(|b| matches!(b, b'\r' | b'\n'))
}

async fn link_target(vfs: &dyn Vfs, path: &VPath, meta: &Metadata) -> Option<Vec<u8>> {
    if meta.kind == FileKind::Symlink {
        // A link target with a line break is shown without it (`ls -l` style `-> target` omitted).
        vfs.read_link(path).await.ok().filter(|t| !breaks_line(t))
    } else {
        None
    }
}

/// MLSx describes what a symlink points to; a dangling link stays a symlink.
async fn followed(vfs: &dyn Vfs, dir: &VPath, e: &DirEntry) -> Metadata {
    if e.metadata.kind == FileKind::Symlink {
        if let Ok(m) = vfs.metadata(&dir.join(&e.name)).await {
            return m;
        }
    }
    e.metadata.clone()
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// The resolved path and the user's filesystem.
    fn target(&self, arg: &[u8]) -> Result<(VPath, std::sync::Arc<dyn Vfs>), Reply> {
        Ok((self.resolve(arg)?, self.vfs()?))
    }

    pub(crate) async fn cwd(&mut self, arg: &[u8]) -> Reply {
        let r = async {
            let (path, vfs) = self.target(arg)?;
            match vfs.metadata(&path).await.map_err(fs)?.kind {
                FileKind::Dir => Ok(path),
                _ => Err(fs(FsError::NotADirectory)),
            }
        }
        .await;
        match r {
            Ok(path) => {
                self.cwd = path;
                Reply::new(250, "Directory successfully changed")
            }
            Err(e) => e,
        }
    }

    pub(crate) async fn size(&self, arg: &[u8]) -> Reply {
        done(
            async {
                let (path, vfs) = self.target(arg)?;
                let m = vfs.metadata(&path).await.map_err(fs)?;
                if m.kind != FileKind::File {
                    return Err(Reply::new(550, "Not a regular file"));
                }
                Ok(Reply::new(213, m.size.to_string()))
            }
            .await,
        )
    }

    pub(crate) async fn mdtm(&self, arg: &[u8]) -> Reply {
        done(
            async {
                let (path, vfs) = self.target(arg)?;
                let m = vfs.metadata(&path).await.map_err(fs)?;
                let t = m.mtime.ok_or_else(|| Reply::new(550, "Modification time not available"))?;
                Ok(Reply::new(213, format_timeval(t)))
            }
            .await,
        )
    }

    pub(crate) async fn mfmt(&self, mtime: i64, arg: &[u8]) -> Reply {
        done(
            async {
                let (path, vfs) = self.target(arg)?;
                let m = vfs.metadata(&path).await.map_err(fs)?;
                let attrs = SetAttrs { times: Some((m.atime.unwrap_or(mtime), mtime)), ..Default::default() };
                vfs.set_metadata(&path, &attrs).await.map_err(fs)?;
                let mut text = format!("Modify={}; ", format_timeval(mtime)).into_bytes();
                text.extend_from_slice(arg);
                Ok(Reply::new(213, text))
            }
            .await,
        )
    }

    pub(crate) async fn chmod(&self, mode: u32, arg: &[u8]) -> Reply {
        done(
            async {
                let (path, vfs) = self.target(arg)?;
                let attrs = SetAttrs { permissions: Some(mode), ..Default::default() };
                vfs.set_metadata(&path, &attrs).await.map_err(fs)?;
                Ok(Reply::new(200, "SITE CHMOD command ok"))
            }
            .await,
        )
    }

    pub(crate) async fn dele(&self, arg: &[u8]) -> Reply {
        done(
            async {
                let (path, vfs) = self.target(arg)?;
                vfs.remove_file(&path).await.map_err(fs)?;
                Ok(Reply::new(250, "Delete operation successful"))
            }
            .await,
        )
    }

    pub(crate) async fn rnfr(&mut self, arg: &[u8]) -> Reply {
        let r = async {
            let (path, vfs) = self.target(arg)?;
            vfs.symlink_metadata(&path).await.map_err(fs)?;
            Ok::<_, Reply>(path)
        }
        .await;
        match r {
            Ok(path) => {
                self.set_rename_from(path);
                Reply::new(350, "Ready for RNTO")
            }
            Err(e) => e,
        }
    }

    pub(crate) async fn rnto(&self, from: Option<VPath>, arg: &[u8]) -> Reply {
        let Some(from) = from else {
            return Reply::new(503, "RNFR required first: send RNFR, then RNTO");
        };
        done(
            async {
                let (to, vfs) = self.target(arg)?;
                vfs.rename(&from, &to, true).await.map_err(fs)?;
                Ok(Reply::new(250, "Rename successful"))
            }
            .await,
        )
    }

    pub(crate) async fn mkd(&self, arg: &[u8]) -> Reply {
        done(
            async {
                let (path, vfs) = self.target(arg)?;
                vfs.create_dir(&path, None).await.map_err(fs)?;
                let mut text = quote_path(path.as_bytes());
                text.extend_from_slice(b" created");
                Ok(Reply::new(257, text))
            }
            .await,
        )
    }

    pub(crate) async fn rmd(&self, arg: &[u8]) -> Reply {
        done(
            async {
                let (path, vfs) = self.target(arg)?;
                vfs.remove_dir(&path).await.map_err(fs)?;
                Ok(Reply::new(250, "Remove directory operation successful"))
            }
            .await,
        )
    }

    /// MLST: the facts of one path, on the control connection.
    pub(crate) async fn mlst(&self, arg: Option<&[u8]>) -> Reply {
        done(
            async {
                let (path, vfs) = self.target(arg.unwrap_or(b"."))?;
                let m = vfs.metadata(&path).await.map_err(fs)?;
                let mut line = b" ".to_vec();
                line.extend(mlsx_line(path.as_bytes(), &m, EntryType::Normal, &self.facts));
                let mut first = b"Listing ".to_vec();
                first.extend_from_slice(path.as_bytes());
                Ok(Reply::multi(250, first, vec![line], "End"))
            }
            .await,
        )
    }

    /// STAT with a path: the LIST lines on the control connection.
    pub(crate) async fn stat_path(&self, arg: &[u8]) -> Reply {
        done(
            async {
                let vfs = self.vfs()?;
                let lines = listing(&*vfs, &self.cwd, Some(arg), ListKind::List, self.user_name(), &self.facts).await?;
                let mut first = b"Status of ".to_vec();
                first.extend_from_slice(arg);
                first.push(b':');
                Ok(Reply::multi(213, first, lines, "End of status"))
            }
            .await,
        )
    }
}
