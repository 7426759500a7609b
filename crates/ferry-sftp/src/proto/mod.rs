//! SFTP version 3 wire format (draft-ietf-secsh-filexfer-02) plus the OpenSSH extensions Ferry serves.
//!
//! Nothing in here does I/O: frames are cut from a byte buffer, decoded into [`Request`] values and
//! responses are encoded into byte buffers, so every piece is tested with byte literals alone.

mod attrs;
mod frame;
mod request;
mod response;
mod wire;

pub use attrs::FileAttrs;
pub use frame::{split_frame, FrameError};
pub use request::{Extended, OpenFlags, Request};
pub use response::{Response, StatvfsReply};
pub use wire::DecodeError;

/// The largest packet we accept or send, as in OpenSSH (`SFTP_MAX_MSG_LENGTH`). Checked before a packet
/// is buffered, so a client cannot make us allocate more.
pub const MAX_PACKET_LEN: u32 = 256 * 1024;
/// Largest READ we serve and largest WRITE we expect, advertised through limits@openssh.com. Leaves room
/// for the packet header inside [`MAX_PACKET_LEN`].
pub const MAX_READ_LEN: u32 = MAX_PACKET_LEN - 1024;
/// Open handles a session may hold at once (files and directories together).
pub const MAX_OPEN_HANDLES: u32 = 1024;
/// Directory entries sent per READDIR reply (OpenSSH sends 100).
pub const READDIR_BATCH: usize = 100;

pub const PROTOCOL_VERSION: u32 = 3;

/// Packet types.
pub mod fxp {
    pub const INIT: u8 = 1;
    pub const VERSION: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const WRITE: u8 = 6;
    pub const LSTAT: u8 = 7;
    pub const FSTAT: u8 = 8;
    pub const SETSTAT: u8 = 9;
    pub const FSETSTAT: u8 = 10;
    pub const OPENDIR: u8 = 11;
    pub const READDIR: u8 = 12;
    pub const REMOVE: u8 = 13;
    pub const MKDIR: u8 = 14;
    pub const RMDIR: u8 = 15;
    pub const REALPATH: u8 = 16;
    pub const STAT: u8 = 17;
    pub const RENAME: u8 = 18;
    pub const READLINK: u8 = 19;
    pub const SYMLINK: u8 = 20;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const DATA: u8 = 103;
    pub const NAME: u8 = 104;
    pub const ATTRS: u8 = 105;
    pub const EXTENDED: u8 = 200;
    pub const EXTENDED_REPLY: u8 = 201;
}

/// Status codes of SSH_FXP_STATUS (v3 defines 0 to 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum StatusCode {
    Ok = 0,
    Eof = 1,
    NoSuchFile = 2,
    PermissionDenied = 3,
    Failure = 4,
    BadMessage = 5,
    NoConnection = 6,
    ConnectionLost = 7,
    OpUnsupported = 8,
}

/// Extensions announced in VERSION, with their versions as OpenSSH announces them.
pub const EXTENSIONS: &[(&str, &str)] = &[
    ("posix-rename@openssh.com", "1"),
    ("statvfs@openssh.com", "2"),
    ("fstatvfs@openssh.com", "2"),
    ("hardlink@openssh.com", "1"),
    ("fsync@openssh.com", "1"),
    ("lsetstat@openssh.com", "1"),
    ("limits@openssh.com", "1"),
    ("expand-path@openssh.com", "1"),
];

/// Decodes every frame in `data` as the session would, discarding the results. Shared by the fuzz
/// target and the unit test below; it must never panic, whatever the input.
pub fn fuzz_decode(data: &[u8]) {
    let mut rest = bytes::Bytes::copy_from_slice(data);
    while let Ok(Some(total)) = split_frame(&rest) {
        let frame = rest.split_to(total);
        if let Ok(req) = Request::decode(frame.slice(4..)) {
            let _ = (req.id(), req.handle());
        }
    }
}

#[cfg(test)]
mod fuzz_tests {
    /// A cheap deterministic stand-in for the fuzzer in CI: mutated copies of valid packets and random
    /// bytes, run through the decoder.
    #[test]
    fn decoder_survives_garbage() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let valid: &[&[u8]] = &[
            b"\0\0\0\x05\x01\0\0\0\x03",
            b"\0\0\0\x15\x03\0\0\0\x01\0\0\0\x03a/b\0\0\0\x1a\0\0\0\x0f\0\0\0\0\0\0\0\x01",
            b"\0\0\0\x1c\xc8\0\0\0\x02\0\0\0\x13statvfs@openssh.com\0",
        ];
        for round in 0..20_000 {
            let mut pkt = valid[round % valid.len()].to_vec();
            for _ in 0..(next() % 4) {
                let i = (next() as usize) % pkt.len();
                pkt[i] = next() as u8;
            }
            if round % 3 == 0 {
                pkt.truncate((next() as usize) % (pkt.len() + 1));
            }
            super::fuzz_decode(&pkt);
            let random: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
            super::fuzz_decode(&random);
        }
    }
}
