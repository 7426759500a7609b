//! Ferry's SFTP: the v3 protocol (codec in [`proto`], no I/O), the request dispatch onto a
//! [`ferry_vfs::Vfs`], the session loop, and the SSH adaptor on russh.
#![forbid(unsafe_code)]

pub mod algorithms;
mod attrs_map;
pub mod dispatch;
pub mod proto;
pub mod session;
pub mod ssh;
mod status;

pub use algorithms::Algorithms;
pub use dispatch::SessionCtx;
pub use ferry_vfs::activity::Activity;
pub use ssh::{SshService, SshSettings};
