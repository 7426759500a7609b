//! `Vfs::open` for the local backend: reads, in-place opens, and uploads (see [`super::uploads`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use cap_std::fs::{Dir, OpenOptionsExt as _};

use super::canon::canonicalize_blocking;
use super::handle::LocalFile;
use super::journal::{Entry, Kind, Record};
use super::pending::Pending;
use super::uploads::UploadMode;
use super::util::{is_not_found, temp_name, CLIENT_MODE_BITS};
use super::Inner;
use crate::{FsError, FsResult, OpenOptions, VPath};

/// Mode of a newly created file when the client gives none (the process umask still applies).
const DEFAULT_FILE_MODE: u32 = 0o644;

/// Attempts at opening when the directory changes under us (a file appearing between the check and the
/// exclusive create, a symlink to follow).
const MAX_ATTEMPTS: usize = 3;

pub(super) fn open_blocking(fs: &Inner, path: &VPath, opts: OpenOptions) -> FsResult<LocalFile> {
    let mut path = path.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match open_once(fs, &path, opts)? {
            Opened::File(f) => return Ok(f),
            // The final component is a symlink: open what it points to (chroot view: an absolute target
            // is taken inside the root), so that an upload through a link is as safe as any other.
            Opened::Follow if attempt < MAX_ATTEMPTS => path = canonicalize_blocking(&fs.root, &path)?,
            Opened::Retry if attempt < MAX_ATTEMPTS => {}
            Opened::Follow | Opened::Retry => return Err(FsError::InvalidPath),
        }
    }
}

enum Opened {
    File(LocalFile),
    Follow,
    Retry,
}

fn open_once(fs: &Inner, path: &VPath, opts: OpenOptions) -> FsResult<Opened> {
    // The root is always a directory.
    let Some(name) = path.file_name() else {
        return Err(FsError::IsADirectory);
    };
    let name = OsStr::from_bytes(name);
    let rel = path.to_relative();
    // SFTP's APPEND and EXCL only make sense with WRITE and CREAT; clients sometimes send them alone.
    let writable = opts.write || opts.append;
    let create = writable && (opts.create || opts.exclusive);

    if !writable && opts.create {
        // O_RDONLY|O_CREAT[|O_EXCL], as OpenSSH opens it (paramiko's mode "x" sends this): create an
        // empty file if it is missing (with EXCL, fail if it exists), then open it for reading.
        let mut o = cap_std::fs::OpenOptions::new();
        o.write(true).create(true).create_new(opts.exclusive).mode(new_file_mode(fs, opts));
        drop(fs.root.open_with(&rel, &o)?);
    }

    if writable && (create || opts.truncate) {
        // Everything below happens relative to the parent directory handle, so the existence check, the
        // new file, the backup and the final rename all refer to the same directory.
        let parent = path.parent();
        let parent_dir = fs.root.open_dir(parent.to_relative())?;
        if opts.truncate {
            release_cache(&parent_dir, name);
        }
        let key = {
            let m = parent_dir.dir_metadata()?;
            use cap_std::fs::MetadataExt as _;
            (m.dev(), m.ino(), name.as_bytes().to_vec())
        };
        // Looked up before the lock: if this is the last reference, its drop must not run under it.
        let prev = fs.uploads.lookup(&key);
        let _steps = fs.uploads.steps();
        let existing = match parent_dir.symlink_metadata(name) {
            Ok(m) => Some(m),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e.into()),
        };
        let upload = match &existing {
            None if !create => return Err(FsError::NotFound),
            // Appending keeps whatever arrives, also to a new file (FTP APPE, `>>`): written in place.
            None => !opts.append,
            Some(_) if opts.exclusive => return Err(FsError::AlreadyExists),
            Some(m) if m.is_dir() => return Err(FsError::IsADirectory),
            Some(m) if m.is_symlink() => return Ok(Opened::Follow),
            // Without truncation the client writes into the file as it is (resume, random access).
            Some(m) => opts.truncate && m.is_file(),
        };
        if upload {
            let start = Start { parent_dir, dir_rel: parent.as_bytes()[1..].to_vec(), key, name, prev: prev.as_ref() };
            return start_upload(fs, start, existing.as_ref(), opts);
        }
    }
    open_in_place(&fs.root, &rel, opts, writable, create, new_file_mode(fs, opts)).map(Opened::File)
}

/// Drops the page cache of a file that an upload is about to replace (its data on disk is untouched).
///
/// Without this the cache holds both versions until the old one is deleted, and the kernel frees the old
/// one's pages inside that unlink or rename; measured on this project's benchmark box, a 1 GiB re-upload
/// then ran at half speed on every other run, its writes paying for memory that had just been handed
/// back. Released here, the old pages are reused by the new file's writes at once, as they are for
/// servers that truncate in place. Readers of the old file meanwhile read from disk. Best effort: any
/// failure only means the cache stays.
fn release_cache(parent_dir: &Dir, name: &OsStr) {
    let mut o = cap_std::fs::OpenOptions::new();
    o.read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    if let Ok(old) = parent_dir.open_with(name, &o) {
        let _ = rustix::fs::fadvise(&old, 0, None, rustix::fs::Advice::DontNeed);
    }
}

/// Opens the target itself: reads, resume (write at an offset without truncating), append.
/// The mode of a file the client creates: what it asked for (or 0644), without set-id or sticky bits,
/// less the admin's umask.
fn new_file_mode(fs: &Inner, opts: OpenOptions) -> u32 {
    opts.mode.unwrap_or(DEFAULT_FILE_MODE) & CLIENT_MODE_BITS & !fs.uploads.policy.umask
}

fn open_in_place(
    root: &Dir,
    rel: &Path,
    opts: OpenOptions,
    writable: bool,
    create: bool,
    mode: u32,
) -> FsResult<LocalFile> {
    let readable = opts.read || !writable;
    let mut o = cap_std::fs::OpenOptions::new();
    o.read(readable)
        .write(opts.write)
        .append(opts.append)
        .create(create)
        .create_new(create && opts.exclusive)
        .mode(mode)
        // O_NONBLOCK keeps open(2) of a FIFO from waiting forever for a peer (it is refused just
        // below); on regular files it changes nothing. O_NOCTTY: a terminal device never becomes ours.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = root.open_with(rel, &o)?.into_std();
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(FsError::IsADirectory);
    }
    if !meta.is_file() {
        // FIFOs, sockets, devices: nothing a file server should stream from or to.
        return Err(FsError::PermissionDenied);
    }
    // Truncation is done here rather than with O_TRUNC because std refuses O_TRUNC together with
    // O_APPEND, which SFTP allows.
    if opts.truncate && writable {
        file.set_len(0)?;
    }
    Ok(LocalFile::new(file, readable, writable, opts.append, None))
}

/// Creates `name` in `dir` exclusively with `mode`, for writing (and reading when asked).
fn create_new(dir: &Dir, name: &OsStr, opts: OpenOptions, mode: u32) -> io::Result<std::fs::File> {
    let mut o = cap_std::fs::OpenOptions::new();
    o.read(opts.read).write(true).append(opts.append).create_new(true).mode(mode);
    Ok(dir.open_with(name, &o)?.into_std())
}

/// Gives a file that replaces another the old one's owner (when the server may) and permission bits.
fn copy_identity(file: &std::fs::File, old: &cap_std::fs::Metadata) -> io::Result<()> {
    use cap_std::fs::MetadataExt as _;
    let meta = file.metadata()?;
    if (meta.uid(), meta.gid()) != (old.uid(), old.gid()) {
        // Keep the owner too when the server may (root, or a group the server belongs to); a failure only
        // means the new file belongs to the server's user, as any new upload does.
        let _ = std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid()));
    }
    // Set the mode after fchown, which may clear set-id bits. Set-id bits themselves are not carried
    // over: writing to a file clears them too.
    file.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o1777))
}

/// Where an upload starts: its directory, its name, and an upload of the same name still running.
struct Start<'a> {
    parent_dir: Dir,
    /// The directory's path under the root, for the journal.
    dir_rel: Vec<u8>,
    key: super::uploads::Key,
    name: &'a OsStr,
    /// Borrowed: the caller keeps the reference so its drop never runs under the lock.
    prev: Option<&'a Arc<Pending>>,
}

/// Starts an upload that creates `name` in its directory or replaces it (`existing`), in the admin's
/// upload mode. The caller holds [`super::uploads::Uploads::steps`].
fn start_upload(
    fs: &Inner,
    start: Start<'_>,
    existing: Option<&cap_std::fs::Metadata>,
    opts: OpenOptions,
) -> FsResult<Opened> {
    let Start { parent_dir, dir_rel, key, name, prev } = start;
    // A new file gets the client's mode (less the umask, as open(2) would apply). A replaced file keeps
    // its own permission bits whatever mode the client sent: OpenSSH opens with O_TRUNC, which keeps the
    // inode and so its mode, and `put` (which always sends the local file's mode) must behave the same.
    // Until those bits are copied the new file is private to the server.
    let new_mode = if existing.is_some() { 0o600 } else { new_file_mode(fs, opts) };
    let uploads = &fs.uploads;
    let record = |kind, aux: &OsStr, ino| Record {
        home: fs.home.clone(),
        dir: dir_rel.clone(),
        dir_id: Some((key.0, key.1)),
        name: name.as_bytes().to_vec(),
        kind,
        aux: aux.as_bytes().to_vec(),
        ino,
    };
    let journal = |r: Record| match &uploads.journal {
        Some(j) => match j.write(&r) {
            Ok(e) => Some(e),
            Err(e) => {
                // The upload still works; only a crash of the server would leave it unfinished.
                tracing::warn!("could not write the upload journal: {e}");
                None
            }
        },
        None => None,
    };
    let ino_of = |f: &std::fs::File| -> io::Result<(u64, u64)> {
        let m = f.metadata()?;
        Ok((m.dev(), m.ino()))
    };

    // An upload of this name still running (a client that reconnected and retried before the server saw
    // the first attempt cut off): take over what it would restore, so the previous good version is never
    // lost to a backup of its partial file. The newest upload wins, as the last rename would.
    let takeover = match (uploads.policy.mode, prev) {
        (UploadMode::Standard, Some(p)) if existing.is_some() && p.holds_name() => Some(p),
        _ => None,
    };
    if let Some(prev) = takeover {
        let entry = match prev.kind {
            Kind::Replace => journal(record(Kind::Replace, &prev.aux, None)),
            _ => None,
        };
        if let Some((kind, aux)) = prev.supersede() {
            // The older upload's partial file goes; its handle writes on into the unlinked file.
            parent_dir.remove_file(name)?;
            let created = create_new(&parent_dir, name, opts, new_mode).and_then(|f| ino_of(&f).map(|i| (f, i)));
            let (file, ino) = match created {
                Ok(c) => c,
                Err(e) => {
                    if kind == Kind::Replace {
                        let _ = parent_dir.rename(&aux, &parent_dir, name);
                    }
                    drop_entry(entry);
                    return Err(e.into());
                }
            };
            if let Some(old) = existing {
                let _ = copy_identity(&file, old);
            }
            let entry = match kind {
                Kind::New => journal(record(Kind::New, OsStr::new(""), Some(ino))),
                _ => {
                    if let Some(e) = &entry {
                        e.update(&record(Kind::Replace, &aux, Some(ino)));
                    }
                    entry
                }
            };
            let pending =
                Pending::new(Arc::clone(uploads), key, parent_dir, name.to_os_string(), kind, aux, ino, false, entry);
            return Ok(Opened::File(LocalFile::new(file, opts.read, true, opts.append, Some(pending))));
        }
        drop_entry(entry);
    }

    let (file, kind, aux, ino, entry) = match (uploads.policy.mode, existing) {
        (UploadMode::Standard, None) => {
            // Exclusive: a file that appeared since the check above is not clobbered, it is opened again
            // as an existing file.
            let file = match create_new(&parent_dir, name, opts, new_mode) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !opts.exclusive => return Ok(Opened::Retry),
                Err(e) => return Err(e.into()),
            };
            let ino = match ino_of(&file) {
                Ok(i) => i,
                Err(e) => {
                    let _ = parent_dir.remove_file(name);
                    return Err(e.into());
                }
            };
            let entry = journal(record(Kind::New, OsStr::new(""), Some(ino)));
            (file, Kind::New, OsString::new(), ino, entry)
        }
        (UploadMode::Standard, Some(old)) => {
            let backup = temp_name(name.as_bytes());
            // Journal first: from the rename on, a crash must find the backup to put it back.
            let entry = journal(record(Kind::Replace, &backup, None));
            if let Err(e) = parent_dir.rename(name, &parent_dir, &backup) {
                drop_entry(entry);
                return Err(e.into());
            }
            let created = create_new(&parent_dir, name, opts, new_mode)
                .and_then(|f| copy_identity(&f, old).map(|()| f))
                .and_then(|f| ino_of(&f).map(|ino| (f, ino)));
            match created {
                Ok((f, ino)) => {
                    // Now that the new file exists, recovery can tell it from a newer one.
                    if let Some(e) = &entry {
                        e.update(&record(Kind::Replace, &backup, Some(ino)));
                    }
                    (f, Kind::Replace, backup, ino, entry)
                }
                Err(e) => {
                    // Put the old file back before answering; if the new file was created, or another
                    // session created the name meanwhile, that one stays and the old one goes.
                    let back = rustix::fs::renameat_with(
                        &parent_dir,
                        &backup,
                        &parent_dir,
                        name,
                        rustix::fs::RenameFlags::NOREPLACE,
                    );
                    match back {
                        Ok(()) => drop_entry(entry),
                        Err(rustix::io::Errno::EXIST) => {
                            let _ = parent_dir.remove_file(&backup);
                            drop_entry(entry);
                        }
                        // Left for the next start's recovery, which the entry still describes.
                        Err(_) => {}
                    }
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        return Ok(Opened::Retry);
                    }
                    return Err(e.into());
                }
            }
        }
        (UploadMode::Atomic, existing) => {
            let (file, temp, entry) =
                create_temp(&parent_dir, name, opts, new_mode, |t| journal(record(Kind::Atomic, t, None)))?;
            let ready = match existing {
                Some(old) => copy_identity(&file, old),
                None => Ok(()),
            }
            .and_then(|()| ino_of(&file));
            match ready {
                Ok(ino) => (file, Kind::Atomic, temp, ino, entry),
                Err(e) => {
                    let _ = parent_dir.remove_file(&temp);
                    drop_entry(entry);
                    return Err(e.into());
                }
            }
        }
    };
    let pending = Pending::new(
        Arc::clone(uploads),
        key,
        parent_dir,
        name.to_os_string(),
        kind,
        aux,
        ino,
        opts.exclusive && kind == Kind::Atomic,
        entry,
    );
    Ok(Opened::File(LocalFile::new(file, opts.read, true, opts.append, Some(pending))))
}

fn drop_entry(entry: Option<Entry>) {
    if let Some(e) = entry {
        e.remove();
    }
}

/// Creates a fresh hidden temporary file next to `name`, journalled by `journal` before it exists.
fn create_temp(
    dir: &Dir,
    name: &OsStr,
    opts: OpenOptions,
    mode: u32,
    journal: impl Fn(&OsStr) -> Option<Entry>,
) -> FsResult<(std::fs::File, OsString, Option<Entry>)> {
    let mut attempt = 0;
    loop {
        let temp = temp_name(name.as_bytes());
        let entry = journal(&temp);
        match create_new(dir, &temp, opts, mode) {
            Ok(f) => return Ok((f, temp, entry)),
            Err(e) => {
                if let Some(en) = &entry {
                    en.remove();
                }
                // 64 random bits make a collision all but impossible; retry a couple of times anyway.
                if e.kind() == io::ErrorKind::AlreadyExists && attempt < MAX_ATTEMPTS {
                    attempt += 1;
                    continue;
                }
                return Err(e.into());
            }
        }
    }
}
