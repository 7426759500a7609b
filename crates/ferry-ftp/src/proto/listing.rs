//! Directory listings: `ls -l` lines for LIST (the same shape as SFTP's longname, which every FTP client
//! parses), RFC 3659 facts for MLSD/MLST, and the `*`/`?` patterns that LIST and NLST accept.

use ferry_vfs::{FileKind, Metadata};

use super::time::format_timeval;

pub use ferry_vfs::listing::perm_string;

/// One LIST line, without the trailing CRLF: `-rw-r--r--    1 alice    alice        1234 Jan  1 00:00 name`,
/// with ` -> target` for a symlink whose target is known.
pub fn list_line(name: &[u8], meta: &Metadata, link_target: Option<&[u8]>, owner: &str, now: i64) -> Vec<u8> {
    let mut out = ferry_vfs::listing::ls_line(name, meta, owner, now);
    if let (FileKind::Symlink, Some(target)) = (meta.kind, link_target) {
        out.extend_from_slice(b" -> ");
        out.extend_from_slice(target);
    }
    out
}

/// The facts Ferry knows, in the order FEAT lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub kind: bool,
    pub size: bool,
    pub modify: bool,
    pub perm: bool,
    pub unix_mode: bool,
}

impl Default for Facts {
    fn default() -> Facts {
        Facts { kind: true, size: true, modify: true, perm: true, unix_mode: true }
    }
}

impl Facts {
    /// The FEAT line: `MLST type*;size*;modify*;perm*;unix.mode*;` (`*` marks the facts currently sent).
    pub fn feat_line(&self) -> String {
        let star = |on: bool| if on { "*" } else { "" };
        format!(
            "MLST type{};size{};modify{};perm{};unix.mode{};",
            star(self.kind),
            star(self.size),
            star(self.modify),
            star(self.perm),
            star(self.unix_mode)
        )
    }

    /// `OPTS MLST type;size;`: selects facts; unknown names are ignored (RFC 3659 section 7.9).
    pub fn select(list: &[u8]) -> Facts {
        let mut f = Facts { kind: false, size: false, modify: false, perm: false, unix_mode: false };
        for name in list.split(|b| *b == b';').map(<[u8]>::trim_ascii) {
            let name = name.to_ascii_lowercase();
            match &name[..] {
                b"type" => f.kind = true,
                b"size" => f.size = true,
                b"modify" => f.modify = true,
                b"perm" => f.perm = true,
                b"unix.mode" => f.unix_mode = true,
                _ => {}
            }
        }
        f
    }

    /// The selected fact names for the OPTS reply: `type;size;`.
    pub fn names(&self) -> String {
        let mut s = String::new();
        for (on, name) in [
            (self.kind, "type;"),
            (self.size, "size;"),
            (self.modify, "modify;"),
            (self.perm, "perm;"),
            (self.unix_mode, "unix.mode;"),
        ] {
            if on {
                s.push_str(name);
            }
        }
        s
    }
}

/// What an MLSx entry is: `cdir` and `pdir` are the listed directory itself and its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    Normal,
    Cdir,
    Pdir,
}

/// The RFC 3659 `perm` fact, from the owner's permission bits (the session acts as the files' owner).
fn perm_fact(kind: FileKind, mode: u32) -> String {
    let (r, w, x) = (mode & 0o400 != 0, mode & 0o200 != 0, mode & 0o100 != 0);
    let mut p = String::new();
    if kind == FileKind::Dir {
        if w {
            p.push_str("cdfmp");
        }
        if x {
            p.push('e');
        }
        if r {
            p.push('l');
        }
    } else {
        if w {
            p.push_str("adfw");
        }
        if r {
            p.push('r');
        }
    }
    p
}

/// One MLSD/MLST line, without leading space and CRLF: `type=file;size=3;modify=...;perm=adfrw;unix.mode=0644; name`.
/// `meta` should describe what a symlink points to; a dangling symlink is given as [`FileKind::Symlink`].
pub fn mlsx_line(name: &[u8], meta: &Metadata, entry: EntryType, facts: &Facts) -> Vec<u8> {
    let mut s = String::new();
    if facts.kind {
        s.push_str(match (entry, meta.kind) {
            (EntryType::Cdir, _) => "type=cdir;",
            (EntryType::Pdir, _) => "type=pdir;",
            (_, FileKind::Dir) => "type=dir;",
            (_, FileKind::File) => "type=file;",
            (_, FileKind::Symlink) => "type=OS.unix=symlink;",
            (_, FileKind::Other) => "type=OS.unix=special;",
        });
    }
    if facts.size && meta.kind != FileKind::Dir {
        s.push_str(&format!("size={};", meta.size));
    }
    if facts.modify {
        if let Some(m) = meta.mtime {
            s.push_str(&format!("modify={};", format_timeval(m)));
        }
    }
    if let Some(mode) = meta.permissions {
        if facts.perm {
            s.push_str(&format!("perm={};", perm_fact(meta.kind, mode)));
        }
        if facts.unix_mode {
            s.push_str(&format!("unix.mode={:04o};", mode & 0o7777));
        }
    }
    let mut out = s.into_bytes();
    out.push(b' ');
    out.extend_from_slice(name);
    out
}

/// Whether a name contains the pattern characters LIST and NLST expand.
pub fn is_pattern(name: &[u8]) -> bool {
    name.iter().any(|b| *b == b'*' || *b == b'?')
}

/// Shell-style match with `*` (any run) and `?` (one byte). Names starting with `.` match only a
/// pattern that starts with `.` too, as in a shell.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    // Iterative matcher with backtracking to the last `*`: linear in practice, never exponential.
    let (mut p, mut n) = (0, 0);
    let (mut star, mut star_n) = (None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            star_n = n;
            p += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            star_n += 1;
            n = star_n;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: FileKind, size: u64, mode: u32, mtime: i64) -> Metadata {
        Metadata {
            kind,
            size,
            permissions: Some(mode),
            uid: None,
            gid: None,
            atime: None,
            mtime: Some(mtime),
            nlink: Some(1),
        }
    }

    #[test]
    fn list_lines() {
        let m = meta(FileKind::File, 1234, 0o644, 86_400 * 365);
        let l = list_line(b"f.txt", &m, None, "alice", 86_400 * 366);
        assert_eq!(String::from_utf8_lossy(&l), "-rw-r--r--    1 alice    alice        1234 Jan  1 00:00 f.txt");
        let d = meta(FileKind::Dir, 4096, 0o1777, 0);
        let l = String::from_utf8_lossy(&list_line(b"tmp", &d, None, "u", 86_400 * 1000)).into_owned();
        assert!(l.starts_with("drwxrwxrwt"), "{l}");
        assert!(l.ends_with("Jan  1  1970 tmp"), "{l}");
        let s = meta(FileKind::Symlink, 3, 0o777, 0);
        let l = String::from_utf8_lossy(&list_line(b"ln", &s, Some(b"abc"), "u", 0)).into_owned();
        assert!(l.starts_with("lrwxrwxrwx") && l.ends_with("ln -> abc"), "{l}");
    }

    #[test]
    fn mlsx_lines() {
        let f = Facts::default();
        let m = meta(FileKind::File, 3, 0o644, 1_700_000_000);
        assert_eq!(
            String::from_utf8_lossy(&mlsx_line(b"a b", &m, EntryType::Normal, &f)),
            "type=file;size=3;modify=20231114221320;perm=adfwr;unix.mode=0644; a b"
        );
        let d = meta(FileKind::Dir, 4096, 0o755, 0);
        assert_eq!(
            String::from_utf8_lossy(&mlsx_line(b".", &d, EntryType::Cdir, &f)),
            "type=cdir;modify=19700101000000;perm=cdfmpel;unix.mode=0755; ."
        );
        let only = Facts::select(b"type;SIZE;bogus;");
        assert_eq!(only.names(), "type;size;");
        assert_eq!(String::from_utf8_lossy(&mlsx_line(b"x", &m, EntryType::Normal, &only)), "type=file;size=3; x");
        assert_eq!(only.feat_line(), "MLST type*;size*;modify;perm;unix.mode;");
        assert_eq!(Facts::default().feat_line(), "MLST type*;size*;modify*;perm*;unix.mode*;");
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*.txt", b"a.txt"));
        assert!(!glob_match(b"*.txt", b"a.txt.gz"));
        assert!(glob_match(b"a?c*", b"abcdef"));
        assert!(!glob_match(b"*", b".hidden"));
        assert!(glob_match(b".*", b".hidden"));
        assert!(glob_match(b"*a*a*a*a*b", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!glob_match(b"*a*a*a*a*b", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(is_pattern(b"x*") && !is_pattern(b"plain"));
    }
}
