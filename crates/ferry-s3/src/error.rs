//! OpenDAL's errors in the terms every protocol maps: not found, exists, permission, or an I/O error
//! that keeps S3's message for the log.

use ferry_vfs::FsError;
use opendal::ErrorKind;

pub fn fs_error(e: opendal::Error) -> FsError {
    match e.kind() {
        ErrorKind::NotFound => FsError::NotFound,
        ErrorKind::AlreadyExists | ErrorKind::ConditionNotMatch => FsError::AlreadyExists,
        ErrorKind::PermissionDenied => FsError::PermissionDenied,
        ErrorKind::IsADirectory => FsError::IsADirectory,
        ErrorKind::NotADirectory => FsError::NotADirectory,
        _ => {
            tracing::warn!("S3 storage: {e}");
            FsError::Io(std::io::Error::other(e.to_string()))
        }
    }
}
