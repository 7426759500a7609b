use std::fmt;
use std::io;

/// Why a filesystem operation failed, in terms every protocol can map to its own codes
/// (SFTP status codes in ferry-sftp, FTP reply codes in ferry-ftp).
#[derive(Debug)]
#[non_exhaustive]
pub enum FsError {
    NotFound,
    PermissionDenied,
    AlreadyExists,
    NotADirectory,
    IsADirectory,
    DirectoryNotEmpty,
    /// The disk (or the system's disk quota) is full.
    NoSpace,
    /// The user's Ferry quota (bytes or files) would be exceeded.
    QuotaExceeded,
    /// The path is not acceptable (for example it would leave the root, or names a temporary upload file).
    InvalidPath,
    /// The backend cannot do this at all (hard links on object storage, for example).
    Unsupported(&'static str),
    /// Any other I/O failure, kept with its context for the log.
    Io(io::Error),
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    /// A short message a person understands, safe to send to the client (no server paths in it).
    pub fn user_message(&self) -> String {
        match self {
            FsError::NotFound => "No such file or directory".into(),
            FsError::PermissionDenied => "Permission denied".into(),
            FsError::AlreadyExists => "File already exists".into(),
            FsError::NotADirectory => "Not a directory".into(),
            FsError::IsADirectory => "Is a directory".into(),
            FsError::DirectoryNotEmpty => "Directory not empty".into(),
            FsError::NoSpace => "No space left on device".into(),
            FsError::QuotaExceeded => "Quota exceeded: your storage limit is reached; remove files to make room".into(),
            FsError::InvalidPath => "Invalid path".into(),
            FsError::Unsupported(what) => format!("Not supported: {what}"),
            FsError::Io(e) => format!("I/O error: {}", io_kind_text(e)),
        }
    }
}

impl FsError {
    /// A copy of this error, for answering every later request the same way (io::Error cannot be cloned:
    /// the copy keeps its OS error code or its kind and message).
    pub fn duplicate(&self) -> FsError {
        match self {
            FsError::NotFound => FsError::NotFound,
            FsError::PermissionDenied => FsError::PermissionDenied,
            FsError::AlreadyExists => FsError::AlreadyExists,
            FsError::NotADirectory => FsError::NotADirectory,
            FsError::IsADirectory => FsError::IsADirectory,
            FsError::DirectoryNotEmpty => FsError::DirectoryNotEmpty,
            FsError::NoSpace => FsError::NoSpace,
            FsError::QuotaExceeded => FsError::QuotaExceeded,
            FsError::InvalidPath => FsError::InvalidPath,
            FsError::Unsupported(what) => FsError::Unsupported(what),
            FsError::Io(e) => FsError::Io(match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            }),
        }
    }
}

fn io_kind_text(e: &io::Error) -> String {
    // The raw OS message may contain server-side paths only when constructed with them; io::Error from
    // std file operations carries none, but stay on the safe side and describe the kind.
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code).to_string(),
        None => e.kind().to_string(),
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Io(e) => write!(f, "I/O error: {e}"),
            other => f.write_str(&other.user_message()),
        }
    }
}

impl std::error::Error for FsError {}

impl From<io::Error> for FsError {
    fn from(e: io::Error) -> Self {
        use io::ErrorKind as K;
        match e.raw_os_error() {
            Some(libc::ENOTDIR) => return FsError::NotADirectory,
            Some(libc::EISDIR) => return FsError::IsADirectory,
            Some(libc::ENOTEMPTY) => return FsError::DirectoryNotEmpty,
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => return FsError::NoSpace,
            Some(libc::ELOOP) => return FsError::InvalidPath,
            _ => {}
        }
        match e.kind() {
            K::NotFound => FsError::NotFound,
            K::PermissionDenied => FsError::PermissionDenied,
            K::AlreadyExists => FsError::AlreadyExists,
            _ => FsError::Io(e),
        }
    }
}
