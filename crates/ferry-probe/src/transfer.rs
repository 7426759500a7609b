//! What the login checks of both protocols share: credentials, the test file, throughput.

use std::path::PathBuf;
use std::time::Duration;

use rand::RngCore;

use crate::report::TransferInfo;

/// The size of the file uploaded and downloaded: big enough for a throughput figure, small
/// enough to be quick on a slow link.
pub const TEST_FILE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: Option<String>,
    pub key: Option<PathBuf>,
}

/// `ferry-probe-<16 hex>.tmp`: recognisable if a failed run leaves it behind, and unique so
/// probes running side by side do not collide.
pub fn test_file_name() -> String {
    let mut b = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("ferry-probe-{hex}.tmp")
}

/// Random bytes, so compression on the way cannot flatter the throughput.
pub fn test_data() -> Vec<u8> {
    let mut data = vec![0u8; TEST_FILE_BYTES];
    rand::thread_rng().fill_bytes(&mut data);
    data
}

/// Megabytes (10^6 bytes) per second, rounded to 0.1.
pub fn mb_per_s(bytes: usize, took: Duration) -> f64 {
    let secs = took.as_secs_f64().max(1e-6);
    (bytes as f64 / secs / 1e6 * 10.0).round() / 10.0
}

/// Seconds rounded to milliseconds, for the report.
pub fn seconds(took: Duration) -> f64 {
    (took.as_secs_f64() * 1000.0).round() / 1000.0
}

impl TransferInfo {
    /// The round trip of `bytes` bytes through `file`: uploaded in `up`, downloaded in `down`. The FTPS-only
    /// fields start empty.
    pub fn measured(
        protocol: &str,
        user: &str,
        file: String,
        bytes: usize,
        listed_entries: Option<usize>,
        up: Duration,
        down: Duration,
    ) -> Self {
        TransferInfo {
            protocol: protocol.to_string(),
            user: user.to_string(),
            file,
            bytes: bytes as u64,
            listed_entries,
            upload_seconds: seconds(up),
            download_seconds: seconds(down),
            upload_mb_per_s: mb_per_s(bytes, up),
            download_mb_per_s: mb_per_s(bytes, down),
            data_port: None,
            data_tls_resumed: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_rates() {
        let a = test_file_name();
        assert!(a.starts_with("ferry-probe-") && a.ends_with(".tmp") && a.len() == 12 + 16 + 4, "{a}");
        assert_ne!(a, test_file_name());
        assert_eq!(mb_per_s(2_000_000, Duration::from_secs(1)), 2.0);
        assert_eq!(seconds(Duration::from_micros(1_234_567)), 1.235);
    }
}
