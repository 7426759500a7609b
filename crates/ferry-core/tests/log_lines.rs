//! Log lines whose level or wording is the point: what an admin reading the log (or alerting on WARN)
//! relies on.

mod support;

use std::net::IpAddr;

use ferry_core::Defender;
use ferry_vfs::VPath;
use support::{capture_logs, client, fixture, PASSWORD};

fn defender(f: &support::Fixture) -> std::sync::Arc<Defender> {
    Defender::new(Default::default(), f.store.clone(), ferry_core::Events::new())
}

#[test]
fn a_banned_address_knocking_is_logged_once_a_minute_with_what_is_left_of_its_ban() {
    let f = fixture();
    let (logs, _guard) = capture_logs();
    let d = defender(&f);
    let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().expect("ip"), "192.0.2.2".parse().expect("ip"));
    f.store.add_ban(a, ferry_auth::now_unix() + 3600, "by hand").expect("ban");
    f.store.add_ban(b, ferry_auth::FOREVER, "by hand").expect("ban");
    d.reload();
    for _ in 0..3 {
        d.knocked(a);
    }
    d.knocked(b);
    let lines = logs.lines_with(&["refusing connections from a banned address"]);
    assert_eq!(lines.len(), 2, "one line per address, not per knock: {}", logs.text());
    let (first, forever) = (&lines[0], &lines[1]);
    assert!(first.contains("client=192.0.2.1") && first.contains("refused=1"), "{first}");
    // Within the second the ban was made: an hour left, or a second less.
    assert!(first.contains("(for 1h more;") || first.contains("(for 3599s more;"), "{first}");
    assert!(first.contains("`ferry ban remove 192.0.2.1` lifts it"), "{first}");
    assert!(forever.contains("client=192.0.2.2") && forever.contains("(for good;"), "{forever}");
}

#[tokio::test]
async fn a_cut_off_upload_is_a_warning_and_a_stopped_download_is_not() {
    let f = fixture();
    let (logs, _guard) = capture_logs();
    let s = f.core.password_login("alice", PASSWORD, &client("ftps")).await.expect("login");
    let started = std::time::Instant::now();
    s.interrupted(&VPath::root().join(b"up.bin"), 0, 1, started, "connection lost; the previous file is kept");
    s.interrupted(&VPath::root().join(b"down.bin"), 10, 0, started, "the client stopped the download");
    let up = logs.lines_with(&["transfer interrupted: connection lost; the previous file is kept", "path=/up.bin"]);
    assert_eq!(up.len(), 1, "{}", logs.text());
    assert!(up[0].contains(" WARN "), "{}", up[0]);
    let down = logs.lines_with(&["transfer interrupted: the client stopped the download", "path=/down.bin"]);
    assert_eq!(down.len(), 1, "{}", logs.text());
    assert!(down[0].contains(" INFO "), "{}", down[0]);
}
