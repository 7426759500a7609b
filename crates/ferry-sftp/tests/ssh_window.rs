//! Flow control on SSH channels: with `manual_window_adjust` (Ferry's patch to russh, see
//! vendor/russh/FERRY-PATCH.md) a client may send no more than the server has handed back, so a stalled
//! server is not flooded. Regression test for russh replenishing the window on receipt, not on use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKeyOrCertificate};
use russh::server::{self, Auth, ChannelOpenHandle, Handle, Msg, Session};
use russh::{client, Channel, ChannelId, Limits};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep, timeout};

const WINDOW: usize = 64 * 1024;
const PAYLOAD: usize = 1024 * 1024;
/// How long a stalled server watches for bytes beyond the window: at loopback speed an unthrottled
/// client would send the rest of the payload in a fraction of this.
const QUIET: Duration = Duration::from_millis(300);
/// Only reached when a test fails.
const DEADLINE: Duration = Duration::from_secs(3);

struct Server {
    received: watch::Sender<usize>,
    opened: Option<oneshot::Sender<(Handle, ChannelId)>>,
    /// Hand each chunk's window back from `data()` with `Session::adjust_window`.
    adjust_in_callback: bool,
}

impl server::Handler for Server {
    type Error = russh::Error;

    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Data is taken in `data()`; nobody reads the channel's own queue.
        let id = channel.id();
        drop(channel);
        reply.accept().await;
        if let Some(opened) = self.opened.take() {
            let _ = opened.send((session.handle(), id));
        }
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        self.received.send_modify(|n| *n += data.len());
        if self.adjust_in_callback {
            session.adjust_window(channel, data.len() as u32)?;
        }
        Ok(())
    }
}

struct Client;

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Rekeys every 96 KiB each way, so a 1 MiB transfer crosses about ten key re-exchanges.
fn frequent_rekeys() -> Limits {
    Limits::new(96 * 1024, 96 * 1024, Duration::from_secs(3600))
}

struct Transfer {
    received: watch::Receiver<usize>,
    handle: Handle,
    channel: ChannelId,
    _client: client::Handle<Client>,
}

/// Starts a one-connection server on 127.0.0.1:0, connects a client, opens a session channel and starts
/// sending `PAYLOAD` bytes on it.
async fn start(manual: bool, adjust_in_callback: bool, limits: Limits) -> Transfer {
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
    let config = Arc::new(server::Config {
        keys: vec![key],
        auth_rejection_time: Duration::ZERO,
        window_size: WINDOW as u32,
        manual_window_adjust: manual,
        limits: limits.clone(),
        ..Default::default()
    });
    let (received_tx, received) = watch::channel(0);
    let (opened_tx, opened) = oneshot::channel();
    let handler = Server { received: received_tx, opened: Some(opened_tx), adjust_in_callback };

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let session = server::run_stream(config, stream, handler).await.expect("handshake");
        let _ = session.await;
    });

    let config = Arc::new(client::Config { limits, ..Default::default() });
    let mut client = client::connect(config, addr, Client).await.expect("connect");
    let auth = client.authenticate_password("anyone", "anything").await.expect("auth");
    assert!(auth.success(), "password refused");
    let channel = client.channel_open_session().await.expect("open session");
    tokio::spawn(async move {
        let payload = vec![0x5a_u8; PAYLOAD];
        let _ = channel.data(&payload[..]).await;
        // Keep the channel open until the test ends.
        std::future::pending::<()>().await;
    });
    let (handle, channel) = timeout(DEADLINE, opened).await.expect("channel opened in time").expect("opened");
    Transfer { received, handle, channel, _client: client }
}

impl Transfer {
    /// Waits until at least `n` bytes have arrived, then returns how many have.
    async fn wait_for(&mut self, n: usize) -> usize {
        let arrived = match timeout(DEADLINE, self.received.wait_for(|&got| got >= n)).await {
            Ok(got) => Some(*got.expect("server gone")),
            Err(_) => None,
        };
        arrived.unwrap_or_else(|| panic!("{n} bytes did not arrive; got {}", *self.received.borrow()))
    }

    /// Asserts that the count stays at `n` while the server consumes nothing.
    async fn assert_stalled_at(&mut self, n: usize) {
        assert_eq!(self.wait_for(n).await, n, "more than the window arrived");
        sleep(QUIET).await;
        assert_eq!(*self.received.borrow(), n, "the client kept sending past the window");
    }

    /// Plays a server that consumes what arrives and hands the window back through its `Handle`, with
    /// `returned` bytes already handed back, until the whole payload is in.
    async fn consume_all(&mut self, mut returned: usize) {
        let consumed = timeout(DEADLINE, async {
            loop {
                let got = *self.received.borrow_and_update();
                if got > returned {
                    self.handle.adjust_window(self.channel, (got - returned) as u32).await.expect("session alive");
                    returned = got;
                }
                if got >= PAYLOAD {
                    return got;
                }
                self.received.changed().await.expect("server gone");
            }
        })
        .await;
        let got = consumed.unwrap_or_else(|_| panic!("the payload did not arrive; got {}", *self.received.borrow()));
        assert_eq!(got, PAYLOAD);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_window_holds_the_client_until_the_server_hands_it_back() {
    let mut t = start(true, false, Limits::default()).await;
    t.assert_stalled_at(WINDOW).await;

    t.handle.adjust_window(t.channel, 16 * 1024).await.expect("session alive");
    t.assert_stalled_at(WINDOW + 16 * 1024).await;

    t.consume_all(16 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_adjust_window_survives_key_reexchanges() {
    let mut t = start(true, false, frequent_rekeys()).await;
    t.consume_all(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_adjust_window_in_data_callback_survives_key_reexchanges() {
    let mut t = start(true, true, frequent_rekeys()).await;
    assert_eq!(t.wait_for(PAYLOAD).await, PAYLOAD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_window_still_replenishes_on_receipt() {
    let mut t = start(false, false, Limits::default()).await;
    assert_eq!(t.wait_for(PAYLOAD).await, PAYLOAD);
}
