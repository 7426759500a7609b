//! The FTP protocol without I/O: command lines cut from bytes, commands parsed into values, replies
//! formatted, the login phase decided, listings and addresses written. Everything here is tested with
//! byte literals alone; the session driver in the crate root does the talking.

pub mod addr;
pub mod command;
pub mod line;
pub mod listing;
pub mod login;
pub mod reply;
pub mod time;

pub use command::{AuthMech, Command, OptsArg, ParseError, ProtLevel, SiteCmd, TransferType};
pub use line::{Line, LineBuffer};
pub use login::{FtpMode, Gate, LoginState, PassStep};
pub use reply::{fs_error_reply, quote_path, Reply};

/// Longest command line accepted, as in vsftpd (`VSFTP_MAX_COMMAND_LINE`). A longer line is refused with
/// 500 and dropped as it arrives, never buffered whole.
pub const MAX_LINE: usize = 4096;

/// Runs `data` through the line splitter and the parser, and every reply through the encoder, as the
/// session would, discarding the results. Shared by the fuzz target and the unit test below; it must never
/// panic, whatever the input.
pub fn fuzz_parse(data: &[u8]) {
    let mut lines = LineBuffer::new();
    let mut out = Vec::new();
    let mut login = LoginState::new(FtpMode::Explicit, 3);
    for chunk in data.chunks(97) {
        lines.feed(chunk);
        while let Some(line) = lines.next_line() {
            let Line::Command(line) = line else { continue };
            match Command::parse(&line) {
                Ok(cmd) => {
                    if let Gate::Refuse(r) = login.gate(&cmd) {
                        r.encode(&mut out);
                    }
                    if let Command::Auth(_) = cmd {
                        login.tls_started();
                    }
                    let _ = cmd.verb();
                }
                Err(e) => e.reply().encode(&mut out),
            }
            out.clear();
        }
    }
}

#[cfg(test)]
mod fuzz_tests {
    /// A cheap deterministic stand-in for the fuzzer in CI: mutated copies of valid command lines and
    /// random bytes, run through the splitter and the parser.
    #[test]
    fn parser_survives_garbage() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let valid: &[&[u8]] = &[
            b"USER alice\r\nPASS secret\r\n",
            b"PORT 127,0,0,1,195,80\r\nEPRT |2|::1|5000|\r\n",
            b"MFMT 20231114221320 a file\r\nREST 100\r\nSITE CHMOD 644 x\r\n",
            b"\xff\xf4\xff\xf2ABOR\r\nTYPE A N\r\nOPTS MLST type;size;\r\nLIST -la dir\r\n",
            b"EPSV ALL\rAUTH TLS\nPROT P\r\nMODE S\r\nSTRU F\r\n",
        ];
        for round in 0..20_000 {
            let mut line = valid[round % valid.len()].to_vec();
            for _ in 0..(next() % 6) {
                let i = (next() as usize) % line.len();
                line[i] = next() as u8;
            }
            if round % 3 == 0 {
                line.truncate((next() as usize) % (line.len() + 1));
            }
            super::fuzz_parse(&line);
            let random: Vec<u8> = (0..(next() % 96)).map(|_| next() as u8).collect();
            super::fuzz_parse(&random);
        }
        super::fuzz_parse(&vec![b'A'; super::MAX_LINE * 3]);
    }
}
