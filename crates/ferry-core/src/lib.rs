//! Ferry's connection core: one layer between the protocol crates and storage and users.
//!
//! A login turns into a [`Session`] in one place ([`Core`]): the credentials are checked, the user's
//! storage is opened (the backend is chosen here, not by a protocol) and wrapped in the [`gate`] that every
//! file operation of every protocol passes, and the session joins the registry. Everything that happens
//! is an [`Event`] on one stream that feeds the log, so SFTP and FTPS report the same things the same way.
//! The protocol crates only translate: requests into core calls, core errors into their own answers.
#![forbid(unsafe_code)]

pub mod account;
mod core;
pub mod defender;
mod event;
mod gate;
pub mod permissions;
pub mod proxy;
pub mod quota;
mod registry;
mod session;
mod throttle;

pub use crate::core::{Core, KeyLogin, LoginError, PasswordLogin};
pub use defender::{Defender, Offence};
pub use event::{Event, Events, TransferLog, TransferRecord, Who};
pub use gate::GatedVfs;
pub use registry::Registry;
pub use session::{Client, Session};
pub use throttle::Throttle;
