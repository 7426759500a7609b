//! The passive port range, shared by every session: each PASV/EPSV gets a listener on a free port of the
//! range, held until its transfer is over.
//!
//! Ports are tried from a random start, then in sequence, so that two sessions rarely race for one port
//! and the next port is not guessable from the last reply. A port is skipped when one of our own sessions
//! holds it or when binding it fails (another program has it).

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use rand::Rng;
use tokio::net::{TcpListener, TcpSocket};

use crate::limits::PASSIVE_BACKLOG;

pub(crate) struct PassivePorts {
    lo: u16,
    hi: u16,
    held: Mutex<HashSet<u16>>,
}

/// Why no listener could be opened.
#[derive(Debug)]
pub(crate) enum PortError {
    /// Every port of the range is in use.
    Exhausted { lo: u16, hi: u16 },
    /// Binding failed for another reason (for example the address is not on this machine any more).
    Bind(io::Error),
}

/// A listener on a passive port; the port returns to the pool when this is dropped.
pub(crate) struct PassiveListener {
    pub(crate) listener: TcpListener,
    pub(crate) port: u16,
    pool: Arc<PassivePorts>,
}

impl Drop for PassiveListener {
    fn drop(&mut self) {
        self.pool.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.port);
    }
}

impl PassivePorts {
    pub(crate) fn new((a, b): (u16, u16)) -> PassivePorts {
        // Port 0 is not a port; a range given backwards is still a range.
        let (lo, hi) = (a.min(b).max(1), a.max(b).max(1));
        PassivePorts { lo, hi, held: Mutex::new(HashSet::new()) }
    }

    pub(crate) fn size(&self) -> u32 {
        u32::from(self.hi) - u32::from(self.lo) + 1
    }

    /// Opens a listener on `ip` on a free port of the range.
    pub(crate) fn listen(self: &Arc<Self>, ip: IpAddr) -> Result<PassiveListener, PortError> {
        let n = self.size();
        let start = rand::thread_rng().gen_range(0..n);
        for i in 0..n {
            let port = (u32::from(self.lo) + (start + i) % n) as u16;
            if !self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
                continue;
            }
            match bind(SocketAddr::new(ip, port)) {
                Ok(listener) => return Ok(PassiveListener { listener, port, pool: self.clone() }),
                Err(e) => {
                    self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&port);
                    if e.kind() != io::ErrorKind::AddrInUse {
                        return Err(PortError::Bind(e));
                    }
                }
            }
        }
        Err(PortError::Exhausted { lo: self.lo, hi: self.hi })
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // Lets a port be reused while connections of earlier transfers on it sit in TIME_WAIT; a port that
    // another socket listens on still fails with AddrInUse.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(PASSIVE_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_out_distinct_ports_then_runs_out() {
        // Find a free 3-port window by binding to port 0 first (other tests run in parallel).
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        let base = probe.local_addr().expect("addr").port().saturating_sub(3).max(1024);
        drop(probe);
        let pool = Arc::new(PassivePorts::new((base, base + 2)));
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let mut held = Vec::new();
        let mut ports = HashSet::new();
        while let Ok(l) = pool.listen(ip) {
            assert!((base..=base + 2).contains(&l.port));
            assert!(ports.insert(l.port), "a port handed out twice");
            held.push(l);
        }
        assert!(held.len() <= 3);
        assert!(matches!(pool.listen(ip), Err(PortError::Exhausted { .. })));
        if let Some(l) = held.pop() {
            let port = l.port;
            drop(l);
            let again = pool.listen(ip).expect("the freed port is available again");
            assert_eq!(again.port, port);
        }
    }

    #[test]
    fn backwards_range() {
        let p = PassivePorts::new((2000, 1000));
        assert_eq!((p.lo, p.hi, p.size()), (1000, 2000, 1001));
    }
}
