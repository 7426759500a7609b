//! The one place where filesystem errors become SFTP status codes (as `errno_to_portable` in OpenSSH's
//! sftp-server.c). v3 has only nine codes, so the message carries the detail a person needs.

use ferry_vfs::FsError;

use crate::proto::{Response, StatusCode};

pub(crate) fn fs_error(id: u32, err: &FsError) -> Response {
    let code = match err {
        FsError::NotFound => StatusCode::NoSuchFile,
        FsError::PermissionDenied | FsError::InvalidPath => StatusCode::PermissionDenied,
        FsError::Unsupported(_) => StatusCode::OpUnsupported,
        _ => StatusCode::Failure,
    };
    Response::status(id, code, err.user_message())
}

pub(crate) fn invalid_handle(id: u32) -> Response {
    Response::status(id, StatusCode::Failure, "Invalid handle (not open, or already closed)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let code = |e: FsError| match fs_error(1, &e) {
            Response::Status { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(FsError::NotFound), StatusCode::NoSuchFile);
        assert_eq!(code(FsError::PermissionDenied), StatusCode::PermissionDenied);
        assert_eq!(code(FsError::InvalidPath), StatusCode::PermissionDenied);
        assert_eq!(code(FsError::NoSpace), StatusCode::Failure);
        assert_eq!(code(FsError::Unsupported("x")), StatusCode::OpUnsupported);
        match fs_error(1, &FsError::DirectoryNotEmpty) {
            Response::Status { message, .. } => assert_eq!(message, "Directory not empty"),
            other => panic!("{other:?}"),
        }
    }
}
