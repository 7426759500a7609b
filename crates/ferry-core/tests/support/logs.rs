//! The log lines a test's server wrote: what an admin reads is part of the behaviour under test. Shared by
//! the core's tests and, through `#[path]`, the protocol crates' tests.

use std::sync::{Arc, Mutex};

/// The log lines written on this thread (a `#[tokio::test]` runtime runs the server's tasks there; the
/// core logs on the task that asks it) until the guard drops.
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }

    /// The lines containing every one of `words`.
    #[allow(dead_code)]
    pub fn lines_with(&self, words: &[&str]) -> Vec<String> {
        self.text().lines().filter(|l| words.iter().all(|w| l.contains(w))).map(str::to_string).collect()
    }
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's log lines (INFO and above) until the guard drops.
pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    (Logs(buf), tracing::subscriber::set_default(subscriber))
}
