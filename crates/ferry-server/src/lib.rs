//! Ferry's server runtime: accept loops on already-bound listeners, admission limits at accept, protocol
//! detection on ports that serve several protocols, and a shutdown that stops accepting and lets running
//! transfers finish within a grace period. The `ferry` binary settles the configuration, binds, and calls
//! [`run`]; tests call it in-process on `127.0.0.1:0` listeners.
#![forbid(unsafe_code)]

mod detect;
mod gate;
mod listeners;
mod prefixed;
mod server;

pub use gate::Gate;
pub use listeners::{Directory, ListenerKind, ServesNothing, Services};
pub use server::{run, Listener};
