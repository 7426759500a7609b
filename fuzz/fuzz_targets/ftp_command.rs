//! Feeds arbitrary bytes to the FTP line splitter and command parser: any input must give a command, a
//! reply-worthy error or "need more", never a panic. Run: `cargo +nightly fuzz run ftp_command`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_ftp::proto::fuzz_parse(data);
});
