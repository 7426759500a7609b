//! Moving bytes between a file and a data connection, as fast as the disk and the network allow.
//!
//! Downloads read the next 256 KiB from the file while the current chunk goes out on the network;
//! uploads fill the next 256 KiB from the network while the current one is written to the file. So at any
//! time one disk operation and one network operation run side by side.
//!
//! TYPE A is served byte for byte like TYPE I (as vsftpd does unless `ascii_*_enable` is set): every current
//! client and platform uses LF or handles CRLF itself, and rewriting line ends would corrupt binary files
//! sent in the wrong mode and break SIZE and REST offsets.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use ferry_vfs::{FileHandle, FsError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::limits::{CHUNK, DATA_LINGER, DATA_STALL_TIMEOUT};
use crate::stream::DataConn;

/// Why a transfer stopped early.
#[derive(Debug)]
pub(crate) enum PumpError {
    /// The data connection broke or stalled: 426.
    Network(io::Error),
    /// The file could not be read or written: mapped through `fs_error_reply`.
    File(FsError),
}

/// How an upload's data connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadEnd {
    /// Plain EOF, or TLS close_notify.
    Clean,
    /// TLS connection closed without close_notify.
    NoCloseNotify,
}

fn stalled() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("no data moved for {}s", DATA_STALL_TIMEOUT.as_secs()))
}

async fn write_chunk(data: &mut DataConn, chunk: &[u8]) -> Result<(), PumpError> {
    match tokio::time::timeout(DATA_STALL_TIMEOUT, data.write_all(chunk)).await {
        Ok(r) => r.map_err(PumpError::Network),
        Err(_) => Err(PumpError::Network(stalled())),
    }
}

/// Sends `file` from `offset` to its end. Returns the bytes sent.
pub(crate) async fn send_file(
    data: &mut DataConn,
    file: &dyn FileHandle,
    mut offset: u64,
    progress: &AtomicU64,
) -> Result<u64, PumpError> {
    let mut sent = 0u64;
    let mut current = file.read_at(offset, CHUNK as u32).await.map_err(PumpError::File)?;
    while !current.is_empty() {
        let next_offset = offset + current.len() as u64;
        let (written, next) = tokio::join!(write_chunk(data, &current), file.read_at(next_offset, CHUNK as u32));
        written?;
        sent += current.len() as u64;
        progress.store(sent, Ordering::Relaxed);
        current = next.map_err(PumpError::File)?;
        offset = next_offset;
    }
    Ok(sent)
}

/// Sends an in-memory listing.
pub(crate) async fn send_bytes(data: &mut DataConn, bytes: &[u8], progress: &AtomicU64) -> Result<u64, PumpError> {
    for chunk in bytes.chunks(CHUNK) {
        write_chunk(data, chunk).await?;
        progress.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    Ok(bytes.len() as u64)
}

/// Reads up to [`CHUNK`] bytes; `Some(end)` once the connection has ended.
async fn read_chunk(data: &mut DataConn) -> Result<(Bytes, Option<UploadEnd>), io::Error> {
    let mut buf = BytesMut::with_capacity(CHUNK);
    while buf.len() < CHUNK {
        match tokio::time::timeout(DATA_STALL_TIMEOUT, data.read_buf(&mut buf)).await {
            Err(_) => return Err(stalled()),
            Ok(Ok(0)) => return Ok((buf.freeze(), Some(UploadEnd::Clean))),
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof && data.is_tls() => {
                return Ok((buf.freeze(), Some(UploadEnd::NoCloseNotify)));
            }
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok((buf.freeze(), None))
}

/// Receives the data connection's bytes into `file` from `offset` until the client closes it. Returns
/// the bytes written and how the connection ended.
pub(crate) async fn receive_file(
    data: &mut DataConn,
    file: &dyn FileHandle,
    offset: u64,
    progress: &AtomicU64,
) -> Result<(u64, UploadEnd), PumpError> {
    let mut written = 0u64;
    let mut pending: Option<Bytes> = None;
    loop {
        let chunk = pending.take();
        let write = async {
            match chunk {
                Some(b) => {
                    let n = b.len() as u64;
                    file.write_at(offset + written, b).await.map(|()| n)
                }
                None => Ok(0),
            }
        };
        let (read, wrote) = tokio::join!(read_chunk(data), write);
        written += wrote.map_err(PumpError::File)?;
        progress.store(written, Ordering::Relaxed);
        let (bytes, end) = read.map_err(PumpError::Network)?;
        if let Some(end) = end {
            if !bytes.is_empty() {
                let n = bytes.len() as u64;
                file.write_at(offset + written, bytes).await.map_err(PumpError::File)?;
                written += n;
                progress.store(written, Ordering::Relaxed);
            }
            return Ok((written, end));
        }
        pending = Some(bytes);
    }
}

/// Ends a data connection after its last byte: TLS close_notify, then the TCP FIN. Then, in the
/// background, waits for the client to close its side before dropping the socket: a socket closed with
/// unread input sends a RST, which can destroy data the client has not read yet.
pub(crate) async fn finish(mut data: DataConn) -> io::Result<()> {
    let r = match tokio::time::timeout(DATA_STALL_TIMEOUT, data.shutdown()).await {
        Ok(r) => r,
        Err(_) => Err(stalled()),
    };
    if r.is_ok() {
        tokio::spawn(async move {
            let mut sink = [0u8; 512];
            let _ = tokio::time::timeout(DATA_LINGER, async {
                while let Ok(n) = data.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        });
    }
    r
}
