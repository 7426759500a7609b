use super::MAX_PACKET_LEN;

/// Why a frame cannot be cut from the input. Either is fatal for the session: after a bad length the
/// stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than [`MAX_PACKET_LEN`].
    TooLong(u32),
    /// A packet must hold at least its type byte.
    Empty,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLong(n) => {
                write!(f, "packet of {n} bytes is longer than the limit of {MAX_PACKET_LEN}")
            }
            FrameError::Empty => f.write_str("packet of length 0"),
        }
    }
}

/// Looks at the start of `buf` and tells whether a whole packet is there: `Ok(Some(total))` with the
/// packet's length including its 4-byte length prefix, `Ok(None)` when more bytes are needed. The length
/// is checked as soon as the prefix is in, before any body is buffered.
pub fn split_frame(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_PACKET_LEN {
        return Err(FrameError::TooLong(len));
    }
    let total = 4 + len as usize;
    Ok((buf.len() >= total).then_some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_then_complete() {
        assert_eq!(split_frame(b""), Ok(None));
        assert_eq!(split_frame(b"\0\0"), Ok(None));
        assert_eq!(split_frame(b"\0\0\0\x02\x01"), Ok(None));
        assert_eq!(split_frame(b"\0\0\0\x02\x01\x02\x03"), Ok(Some(6)));
    }

    #[test]
    fn oversize_refused_before_body() {
        assert_eq!(split_frame(b"\x00\x04\x00\x01"), Err(FrameError::TooLong(0x40001)));
        assert_eq!(split_frame(b"\xff\xff\xff\xff"), Err(FrameError::TooLong(u32::MAX)));
        assert_eq!(split_frame(b"\0\0\0\0"), Err(FrameError::Empty));
    }
}
