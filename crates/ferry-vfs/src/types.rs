/// What kind of object a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// Protocol-neutral file metadata. Fields a backend does not have are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: FileKind,
    pub size: u64,
    /// Unix permission bits (`0o7777` part only; the kind is in `kind`).
    pub permissions: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Seconds since the Unix epoch.
    pub atime: Option<i64>,
    pub mtime: Option<i64>,
    pub nlink: Option<u64>,
}

/// One directory entry. `name` is raw bytes: non-UTF-8 names are kept intact.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub metadata: Metadata,
}

/// Attributes to change (SFTP SETSTAT, FTP MFMT). `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttrs {
    /// Truncate or extend to this size.
    pub size: Option<u64>,
    pub permissions: Option<u32>,
    /// (atime, mtime) in seconds since the epoch, set together as SFTP v3 does.
    pub times: Option<(i64, i64)>,
    /// Changing ownership is accepted only as a no-op when it matches; backends may refuse it.
    pub uid_gid: Option<(u32, u32)>,
}

/// How to open a file; mirrors the SFTP v3 pflags, which are a superset of what FTP needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    pub read: bool,
    pub write: bool,
    pub append: bool,
    pub create: bool,
    pub truncate: bool,
    /// Fail if the file exists (O_EXCL).
    pub exclusive: bool,
    /// Permission bits for a newly created file.
    pub mode: Option<u32>,
}

/// Filesystem space figures, as statvfs reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    pub block_size: u64,
    pub fragment_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
    pub files_available: u64,
    pub fs_id: u64,
    pub flags: u64,
    pub name_max: u64,
}
