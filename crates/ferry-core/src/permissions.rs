//! What a user may do, per directory: a list of path rules, the most specific one winning.
//!
//! A rule names a directory of the user's virtual tree and a set of [`Perm`]s. For any path, the rule
//! whose directory is the longest prefix of it (component by component) applies; with no rule at all,
//! everything is allowed, as before rules existed. Presets give the usual partner shapes.

use std::fmt;

use ferry_vfs::VPath;

/// One thing a user may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// See names: LIST/NLST/MLSD, SFTP OPENDIR/READDIR, READLINK.
    List,
    /// Read a file's bytes.
    Download,
    /// Create a new file.
    Upload,
    /// Write to a file that exists already (replace, resume, append, truncate).
    Overwrite,
    Delete,
    Rename,
    Mkdir,
    Rmdir,
    /// Create links (symbolic and hard).
    Symlink,
    /// Change permission bits.
    Chmod,
    /// Change access and modification times.
    Times,
}

const ALL: [(Perm, &str); 11] = [
    (Perm::List, "list"),
    (Perm::Download, "download"),
    (Perm::Upload, "upload"),
    (Perm::Overwrite, "overwrite"),
    (Perm::Delete, "delete"),
    (Perm::Rename, "rename"),
    (Perm::Mkdir, "mkdir"),
    (Perm::Rmdir, "rmdir"),
    (Perm::Symlink, "symlink"),
    (Perm::Chmod, "chmod"),
    (Perm::Times, "times"),
];

impl Perm {
    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    pub fn name(self) -> &'static str {
        ALL.iter().find(|(p, _)| *p == self).map(|(_, n)| *n).unwrap_or("?")
    }
}

/// A set of permissions.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct PermSet(u16);

/// The presets, with what they allow.
pub const PRESETS: [(&str, &str); 4] = [
    ("full", "everything"),
    ("read-only", "list, download"),
    ("upload-only", "list, upload: a drop box (no download, no overwrite, no delete)"),
    ("download-only", "list, download, delete: an outbox the partner empties (no upload)"),
];

impl PermSet {
    pub fn full() -> PermSet {
        PermSet(ALL.iter().fold(0, |b, (p, _)| b | p.bit()))
    }

    pub fn of(perms: &[Perm]) -> PermSet {
        PermSet(perms.iter().fold(0, |b, p| b | p.bit()))
    }

    pub fn allows(self, p: Perm) -> bool {
        self.0 & p.bit() != 0
    }

    /// A preset name or a comma list of permissions (`list,download`).
    pub fn parse(text: &str) -> Result<PermSet, String> {
        use Perm::*;
        let text = text.trim();
        match text {
            "full" | "all" => return Ok(PermSet::full()),
            "read-only" => return Ok(PermSet::of(&[List, Download])),
            "upload-only" => return Ok(PermSet::of(&[List, Upload])),
            "download-only" => return Ok(PermSet::of(&[List, Download, Delete])),
            "none" => return Ok(PermSet(0)),
            _ => {}
        }
        let mut set = PermSet(0);
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match ALL.iter().find(|(_, n)| *n == word) {
                Some((p, _)) => set.0 |= p.bit(),
                None => {
                    let names: Vec<&str> = ALL.iter().map(|(_, n)| *n).collect();
                    let presets: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "{word:?} is not a permission: use a preset ({}, or none) or a comma list of {}",
                        presets.join(", "),
                        names.join(", ")
                    ));
                }
            }
        }
        if text.is_empty() {
            return Err("no permissions given: use a preset or a comma list, or none".into());
        }
        Ok(set)
    }
}

impl fmt::Display for PermSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PermSet::full() {
            return f.write_str("full");
        }
        let names: Vec<&str> = ALL.iter().filter(|(p, _)| self.allows(*p)).map(|(_, n)| *n).collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

impl fmt::Debug for PermSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PermSet({self})")
    }
}

/// A user's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Sorted by depth, deepest first, so the first match is the most specific.
    rules: Vec<(VPath, PermSet)>,
}

impl Rules {
    /// Rules from stored `(path, perms)` text; a rule that does not parse is skipped with a log line
    /// (the command line refuses such rules, so only a hand-edited database has them).
    pub fn from_stored(user: &str, stored: &[(String, String)]) -> Rules {
        let mut rules = Vec::new();
        for (path, perms) in stored {
            match PermSet::parse(perms) {
                Ok(set) => rules.push((VPath::resolve(&VPath::root(), path.as_bytes()), set)),
                Err(e) => tracing::error!(user, path = %path, "ignoring a stored permission rule: {e}"),
            }
        }
        rules.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        Rules { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The permissions that apply at `path`.
    pub fn at(&self, path: &VPath) -> PermSet {
        self.rules.iter().find(|(dir, _)| is_within(path, dir)).map(|(_, set)| *set).unwrap_or_else(PermSet::full)
    }
}

/// Whether `path` is `dir` or below it, component by component (`/in` does not cover `/inbox`).
pub fn is_within(path: &VPath, dir: &VPath) -> bool {
    let mut p = path.components();
    dir.components().all(|d| p.next() == Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(s: &str) -> VPath {
        VPath::resolve(&VPath::root(), s.as_bytes())
    }

    #[test]
    fn presets_and_lists_parse_and_print() {
        assert_eq!(PermSet::parse("full").expect("ok"), PermSet::full());
        let ro = PermSet::parse("read-only").expect("ok");
        assert!(ro.allows(Perm::List) && ro.allows(Perm::Download) && !ro.allows(Perm::Upload));
        let drop = PermSet::parse("upload-only").expect("ok");
        assert!(drop.allows(Perm::Upload) && !drop.allows(Perm::Download) && !drop.allows(Perm::Overwrite));
        let outbox = PermSet::parse("download-only").expect("ok");
        assert_eq!(outbox.to_string(), "list,download,delete", "the partner empties the outbox");
        assert_eq!(PermSet::parse("all").expect("ok"), PermSet::full());
        let custom = PermSet::parse("list, upload,overwrite").expect("ok");
        assert_eq!(custom.to_string(), "list,upload,overwrite");
        assert_eq!(PermSet::parse(&custom.to_string()).expect("round trip"), custom);
        assert_eq!(PermSet::parse("none").expect("ok").to_string(), "none");
        assert!(PermSet::parse("list,fly").expect_err("unknown").contains("\"fly\" is not a permission"));
        assert!(PermSet::parse("").is_err());
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let stored = vec![
            ("/".to_string(), "read-only".to_string()),
            ("/in".to_string(), "upload-only".to_string()),
            ("/in/archive".to_string(), "none".to_string()),
        ];
        let r = Rules::from_stored("u", &stored);
        assert_eq!(r.at(&vp("/report.pdf")), PermSet::parse("read-only").expect("ok"));
        assert_eq!(r.at(&vp("/in")), PermSet::parse("upload-only").expect("ok"));
        assert_eq!(r.at(&vp("/in/x/y.txt")), PermSet::parse("upload-only").expect("ok"));
        assert_eq!(r.at(&vp("/in/archive/old")), PermSet::parse("none").expect("ok"));
        assert_eq!(r.at(&vp("/inbox")), PermSet::parse("read-only").expect("ok"), "/in does not cover /inbox");
        assert_eq!(Rules::default().at(&vp("/x")), PermSet::full(), "no rules: everything");
    }
}
