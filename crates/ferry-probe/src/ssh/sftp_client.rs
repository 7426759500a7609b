//! A minimal SFTP v3 client over any byte stream (an SSH channel), on the codec of `sftp.rs`:
//! requests in flight up to a window, so throughput is not one round trip per chunk.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::sftp::*;

/// Bytes per READ / WRITE: what every server accepts (OpenSSH takes up to 255 KiB).
const CHUNK: usize = 32 * 1024;
/// Requests in flight during a transfer, so throughput is not one round trip per chunk.
const WINDOW: usize = 16;
/// READDIR rounds before the listing is called good enough (a probe needs not read huge dirs).
const MAX_READDIR_ROUNDS: usize = 64;

pub struct SftpClient<S> {
    stream: S,
    buf: Vec<u8>,
    next_id: u32,
    timeout: Duration,
}

fn io_err(e: std::io::Error) -> SftpError {
    SftpError::Io(format!("the SFTP channel broke: {e}"))
}

fn unexpected(r: &Response) -> SftpError {
    SftpError::Protocol(format!("unexpected response {r:?}"))
}

impl<S: AsyncRead + AsyncWrite + Unpin> SftpClient<S> {
    /// Sends INIT, returns the client and the server's version.
    pub async fn start(stream: S, timeout: Duration) -> Result<(SftpClient<S>, u32), SftpError> {
        let mut c = SftpClient { stream, buf: Vec::new(), next_id: 1, timeout };
        c.send(&init()).await?;
        match c.recv().await? {
            Response::Version(v) => Ok((c, v)),
            other => Err(unexpected(&other)),
        }
    }

    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    async fn send(&mut self, pkt: &[u8]) -> Result<(), SftpError> {
        match tokio::time::timeout(self.timeout, self.stream.write_all(pkt)).await {
            Err(_) => Err(SftpError::Io("timed out sending to the server".into())),
            Ok(r) => r.map_err(io_err),
        }
    }

    async fn recv(&mut self) -> Result<Response, SftpError> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some((resp, used)) = parse_response(&self.buf)? {
                self.buf.drain(..used);
                return Ok(resp);
            }
            let n = match tokio::time::timeout(self.timeout, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(SftpError::Io("no answer from the SFTP server (timed out)".into())),
                Ok(r) => r.map_err(io_err)?,
            };
            if n == 0 {
                return Err(SftpError::Io("the server closed the SFTP channel".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One request, one response with the same id.
    async fn call(&mut self, pkt: Vec<u8>, id: u32) -> Result<Response, SftpError> {
        self.send(&pkt).await?;
        let r = self.recv().await?;
        match &r {
            Response::Status { id: rid, .. }
            | Response::Handle { id: rid, .. }
            | Response::Data { id: rid, .. }
            | Response::Name { id: rid, .. }
            | Response::Attrs { id: rid }
                if *rid == id =>
            {
                Ok(r)
            }
            _ => Err(unexpected(&r)),
        }
    }

    async fn expect_ok(&mut self, pkt: Vec<u8>, id: u32) -> Result<(), SftpError> {
        match self.call(pkt, id).await? {
            Response::Status { code: FX_OK, .. } => Ok(()),
            Response::Status { code, message, .. } => Err(SftpError::Status { code, message }),
            other => Err(unexpected(&other)),
        }
    }

    async fn handle(&mut self, pkt: Vec<u8>, id: u32) -> Result<Vec<u8>, SftpError> {
        match self.call(pkt, id).await? {
            Response::Handle { handle, .. } => Ok(handle),
            Response::Status { code, message, .. } => Err(SftpError::Status { code, message }),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn realpath(&mut self, path: &str) -> Result<String, SftpError> {
        let id = self.id();
        match self.call(realpath(id, path), id).await? {
            Response::Name { names, .. } => {
                names.into_iter().next().ok_or_else(|| SftpError::Protocol("REALPATH gave no name".into()))
            }
            Response::Status { code, message, .. } => Err(SftpError::Status { code, message }),
            other => Err(unexpected(&other)),
        }
    }

    /// Lists `path`; returns how many entries were read.
    pub async fn list(&mut self, path: &str) -> Result<usize, SftpError> {
        let id = self.id();
        let handle = self.handle(opendir(id, path), id).await?;
        let mut count = 0;
        for _ in 0..MAX_READDIR_ROUNDS {
            let id = self.id();
            match self.call(readdir(id, &handle), id).await? {
                Response::Name { names, .. } => count += names.len(),
                Response::Status { code: FX_EOF, .. } => break,
                Response::Status { code, message, .. } => return Err(SftpError::Status { code, message }),
                other => return Err(unexpected(&other)),
            }
        }
        let id = self.id();
        self.expect_ok(close(id, &handle), id).await?;
        Ok(count)
    }

    /// Creates `path` (it must not exist) and writes `data`, [`WINDOW`] writes in flight.
    pub async fn upload(&mut self, path: &str, data: &[u8]) -> Result<(), SftpError> {
        let id = self.id();
        let handle = self.handle(open(id, path, FXF_WRITE | FXF_CREAT | FXF_EXCL | FXF_TRUNC), id).await?;
        let mut offset = 0usize;
        let mut inflight = 0usize;
        let mut failure = None;
        while (offset < data.len() && failure.is_none()) || inflight > 0 {
            while failure.is_none() && inflight < WINDOW && offset < data.len() {
                let end = (offset + CHUNK).min(data.len());
                let id = self.id();
                self.send(&write(id, &handle, offset as u64, &data[offset..end])).await?;
                offset = end;
                inflight += 1;
            }
            match self.recv().await? {
                Response::Status { code: FX_OK, .. } => inflight -= 1,
                Response::Status { code, message, .. } => {
                    inflight -= 1;
                    failure.get_or_insert(SftpError::Status { code, message });
                }
                other => return Err(unexpected(&other)),
            }
        }
        let id = self.id();
        let closed = self.expect_ok(close(id, &handle), id).await;
        match failure {
            Some(e) => Err(e),
            None => closed,
        }
    }

    /// Reads `path`, which should hold `expected` bytes, [`WINDOW`] reads in flight; then one read
    /// past the end, which must say end-of-file.
    pub async fn download(&mut self, path: &str, expected: usize) -> Result<Vec<u8>, SftpError> {
        let id = self.id();
        let handle = self.handle(open(id, path, FXF_READ), id).await?;
        let mut out = vec![0u8; expected];
        // Ranges still to request, and requests in flight: id -> (offset, len).
        let mut todo: Vec<(usize, usize)> =
            (0..expected).step_by(CHUNK).map(|o| (o, CHUNK.min(expected - o))).rev().collect();
        let mut inflight: HashMap<u32, (usize, usize)> = HashMap::new();
        let result = loop {
            while inflight.len() < WINDOW {
                let Some((off, len)) = todo.pop() else { break };
                let id = self.id();
                self.send(&read(id, &handle, off as u64, len as u32)).await?;
                inflight.insert(id, (off, len));
            }
            if inflight.is_empty() {
                break Ok(());
            }
            let resp = self.recv().await?;
            let id = match &resp {
                Response::Data { id, .. } | Response::Status { id, .. } => *id,
                other => return Err(unexpected(other)),
            };
            let Some((off, len)) = inflight.remove(&id) else {
                return Err(SftpError::Protocol(format!("answer to unknown request {id}")));
            };
            let data = match resp {
                Response::Data { data, .. } => data,
                Response::Status { code: FX_EOF, .. } => {
                    break Err(SftpError::Protocol(format!("the file is shorter than the {expected} bytes written")));
                }
                Response::Status { code, message, .. } => break Err(SftpError::Status { code, message }),
                other => return Err(unexpected(&other)),
            };
            if data.is_empty() || data.len() > len {
                break Err(SftpError::Protocol(format!("READ of {len} bytes answered with {}", data.len())));
            }
            out[off..off + data.len()].copy_from_slice(&data);
            // A server may answer with fewer bytes than asked: ask again for the rest.
            if data.len() < len {
                todo.push((off + data.len(), len - data.len()));
            }
        };
        // Answers to requests still in flight after an error would confuse the next call.
        for _ in 0..inflight.len() {
            self.recv().await?;
        }
        if result.is_ok() {
            let id = self.id();
            match self.call(read(id, &handle, expected as u64, CHUNK as u32), id).await? {
                Response::Status { code: FX_EOF, .. } => {}
                Response::Data { .. } => {
                    return Err(SftpError::Protocol(format!("the file is longer than the {expected} bytes written")))
                }
                Response::Status { code, message, .. } => return Err(SftpError::Status { code, message }),
                other => return Err(unexpected(&other)),
            }
        }
        let id = self.id();
        let closed = self.expect_ok(close(id, &handle), id).await;
        result?;
        closed?;
        Ok(out)
    }

    pub async fn remove(&mut self, path: &str) -> Result<(), SftpError> {
        let id = self.id();
        self.expect_ok(remove(id, path), id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::sftp::tests::response;
    use std::collections::HashMap;

    /// A fake server over an in-memory pipe: files in a map, short reads to exercise re-requests.
    async fn fake_server(mut s: tokio::io::DuplexStream) {
        let mut files: HashMap<String, Vec<u8>> = HashMap::new();
        let mut open: HashMap<Vec<u8>, String> = HashMap::new();
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 65536];
        loop {
            let n = match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 4 {
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if buf.len() < 4 + len {
                    break;
                }
                let pkt: Vec<u8> = buf.drain(..4 + len).collect();
                let typ = pkt[4];
                let mut r = Reader(&pkt[5..]);
                let status = |id: u32, code: u32| {
                    let mut b = Vec::new();
                    put_u32(&mut b, id);
                    put_u32(&mut b, code);
                    put_str(&mut b, b"");
                    put_str(&mut b, b"");
                    response(FXP_STATUS, &b)
                };
                let out = if typ == FXP_INIT {
                    response(FXP_VERSION, &3u32.to_be_bytes())
                } else {
                    let id = r.u32().expect("id");
                    match typ {
                        FXP_OPEN => {
                            let path = r.string().expect("path");
                            files.entry(path.clone()).or_default();
                            let h = format!("h{id}").into_bytes();
                            open.insert(h.clone(), path);
                            let mut b = Vec::new();
                            put_u32(&mut b, id);
                            put_str(&mut b, &h);
                            response(FXP_HANDLE, &b)
                        }
                        FXP_WRITE => {
                            let h = r.bytes().expect("h").to_vec();
                            let off = u64::from_be_bytes(r.take(8).expect("off").try_into().expect("8")) as usize;
                            let data = r.bytes().expect("data");
                            let f = files.get_mut(&open[&h]).expect("file");
                            if f.len() < off + data.len() {
                                f.resize(off + data.len(), 0);
                            }
                            f[off..off + data.len()].copy_from_slice(data);
                            status(id, FX_OK)
                        }
                        FXP_READ => {
                            let h = r.bytes().expect("h").to_vec();
                            let off = u64::from_be_bytes(r.take(8).expect("off").try_into().expect("8")) as usize;
                            let len = r.u32().expect("len") as usize;
                            let f = &files[&open[&h]];
                            if off >= f.len() {
                                status(id, FX_EOF)
                            } else {
                                // answer at most 10000 bytes: a short read
                                let end = (off + len.min(10_000)).min(f.len());
                                let mut b = Vec::new();
                                put_u32(&mut b, id);
                                put_str(&mut b, &f[off..end]);
                                response(FXP_DATA, &b)
                            }
                        }
                        FXP_CLOSE => status(id, FX_OK),
                        FXP_REMOVE => {
                            let path = r.string().expect("path");
                            status(id, if files.remove(&path).is_some() { FX_OK } else { 2 })
                        }
                        _ => status(id, 8),
                    }
                };
                if s.write_all(&out).await.is_err() {
                    return;
                }
            }
        }
    }

    #[tokio::test]
    async fn upload_download_remove_round_trip() {
        let (client, server) = tokio::io::duplex(1 << 20);
        tokio::spawn(fake_server(server));
        let (mut c, v) = SftpClient::start(client, Duration::from_secs(5)).await.expect("init");
        assert_eq!(v, 3);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        c.upload("/f", &data).await.expect("upload");
        let back = c.download("/f", data.len()).await.expect("download");
        assert_eq!(back, data);
        let longer = c.download("/f", data.len() + 1).await;
        assert!(matches!(longer, Err(SftpError::Protocol(_))), "{longer:?}");
        assert!(matches!(c.download("/f", data.len() - 1).await, Err(SftpError::Protocol(_))));
        c.remove("/f").await.expect("remove");
        assert_eq!(c.remove("/f").await, Err(SftpError::Status { code: 2, message: String::new() }));
    }
}
