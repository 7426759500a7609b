//! FtpService on 127.0.0.1:0, driven by a raw FTP client over explicit FTPS (and plain FTP where that is
//! the point).

mod common;

use std::time::Duration;

use std::sync::Arc;

use common::{pattern, settings, start, start_with_grace, Client, OTHER_USER, PASSWORD, USER};
use ferry_ftp::FtpMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn greeting_and_clear_text_login_refused() {
    let srv = start(FtpMode::Explicit, settings()).await;
    let (mut c, greeting) = Client::connect(srv.addr).await;
    assert_eq!(greeting.code, 220);
    let r = c.cmd("USER alice").await;
    assert_eq!(r.code, 530, "{r:?}");
    assert!(r.text.contains("AUTH TLS"), "{r:?}");
    assert_eq!(c.cmd("PASS x").await.code, 530);
    assert_eq!(c.cmd("LIST").await.code, 530);
    assert_eq!(c.cmd("SYST").await.code, 215);
    let feat = c.cmd("FEAT").await;
    assert_eq!(feat.code, 211);
    for f in ["AUTH TLS", "PBSZ", "PROT", "UTF8", "EPSV", "EPRT", "MLSD", "SIZE", "MDTM", "MFMT", "REST STREAM", "TVFS"]
    {
        assert!(feat.text.contains(f), "FEAT lacks {f}: {}", feat.text);
    }
    assert!(feat.text.contains("MLST type*;size*;modify*;perm*;unix.mode*;"), "{}", feat.text);
    assert_eq!(c.cmd("QUIT").await.code, 221);
    assert!(c.try_read_reply().await.is_none(), "closed after QUIT");
}

#[tokio::test]
async fn clear_text_pipelined_behind_auth_tls_is_discarded_not_run() {
    let (logs, _guard) = common::capture_logs();
    let srv = start(FtpMode::Explicit, settings()).await;
    let (mut c, _) = Client::connect(srv.addr).await;
    // The STARTTLS command injection: a man in the middle appends commands to AUTH TLS in clear text,
    // hoping the server runs them inside the encrypted session.
    c.send_raw(format!("AUTH TLS\r\nUSER {USER}\r\nPASS {PASSWORD}\r\n").as_bytes()).await;
    assert_eq!(c.read_reply().await.code, 234);
    c.start_tls().await;
    let r = c.cmd("PWD").await;
    assert_eq!(r.code, 530, "the injected login did not run: {r:?}");
    assert!(
        logs.text().contains("discarding clear-text bytes sent after AUTH TLS before the handshake"),
        "{}",
        logs.text()
    );
    assert_eq!(c.cmd(&format!("USER {USER}")).await.code, 331, "a login inside TLS works");
    assert_eq!(c.cmd(&format!("PASS {PASSWORD}")).await.code, 230);
}

#[tokio::test]
async fn tls_login_list_store_retrieve() {
    let srv = start(FtpMode::Explicit, settings()).await;
    let mut c = Client::login(srv.addr).await;
    assert_eq!(c.cmd("PWD").await.text, "257 \"/\" is the current directory");
    assert_eq!(c.cmd("TYPE I").await.code, 200);

    let content = pattern(3 * 1024 * 1024 + 17);
    let (first, last) = c.upload("STOR big.bin", &content).await;
    assert_eq!((first.code, last.code), (150, 226), "{first:?} {last:?}");
    assert_eq!(std::fs::read(srv.home.join("big.bin")).expect("stored file"), content);

    let (first, listing, last) = c.download("LIST").await;
    assert_eq!((first.code, last.code), (150, 226));
    let listing = String::from_utf8(listing).expect("utf8 listing");
    assert!(listing.contains(" big.bin\r\n") && listing.starts_with("-rw"), "{listing}");
    assert!(listing.contains(&format!("{}", content.len())), "{listing}");

    let (first, got, last) = c.download("RETR big.bin").await;
    assert_eq!((first.code, last.code), (150, 226), "{first:?} {last:?}");
    assert!(first.text.contains(&format!("({} bytes)", content.len())), "{first:?}");
    assert!(got == content, "RETR returns the file byte for byte");

    assert_eq!(c.cmd("SIZE big.bin").await.text, format!("213 {}", content.len()));
    let (first, names, _) = c.download("NLST").await;
    assert_eq!(first.code, 150);
    assert_eq!(names, b"big.bin\r\n");
    let (_, mlsd, _) = c.download("MLSD").await;
    let mlsd = String::from_utf8(mlsd).expect("utf8");
    assert!(mlsd.contains("type=cdir;") && mlsd.contains(&format!("type=file;size={};", content.len())), "{mlsd}");
    assert!(mlsd.contains(" big.bin\r\n"), "{mlsd}");
    assert_eq!(c.cmd("QUIT").await.code, 221);
}

#[tokio::test]
async fn overlong_line_and_unknown_command() {
    let srv = start(FtpMode::Explicit, settings()).await;
    let mut c = Client::login(srv.addr).await;
    let mut long = vec![b'A'; 10_000];
    long.extend_from_slice(b"\r\n");
    c.send_raw(&long).await;
    let r = c.read_reply().await;
    assert_eq!(r.code, 500, "{r:?}");
    assert_eq!(c.cmd("NOOP").await.code, 200, "the session goes on after an overlong line");
    let r = c.cmd("FROB x").await;
    assert_eq!(r.code, 502);
    assert!(r.text.contains("FROB"), "{r:?}");
    assert_eq!(c.cmd("RETR").await.code, 501);
    assert_eq!(c.cmd("TYPE E").await.code, 504);
    assert_eq!(c.cmd("RNTO x").await.code, 503);
    assert_eq!(c.cmd("CCC").await.code, 534);
    assert_eq!(c.cmd("PROT C").await.code, 534);
    assert_eq!(c.cmd("AUTH TLS").await.code, 503);
}

#[tokio::test]
async fn file_commands() {
    let srv = start(FtpMode::Explicit, settings()).await;
    std::fs::write(srv.home.join("a.txt"), b"hello").expect("seed");
    let mut c = Client::login(srv.addr).await;
    assert_eq!(c.cmd("MKD sub dir").await.text, "257 \"/sub dir\" created");
    assert_eq!(c.cmd("CWD sub dir").await.code, 250);
    assert_eq!(c.cmd("PWD").await.text, "257 \"/sub dir\" is the current directory");
    assert_eq!(c.cmd("CDUP").await.code, 250);
    assert_eq!(c.cmd("CWD a.txt").await.code, 550);
    assert_eq!(c.cmd("CWD ../../..").await.code, 250);
    assert_eq!(c.cmd("PWD").await.text, "257 \"/\" is the current directory");
    assert_eq!(c.cmd("RNFR a.txt").await.code, 350);
    assert_eq!(c.cmd("RNTO sub dir/b.txt").await.code, 250);
    assert_eq!(std::fs::read(srv.home.join("sub dir/b.txt")).expect("renamed"), b"hello");
    assert_eq!(c.cmd("RNFR missing").await.code, 550);
    assert_eq!(c.cmd("MFMT 20200102030405 sub dir/b.txt").await.text, "213 Modify=20200102030405; sub dir/b.txt");
    assert_eq!(c.cmd("MDTM sub dir/b.txt").await.text, "213 20200102030405");
    let r = c.cmd("MLST sub dir/b.txt").await;
    assert_eq!(r.code, 250);
    assert!(r.text.contains(" type=file;size=5;modify=20200102030405;"), "{r:?}");
    assert!(r.text.contains("; /sub dir/b.txt"), "{r:?}");
    let r = c.cmd("STAT sub dir").await;
    assert_eq!(r.code, 213);
    assert!(r.text.contains(" b.txt"), "{r:?}");
    assert_eq!(c.cmd("SIZE sub dir").await.code, 550);
    assert_eq!(c.cmd("RMD sub dir").await.code, 550, "not empty");
    assert_eq!(c.cmd("DELE sub dir/b.txt").await.code, 250);
    assert_eq!(c.cmd("RMD sub dir").await.code, 250);
    assert_eq!(c.cmd("SIZE nothing").await.code, 550);
    let (first, _, _) = c.download("RETR nothing").await;
    assert_eq!(first.code, 550);
    assert_eq!(c.cmd("STAT").await.code, 211);
    assert_eq!(c.cmd("HELP").await.code, 214);
}

#[tokio::test]
async fn resume_append_and_unique() {
    let srv = start(FtpMode::Explicit, settings()).await;
    let mut c = Client::login(srv.addr).await;
    let (_, last) = c.upload("STOR f", b"0123456789").await;
    assert_eq!(last.code, 226);
    // REST + STOR writes in place from the offset: the beginning is kept.
    assert_eq!(c.cmd("REST 5").await.code, 350);
    let (_, last) = c.upload("STOR f", b"abcdefgh").await;
    assert_eq!(last.code, 226);
    assert_eq!(std::fs::read(srv.home.join("f")).expect("f"), b"01234abcdefgh");
    let (_, last) = c.upload("APPE f", b"XYZ").await;
    assert_eq!(last.code, 226);
    assert_eq!(std::fs::read(srv.home.join("f")).expect("f"), b"01234abcdefghXYZ");
    assert_eq!(c.cmd("REST 13").await.code, 350);
    let (_, got, last) = c.download("RETR f").await;
    assert_eq!((got.as_slice(), last.code), (&b"XYZ"[..], 226));
    let (first, last) = c.upload("STOU f", b"unique").await;
    assert_eq!((first.code, last.code), (150, 226));
    assert_eq!(first.text, "150 FILE: f.1");
    assert_eq!(std::fs::read(srv.home.join("f.1")).expect("f.1"), b"unique");
}

#[tokio::test]
async fn a_plain_stor_replaces_the_whole_file_and_the_150_names_the_mode() {
    let srv = start(FtpMode::Explicit, settings()).await;
    std::fs::write(srv.home.join("f"), b"0123456789").expect("seed");
    let mut c = Client::login(srv.addr).await;
    let (first, last) = c.upload("STOR f", b"short").await;
    assert_eq!((first.text.as_str(), last.code), ("150 Ok to send data", 226));
    assert_eq!(std::fs::read(srv.home.join("f")).expect("f"), b"short", "no tail of the longer file left");
    let (first, got, _) = c.download("RETR f").await;
    assert_eq!(first.text, "150 Opening BINARY mode data connection for f (5 bytes)");
    assert_eq!(got, b"short");
    assert_eq!(c.cmd("TYPE A").await.code, 200);
    let (first, _, _) = c.download("RETR f").await;
    assert_eq!(first.text, "150 Opening ASCII mode data connection for f (5 bytes)");
    // Each transfer is on the event stream (the log and the xferlog), listings are not.
    let (_, _, last) = c.download("LIST").await;
    assert_eq!(last.code, 226);
    let f = || "/f".to_string();
    assert_eq!(srv.transfers.list(), vec![(f(), 0, 5, true), (f(), 5, 0, true), (f(), 5, 0, true)]);
}

#[tokio::test]
async fn an_upload_cut_without_close_notify_is_discarded_unless_it_resumed() {
    let (logs, _guard) = common::capture_logs();
    let srv = start(FtpMode::Explicit, settings()).await;
    std::fs::write(srv.home.join("keep"), b"old").expect("seed");
    let mut c = Client::login(srv.addr).await;
    let (first, last) = c.upload_without_close_notify("STOR keep", b"new data").await;
    assert_eq!(first.code, 150);
    assert_eq!(
        last.text,
        "426 Data connection closed without TLS close_notify: the upload is incomplete and was discarded"
    );
    assert_eq!(std::fs::read(srv.home.join("keep")).expect("keep"), b"old");
    // A resume writes in place: what arrived stays, for the next REST.
    assert_eq!(c.cmd("REST 3").await.code, 350);
    let (_, last) = c.upload_without_close_notify("STOR keep", b"XYZ").await;
    assert_eq!(last.text, "426 Data connection closed without TLS close_notify: the upload is incomplete");
    let (_, last) = c.upload_without_close_notify("APPE keep", b"123").await;
    assert_eq!(last.text, "426 Data connection closed without TLS close_notify: the upload is incomplete");
    let cut: Vec<bool> = srv.transfers.list().iter().map(|t| t.3).collect();
    assert_eq!(cut, [false, false, false], "logged as cut off, not as complete");
    // The admin's line says what became of each upload.
    let text = logs.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("transfer interrupted")).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("; the upload was undone, any previous file is kept user=alice"), "{}", lines[0]);
    for resumed in &lines[1..] {
        assert!(resumed.contains("; the bytes received so far were kept (resume with REST) user=alice"), "{resumed}");
    }
    assert_eq!(c.cmd("NOOP").await.code, 200);
}

#[tokio::test]
async fn cut_upload_keeps_previous_file() {
    let srv = start(FtpMode::Explicit, settings()).await;
    std::fs::write(srv.home.join("keep"), b"old").expect("seed");
    let mut c = Client::login(srv.addr).await;
    let port = c.epsv().await;
    let tcp = TcpStream::connect((srv.addr.ip(), port)).await.expect("data");
    c.send_raw(b"STOR keep\r\n").await;
    assert_eq!(c.read_reply().await.code, 150);
    let mut data = tokio_rustls::TlsConnector::from(c.tls.clone())
        .connect(rustls::pki_types::ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    data.write_all(b"new content that never completes").await.expect("write");
    data.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Reset the connection (SO_LINGER 0) instead of closing it.
    data.get_ref().0.set_zero_linger().expect("linger");
    drop(data);
    let r = c.read_reply().await;
    assert_eq!(r.code, 426, "{r:?}");
    assert_eq!(std::fs::read(srv.home.join("keep")).expect("keep"), b"old");
    assert_eq!(c.cmd("NOOP").await.code, 200);
}

#[tokio::test]
async fn abort_during_download() {
    let srv = start(FtpMode::Explicit, settings()).await;
    std::fs::write(srv.home.join("huge"), pattern(64 * 1024 * 1024)).expect("seed");
    let mut c = Client::login(srv.addr).await;
    let port = c.epsv().await;
    let tcp = TcpStream::connect((srv.addr.ip(), port)).await.expect("data");
    c.send_raw(b"RETR huge\r\n").await;
    assert_eq!(c.read_reply().await.code, 150);
    let mut data = tokio_rustls::TlsConnector::from(c.tls.clone())
        .connect(rustls::pki_types::ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    let mut buf = vec![0u8; 65536];
    let n = data.read(&mut buf).await.expect("some data");
    assert!(n > 0);
    // Stop reading (the server blocks on a full socket) and abort.
    c.send_raw(b"\xff\xf4\xff\xf2ABOR\r\n").await;
    let r = c.read_reply().await;
    assert_eq!(r.code, 426, "{r:?}");
    assert_eq!(c.read_reply().await.code, 226);
    assert_eq!(c.cmd("NOOP").await.code, 200);
    drop(data);
    // The transfer's file guard is gone.
    for _ in 0..50 {
        if srv.activity.open_files() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(srv.activity.open_files(), 0);
}

#[tokio::test]
async fn failed_logins_then_421() {
    let srv = start(FtpMode::Implicit, settings()).await;
    let tcp = TcpStream::connect(srv.addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(common::client_tls(false))
        .connect(rustls::pki_types::ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("implicit handshake");
    let mut c = Client::from_stream(Box::pin(tls), srv.addr);
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("PASS early").await.code, 503);
    for _ in 0..2 {
        assert_eq!(c.cmd(&format!("USER {USER}")).await.code, 331);
        assert_eq!(c.cmd("PASS wrong").await.code, 530);
    }
    assert_eq!(c.cmd("USER nobody").await.code, 331);
    assert_eq!(c.cmd("PASS wrong").await.code, 421);
    assert!(c.try_read_reply().await.is_none());
    let _ = PASSWORD;
}

#[tokio::test]
async fn session_reuse_required() {
    for tls12 in [false, true] {
        let mut s = settings();
        s.require_session_reuse = true;
        let srv = start(FtpMode::Explicit, s).await;
        std::fs::write(srv.home.join("x"), b"data").expect("seed");
        // Same client config for control and data: the data connection resumes the control session.
        let mut c = Client::login_with(srv.addr, common::client_tls(tls12)).await;
        for _ in 0..3 {
            let (first, got, last) = c.download("RETR x").await;
            assert_eq!((first.code, got.as_slice(), last.code), (150, &b"data"[..], 226), "tls12 = {tls12}");
        }
        let (_, last) = c.upload("STOR y", b"up").await;
        assert_eq!(last.code, 226, "tls12 = {tls12}");
        let (first, got, last) = c.download_eager("RETR x").await;
        assert_eq!((first.code, got.as_slice(), last.code), (150, &b"data"[..], 226), "eager, tls12 = {tls12}");
        // A fresh TLS configuration has no session to resume: refused.
        c.tls = common::client_tls(tls12);
        let port = c.epsv().await;
        let tcp = TcpStream::connect((srv.addr.ip(), port)).await.expect("data");
        c.send_raw(b"RETR x\r\n").await;
        assert_eq!(c.read_reply().await.code, 150);
        let _ = tokio_rustls::TlsConnector::from(c.tls.clone())
            .connect(rustls::pki_types::ServerName::try_from("localhost").expect("name"), tcp)
            .await;
        let r = c.read_reply().await;
        assert_eq!(r.code, 425, "tls12 = {tls12}: {r:?}");
        assert!(r.text.contains("TLS session reuse required"), "{r:?}");
    }
}

/// Clients such as rclone keep one TLS session cache for all their control connections, so a data
/// connection may resume a sibling control connection's session: accepted when that connection logged in
/// as the same user, refused for another user's session.
#[tokio::test]
async fn session_reuse_across_connections_of_one_user() {
    for tls12 in [false, true] {
        let mut s = settings();
        s.require_session_reuse = true;
        let srv = start(FtpMode::Explicit, s).await;
        std::fs::write(srv.home.join("x"), b"data").expect("seed");
        let shared = Arc::new(rustls::client::ClientSessionMemoryCache::new(64));
        // The sibling logs in first and leaves its tickets in the shared store.
        let sibling = Client::login_with(srv.addr, common::client_tls_with_store(tls12, shared.clone())).await;
        let mut c = Client::login_with(srv.addr, common::client_tls(tls12)).await;
        c.tls = common::client_tls_with_store(tls12, shared.clone());
        let (first, got, last) = c.download("RETR x").await;
        assert_eq!((first.code, got.as_slice(), last.code), (150, &b"data"[..], 226), "tls12 = {tls12}");
        drop(sibling);
        // Another user's session does not open this user's data connection.
        let other_store = Arc::new(rustls::client::ClientSessionMemoryCache::new(64));
        let _other =
            Client::login_as(srv.addr, common::client_tls_with_store(tls12, other_store.clone()), OTHER_USER).await;
        c.tls = common::client_tls_with_store(tls12, other_store);
        let (first, _, _) = c.download_expect_refusal("RETR x").await;
        assert_eq!(first.code, 150);
    }
}

#[tokio::test]
async fn plain_mode_active_and_bounce() {
    let srv = start(FtpMode::Plain, settings()).await;
    std::fs::write(srv.home.join("p"), b"plain bytes").expect("seed");
    let (mut c, g) = Client::connect(srv.addr).await;
    assert_eq!(g.code, 220);
    assert_eq!(c.cmd(&format!("USER {USER}")).await.code, 331);
    assert_eq!(c.cmd(&format!("PASS {PASSWORD}")).await.code, 230);
    let stat = c.cmd("STAT").await;
    assert!(stat.text.contains("Control connection: plain; data connections: clear"), "{stat:?}");
    // FTP bounce: PORT to an address other than the client's.
    let r = c.cmd("PORT 10,9,8,7,195,80").await;
    assert_eq!(r.code, 500);
    assert!(r.text.contains("refused: PORT to a foreign address (FTP bounce)"), "{r:?}");
    assert_eq!(c.cmd("EPRT |1|10.9.8.7|50000|").await.code, 500);
    // Active mode to ourselves.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    assert_eq!(c.cmd(&format!("EPRT |1|127.0.0.1|{port}|")).await.code, 200);
    c.send_raw(b"RETR p\r\n").await;
    let (mut data, _) = listener.accept().await.expect("server connects");
    assert_eq!(c.read_reply().await.code, 150);
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.expect("read");
    assert_eq!(got, b"plain bytes");
    assert_eq!(c.read_reply().await.code, 226);
    // Plain passive upload.
    let addr = c.pasv().await;
    let mut data = TcpStream::connect(addr).await.expect("data");
    c.send_raw(b"STOR q\r\n").await;
    assert_eq!(c.read_reply().await.code, 150);
    data.write_all(b"uploaded").await.expect("write");
    drop(data);
    assert_eq!(c.read_reply().await.code, 226);
    assert_eq!(std::fs::read(srv.home.join("q")).expect("q"), b"uploaded");
    assert_eq!(c.cmd("EPSV ALL").await.code, 200);
    assert_eq!(c.cmd("PASV").await.code, 501);
}

#[tokio::test]
async fn transfer_needs_prot_p_on_tls_listener() {
    let srv = start(FtpMode::Explicit, settings()).await;
    let (mut c, _) = Client::connect(srv.addr).await;
    c.auth_tls().await;
    assert_eq!(c.cmd(&format!("USER {USER}")).await.code, 331);
    assert_eq!(c.cmd(&format!("PASS {PASSWORD}")).await.code, 230);
    let _ = c.epsv().await;
    let r = c.cmd("LIST").await;
    assert_eq!(r.code, 521, "{r:?}");
    assert_eq!(c.cmd("LIST").await.code, 425, "the data setup was used up");
}

#[tokio::test]
async fn login_and_idle_timeouts() {
    let mut s = settings();
    s.idle_timeout = Duration::from_millis(600);
    let srv = start_with_grace(FtpMode::Explicit, s, Duration::from_millis(300)).await;
    let (mut c, _) = Client::connect(srv.addr).await;
    let r = c.read_reply().await;
    assert_eq!(r.text, "421 No login within 0s; closing the connection", "the login deadline, not the idle one");
    assert!(c.try_read_reply().await.is_none());
    let mut c = Client::login(srv.addr).await;
    assert_eq!(c.cmd("NOOP").await.code, 200, "logged in: the login timeout no longer applies");
    let r = c.read_reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text.contains("Timeout"), "{r:?}");
}

#[tokio::test]
async fn passive_range_exhausted() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let port = probe.local_addr().expect("addr").port();
    drop(probe);
    let mut s = settings();
    s.passive_ports = (port, port);
    let srv = start(FtpMode::Explicit, s).await;
    let mut a = Client::login(srv.addr).await;
    assert_eq!(a.epsv().await, port);
    let mut b = Client::login(srv.addr).await;
    let r = b.cmd("EPSV").await;
    assert_eq!(r.code, 425, "{r:?}");
    assert!(r.text.contains("No passive port available (all 1 ports of the range are in use)"), "{r:?}");
    // A new PASV of the holder replaces its listener, so the port is free again for it.
    assert_eq!(a.epsv().await, port);
    assert_eq!(a.cmd("ABOR").await.code, 225);
    assert_eq!(b.epsv().await, port, "ABOR released the listener");
}

#[tokio::test]
async fn data_connection_from_another_address_is_closed() {
    let srv = start(FtpMode::Explicit, settings()).await;
    std::fs::write(srv.home.join("f"), b"mine").expect("seed");
    let mut c = Client::login(srv.addr).await;
    let port = c.epsv().await;
    // Someone else (127.0.0.2) grabs the passive port first: the server closes it and keeps waiting.
    let intruder = tokio::net::TcpSocket::new_v4().expect("socket");
    intruder.bind("127.0.0.2:0".parse().expect("addr")).expect("bind 127.0.0.2");
    let mut stolen = intruder.connect((srv.addr.ip(), port).into()).await.expect("connect");
    let mut sink = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), stolen.read_to_end(&mut sink)).await.expect("closed soon");
    assert!(n.is_err() || sink.is_empty(), "the intruder gets nothing");
    let tcp = TcpStream::connect((srv.addr.ip(), port)).await.expect("data");
    c.send_raw(b"RETR f\r\n").await;
    assert_eq!(c.read_reply().await.code, 150);
    let mut data = tokio_rustls::TlsConnector::from(c.tls.clone())
        .connect(rustls::pki_types::ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.expect("read");
    assert_eq!(got, b"mine");
    assert_eq!(c.read_reply().await.code, 226);
}
