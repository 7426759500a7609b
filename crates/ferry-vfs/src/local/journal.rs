//! The upload journal: one small file per upload in progress, so that uploads cut off by a crash of the
//! server are undone at the next start instead of leaving partial or hidden files behind.
//!
//! An entry is written before the upload touches the user's directory and removed once the upload is
//! committed or undone; an entry found at start therefore names an upload that never finished. Entries
//! are not fsynced: they protect against the server process dying (`kill -9`, a panic, OOM), which keeps
//! the page cache; a power cut may lose them, as it may lose the upload's own unsynced data.
//!
//! Format (text, one field per line, byte strings hex-encoded so any file name survives):
//! `ferry-upload 1`, `home HEX`, `dir HEX`, `name HEX`, `kind new|replace|atomic`, `aux HEX`, `ino DEV INO`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::uploads::UploadPolicy;
use super::util::is_not_found;

const MAGIC: &str = "ferry-upload 1";
const SUFFIX: &str = ".upload";

/// What a pending upload did to its directory, so that recovery knows how to undo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A new file written in place under its name.
    New,
    /// The old file moved aside to the hidden name `aux`; the new one written in place.
    Replace,
    /// The upload written to the hidden temporary file `aux`.
    Atomic,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::New => "new",
            Kind::Replace => "replace",
            Kind::Atomic => "atomic",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "new" => Some(Kind::New),
            "replace" => Some(Kind::Replace),
            "atomic" => Some(Kind::Atomic),
            _ => None,
        }
    }
}

/// One pending upload, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// The user's root, absolute.
    pub(super) home: PathBuf,
    /// The target's directory relative to `home` (empty for the root).
    pub(super) dir: Vec<u8>,
    /// That directory's device and inode: recovery acts only on the very directory the upload was in.
    pub(super) dir_id: Option<(u64, u64)>,
    pub(super) name: Vec<u8>,
    pub(super) kind: Kind,
    /// The backup (replace) or temporary (atomic) name; empty for a new file.
    pub(super) aux: Vec<u8>,
    /// Device and inode of the file being written, when known.
    pub(super) ino: Option<(u64, u64)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl Record {
    fn encode(&self) -> String {
        let id = |i: Option<(u64, u64)>| match i {
            Some((dev, ino)) => format!("{dev} {ino}"),
            None => "-".into(),
        };
        format!(
            "{MAGIC}\nhome {}\ndir {}\ndirid {}\nname {}\nkind {}\naux {}\nino {}\n",
            hex(self.home.as_os_str().as_bytes()),
            hex(&self.dir),
            id(self.dir_id),
            hex(&self.name),
            self.kind.as_str(),
            hex(&self.aux),
            id(self.ino)
        )
    }

    fn decode(text: &str) -> Option<Record> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut field = |key: &str| -> Option<String> {
            let line = lines.next()?;
            line.strip_prefix(key)?.strip_prefix(' ').map(str::to_string)
        };
        let id = |s: String| -> Option<Option<(u64, u64)>> {
            match s.as_str() {
                "-" => Some(None),
                s => {
                    let (dev, ino) = s.split_once(' ')?;
                    Some(Some((dev.parse().ok()?, ino.parse().ok()?)))
                }
            }
        };
        let home = PathBuf::from(std::ffi::OsString::from_vec(unhex(&field("home")?)?));
        let dir = unhex(&field("dir")?)?;
        let dir_id = id(field("dirid")?)?;
        let name = unhex(&field("name")?)?;
        let kind = Kind::parse(&field("kind")?)?;
        let aux = unhex(&field("aux")?)?;
        let ino = id(field("ino")?)?;
        if name.is_empty() || !home.is_absolute() {
            return None;
        }
        Some(Record { home, dir, dir_id, name, kind, aux, ino })
    }
}

/// The journal directory (`DATA_DIR/uploads`).
#[derive(Debug)]
pub(super) struct Journal {
    dir: PathBuf,
}

/// A written entry; [`Entry::remove`] once the upload is committed or undone.
#[derive(Debug)]
pub(super) struct Entry(PathBuf);

impl Entry {
    /// Rewrites the entry (once the file being written exists, to record its inode).
    pub(super) fn update(&self, record: &Record) {
        if let Err(e) = fs::write(&self.0, record.encode()) {
            tracing::warn!(entry = %self.0.display(), "could not update an upload journal entry: {e}");
        }
    }

    pub(super) fn remove(&self) {
        if let Err(e) = fs::remove_file(&self.0) {
            if !is_not_found(&e) {
                tracing::warn!(entry = %self.0.display(), "could not remove an upload journal entry: {e}");
            }
        }
    }
}

impl Journal {
    pub(super) fn open(dir: PathBuf) -> io::Result<Journal> {
        fs::create_dir_all(&dir)?;
        Ok(Journal { dir })
    }

    pub(super) fn write(&self, record: &Record) -> io::Result<Entry> {
        let path = self.dir.join(format!("{:016x}{SUFFIX}", rand::random::<u64>()));
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        f.write_all(record.encode().as_bytes())?;
        Ok(Entry(path))
    }

    /// Undoes every upload left in the journal; one log line each.
    pub(super) fn recover(&self, policy: UploadPolicy) -> Vec<String> {
        let mut notes = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                notes.push(format!("upload recovery: cannot read the journal {}: {e}", self.dir.display()));
                return notes;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.as_os_str().as_bytes().ends_with(SUFFIX.as_bytes()) {
                continue;
            }
            let (note, done) = match fs::read_to_string(&path).ok().as_deref().and_then(Record::decode) {
                Some(record) => undo(&record, policy),
                // A crash while the entry was being written: nothing was done to the directory yet.
                None => {
                    (Some(format!("upload recovery: removed an incomplete journal entry {}", path.display())), true)
                }
            };
            notes.extend(note);
            if done {
                Entry(path).remove();
            }
        }
        notes
    }
}

fn display(record: &Record) -> String {
    let mut p = Vec::new();
    if !record.dir.is_empty() {
        p.push(b'/');
        p.extend_from_slice(&record.dir);
    }
    p.push(b'/');
    p.extend_from_slice(&record.name);
    format!("{}{}", record.home.display(), String::from_utf8_lossy(&p).escape_debug())
}

/// Whether `name` in `dir` is the file with this device and inode.
pub(super) fn is_inode(dir: &cap_std::fs::Dir, name: &Path, ino: (u64, u64)) -> bool {
    use cap_std::fs::MetadataExt as _;
    dir.symlink_metadata(name).map(|m| (m.dev(), m.ino()) == ino).unwrap_or(false)
}

/// Undoes one upload found in the journal at start: a line for the log (if there was anything to say),
/// and whether the entry is done with. An upload that cannot be undone keeps its entry, so every start
/// says so until an admin has looked.
fn undo(record: &Record, policy: UploadPolicy) -> (Option<String>, bool) {
    let shown = display(record);
    let aux_shown = String::from_utf8_lossy(&record.aux).escape_debug().to_string();
    let opened = super::home::open_home(&record.home, false).and_then(|home| {
        if record.dir.is_empty() {
            Ok(home)
        } else {
            home.open_dir(std::ffi::OsStr::from_bytes(&record.dir))
        }
    });
    let dir = match opened {
        Ok(d) => d,
        // The home or the directory is gone altogether: nothing of the upload is left either.
        Err(e) if is_not_found(&e) => {
            return (Some(format!("upload recovery: the directory of {shown} no longer exists; nothing to undo")), true)
        }
        Err(e) => {
            return (
                Some(format!(
                    "upload recovery: cannot open the directory of {shown} ({e}); will retry at the next start (hidden file: {aux_shown})"
                )),
                false,
            )
        }
    };
    if let Some(id) = record.dir_id {
        use cap_std::fs::MetadataExt as _;
        let same = dir.dir_metadata().map(|m| (m.dev(), m.ino()) == id).unwrap_or(false);
        if !same {
            return (
                Some(format!(
                    "upload recovery: the directory of {shown} was moved or replaced since the upload; not touching it. Look for the hidden file {aux_shown} in the directory's new place (the previous version of the file, if it is a replacement)"
                )),
                false,
            );
        }
    }
    let name = Path::new(std::ffi::OsStr::from_bytes(&record.name));
    let aux = Path::new(std::ffi::OsStr::from_bytes(&record.aux));
    let result = match record.kind {
        Kind::New => match record.ino {
            Some(_) if policy.keep_partial => {
                Ok(Some(format!("upload recovery: kept the partial new file {shown} for resume")))
            }
            Some(ino) if is_inode(&dir, name, ino) => {
                dir.remove_file(name).map(|()| Some(format!("upload recovery: removed the partial new file {shown}")))
            }
            _ => Ok(None),
        },
        Kind::Replace => match dir.symlink_metadata(aux) {
            Ok(_) => {
                // The old file is still aside: the upload never completed. It goes back over the partial
                // one, unless a newer file took the name since (then that one wins).
                let newer = match (record.ino, dir.symlink_metadata(name)) {
                    (Some(ino), Ok(_)) => !is_inode(&dir, name, ino),
                    _ => false,
                };
                if newer {
                    dir.remove_file(aux).map(|()| {
                        Some(format!(
                            "upload recovery: {shown} was replaced by a newer file; dropped the older version"
                        ))
                    })
                } else {
                    dir.rename(aux, &dir, name)
                        .map(|()| Some(format!("upload recovery: restored the previous version of {shown}")))
                }
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        },
        Kind::Atomic => match dir.remove_file(aux) {
            Ok(()) => {
                Ok(Some(format!("upload recovery: removed the temporary file of an unfinished upload to {shown}")))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(note) => (note, true),
        Err(e) => (
            Some(format!(
                "upload recovery: could not undo the unfinished upload to {shown}: {e}; will retry at the next start (hidden file: {aux_shown})"
            )),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_any_bytes() {
        let r = Record {
            home: PathBuf::from("/srv/ferry/files/al ice"),
            dir: b"a/b\nc".to_vec(),
            dir_id: Some((1, 2)),
            name: vec![0xff, b'x', 0x00, b'\r'],
            kind: Kind::Replace,
            aux: b".ferry-upload.0123.x".to_vec(),
            ino: Some((64768, 1234567)),
        };
        assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
        let r2 = Record { ino: None, dir_id: None, kind: Kind::New, aux: Vec::new(), dir: Vec::new(), ..r };
        assert_eq!(Record::decode(&r2.encode()), Some(r2));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(Record::decode(""), None);
        assert_eq!(Record::decode("ferry-upload 1\nhome zz\n"), None);
        assert_eq!(Record::decode("ferry-upload 2\n"), None);
        let relative = Record {
            home: PathBuf::from("relative"),
            dir: Vec::new(),
            dir_id: None,
            name: b"n".to_vec(),
            kind: Kind::New,
            aux: Vec::new(),
            ino: None,
        };
        assert_eq!(Record::decode(&relative.encode()), None);
    }
}
