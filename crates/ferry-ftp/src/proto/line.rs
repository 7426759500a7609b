//! Cutting command lines out of the control connection's byte stream.
//!
//! A line ends at LF, at CRLF, or at a lone CR. The lone CR matters: a client that sends `ABOR\r\n` with
//! `MSG_OOB` (Python's ftplib on plain FTP does) has its last byte, the LF, taken out of the stream as
//! urgent data, so the server only ever sees `ABOR\r`.
//!
//! Input is never buffered past [`MAX_LINE`]: a longer line is reported once as [`Line::TooLong`] and the
//! rest of it is dropped as it arrives, up to its end.

use super::MAX_LINE;

/// What the buffer yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// One command line, without its terminator and without leading Telnet IAC sequences.
    Command(Vec<u8>),
    /// A line exceeded [`MAX_LINE`]; it is being discarded.
    TooLong,
}

/// The control connection's input buffer.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Dropping the tail of an overlong line until its terminator.
    discarding: bool,
    /// The last terminator was a CR: an LF right after it belongs to it.
    after_cr: bool,
}

fn terminator(b: &u8) -> bool {
    *b == b'\n' || *b == b'\r'
}

impl LineBuffer {
    pub fn new() -> LineBuffer {
        LineBuffer::default()
    }

    /// Adds bytes read from the connection. Call only when [`LineBuffer::next_line`] returned `None`, so
    /// that the buffer holds at most one partial line plus one read.
    pub fn feed(&mut self, data: &[u8]) {
        if self.buf.is_empty() && self.buf.capacity() > 2 * MAX_LINE {
            self.buf = Vec::new();
        }
        self.buf.extend_from_slice(data);
    }

    /// Drops everything buffered (after AUTH TLS: bytes that arrived in clear text before the handshake
    /// must never be read as commands of the encrypted session).
    pub fn clear(&mut self) {
        self.buf = Vec::new();
        self.discarding = false;
        self.after_cr = false;
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Releases memory while the session is idle.
    pub fn shrink(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 256 {
            self.buf = Vec::new();
        }
    }

    /// Drops the LF of a CRLF whose CR ended the previous line, once it is there.
    fn skip_lf(&mut self) {
        if self.after_cr && !self.buf.is_empty() {
            if self.buf[0] == b'\n' {
                self.buf.drain(..1);
            }
            self.after_cr = false;
        }
    }

    pub fn next_line(&mut self) -> Option<Line> {
        loop {
            self.skip_lf();
            let Some(end) = self.buf.iter().position(terminator) else {
                if self.discarding {
                    self.buf.clear();
                    return None;
                }
                if self.buf.len() > MAX_LINE {
                    self.buf.clear();
                    self.discarding = true;
                    return Some(Line::TooLong);
                }
                return None;
            };
            self.after_cr = self.buf[end] == b'\r';
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            self.skip_lf();
            if self.discarding {
                self.discarding = false;
                continue;
            }
            if line.len() > MAX_LINE {
                return Some(Line::TooLong);
            }
            return Some(Line::Command(strip_telnet(line)));
        }
    }
}

/// Removes Telnet commands in front of the verb: `IAC IP IAC DM` (`\xff\xf4\xff\xf2`) precedes ABOR in many
/// clients, and the DM may be missing when it was sent as urgent data. No verb starts with a byte
/// of 0xF0 or above, so those are dropped.
fn strip_telnet(mut line: Vec<u8>) -> Vec<u8> {
    let skip = line.iter().take_while(|b| **b >= 0xf0).count();
    if skip > 0 {
        line.drain(..skip);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<Line> {
        let mut b = LineBuffer::new();
        let mut out = Vec::new();
        for c in chunks {
            b.feed(c);
            while let Some(l) = b.next_line() {
                out.push(l);
            }
        }
        out
    }

    fn cmd(s: &[u8]) -> Line {
        Line::Command(s.to_vec())
    }

    #[test]
    fn crlf_lf_and_lone_cr() {
        assert_eq!(
            lines(&[b"USER a\r\nPASS b\nNOOP\rQUIT\r\n"]),
            vec![cmd(b"USER a"), cmd(b"PASS b"), cmd(b"NOOP"), cmd(b"QUIT")]
        );
    }

    #[test]
    fn crlf_split_across_reads() {
        assert_eq!(lines(&[b"NOOP\r", b"\nSYST\r\n"]), vec![cmd(b"NOOP"), cmd(b"SYST")]);
        assert_eq!(lines(&[b"NO", b"OP\r", b"", b"\n"]), vec![cmd(b"NOOP")]);
    }

    #[test]
    fn partial_line_waits() {
        let mut b = LineBuffer::new();
        b.feed(b"RETR fi");
        assert_eq!(b.next_line(), None);
        b.feed(b"le\r\n");
        assert_eq!(b.next_line(), Some(cmd(b"RETR file")));
        assert!(b.is_empty());
    }

    #[test]
    fn telnet_abort_sequence() {
        assert_eq!(lines(&[b"\xff\xf4\xff\xf2ABOR\r\n"]), vec![cmd(b"ABOR")]);
        assert_eq!(lines(&[b"\xff\xf4\xffABOR\r\n"]), vec![cmd(b"ABOR")]);
    }

    #[test]
    fn overlong_line_discarded_to_its_end() {
        let long = vec![b'x'; MAX_LINE + 10];
        let got = lines(&[b"NOOP\r\n", &long, &long, b"yyy\r\nSYST\r\n"]);
        assert_eq!(got, vec![cmd(b"NOOP"), Line::TooLong, cmd(b"SYST")]);
    }

    #[test]
    fn overlong_line_in_one_read() {
        let mut data = vec![b'x'; MAX_LINE + 1];
        data.extend_from_slice(b"\r\nNOOP\r\n");
        assert_eq!(lines(&[&data]), vec![Line::TooLong, cmd(b"NOOP")]);
    }

    #[test]
    fn exactly_max_is_fine() {
        let mut data = vec![b'x'; MAX_LINE];
        data.extend_from_slice(b"\r\n");
        assert_eq!(lines(&[&data]), vec![Line::Command(vec![b'x'; MAX_LINE])]);
    }

    #[test]
    fn buffer_stays_bounded() {
        let mut b = LineBuffer::new();
        for _ in 0..100 {
            b.feed(&[b'z'; 1024]);
            let _ = b.next_line();
            assert!(b.buf.len() <= MAX_LINE + 1024);
        }
    }
}
