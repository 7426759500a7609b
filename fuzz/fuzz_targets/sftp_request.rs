//! Feeds arbitrary bytes to the SFTP framing and request decoder: whatever a client sends, they must
//! answer with a value or an error, never a panic. Run: `cargo +nightly fuzz run sftp_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_sftp::proto::fuzz_decode(data);
});
