"""`[log] format = "json"` and `[log] xferlog`: the same events as the text log, for machines.

With format = "json" every line on stderr is one JSON object carrying every field of the event; with
xferlog set, every completed or cut-off transfer of SFTP and FTPS is one line of a wu-ftpd/ProFTPD/vsftpd
style transfer log, which SIGHUP reopens after logrotate moved it away.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import stat

import paramiko

from conftest import connect_transport, sftp_client, wait_until
from ftps_helpers import close_quietly, open_ftps, retr_bytes, stor_bytes

LISTEN = ("sftp=127.0.0.1:0", "ftps=127.0.0.1:0")
CLIENT = re.compile(r"^127\.0\.0\.1:\d+$")
CTIME = re.compile(r"^(Sun|Mon|Tue|Wed|Thu|Fri|Sat) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d \d{4} ")


def json_events(srv) -> list[dict]:
    """Every stderr line, each of which must be one JSON object with a timestamp, a level and a message."""
    events = []
    for line in srv.log().splitlines():
        event = json.loads(line)  # a line that is not JSON fails the test here
        assert isinstance(event, dict), line
        assert {"timestamp", "level", "message"} <= event.keys(), line
        events.append(event)
    return events


def find(events: list[dict], message: str, protocol: str) -> list[dict]:
    return [e for e in events if e["message"] == message and e.get("protocol") == protocol]


def test_json_log_lines_carry_every_field_for_sftp_and_ftps(alice_servers):
    srv = alice_servers(listen=LISTEN, config='[log]\nformat = "json"\nlevel = "info"\n')
    # A name a client chose to forge a line: in JSON it stays one line and comes back intact.
    forged = "/s\n{\"level\":\"INFO\",\"message\":\"login\"}\u2028x.txt"
    with sftp_client(srv) as sftp:
        sftp.putfo(io.BytesIO(b"s" * 10), "/s.txt")
        sftp.putfo(io.BytesIO(b"z" * 3), forged)
    ftps = open_ftps(srv)
    stor_bytes(ftps, "/f.txt", b"f" * 20)
    close_quietly(ftps, quit=True)
    assert wait_until(
        lambda: find(json_events(srv), "logout", "sftp") and find(json_events(srv), "logout", "ftps"), timeout=10
    ), srv.log()
    events = json_events(srv)
    for protocol, path, size in (("sftp", "/s.txt", 10), ("ftps", "/f.txt", 20)):
        logins = find(events, "login", protocol)
        assert len(logins) == 1, events
        assert logins[0]["user"] == "alice" and CLIENT.match(logins[0]["client"]), logins
        assert logins[0]["level"] == "INFO", logins
        if protocol == "sftp":  # SSH names its authentication method; FTP has only USER/PASS
            assert logins[0]["method"] == "password", logins
        transfers = [e for e in find(events, "transfer", protocol) if e["path"] == path]
        assert len(transfers) == 1, events
        t = transfers[0]
        assert t["user"] == "alice" and CLIENT.match(t["client"]), t
        assert (t["bytes_written"], t["bytes_read"]) == (size, 0), t
        assert isinstance(t["duration_ms"], int), t
        logout = find(events, "logout", protocol)[0]
        assert logout["user"] == "alice" and isinstance(logout["duration_ms"], int), logout
    assert [e["bytes_written"] for e in find(events, "transfer", "sftp") if e["path"] == forged] == [3], events
    assert not [e for e in events if e["message"] == "login" and "protocol" not in e], "a forged line got through"


def xferlog_lines(path) -> list[list[str]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    for line in lines:
        assert CTIME.match(line), line
    return [line.split() for line in lines]


def xfer(fields: list[str]) -> dict:
    """The fields of an xferlog line after the 5-part date."""
    assert len(fields) == 18, fields
    keys = ("secs", "host", "size", "name", "type", "action", "direction", "access", "user", "service",
            "auth", "auth_user", "status")
    return dict(zip(keys, fields[5:]))


def test_xferlog_records_sftp_and_ftps_transfers_and_reopens_on_sighup(alice_servers, tmp_path):
    xferlog = tmp_path / "logs" / "xferlog"
    xferlog.parent.mkdir()
    srv = alice_servers(listen=LISTEN, config=f'[log]\nxferlog = "{xferlog}"\n')
    with sftp_client(srv) as sftp:
        sftp.putfo(io.BytesIO(b"s" * 1000), "/up s.bin")
        sftp.getfo("/up s.bin", io.BytesIO())
    ftps = open_ftps(srv)
    stor_bytes(ftps, "/f.bin", b"f" * 2000)
    assert retr_bytes(ftps, "/f.bin") == b"f" * 2000
    close_quietly(ftps, quit=True)
    # An upload cut off: the transport goes away mid-write, without a CLOSE.
    t = connect_transport(srv)
    sftp = paramiko.SFTPClient.from_transport(t)
    f = sftp.open("/cut.bin", "w")
    f.write(os.urandom(100_000))
    f.flush()  # every WRITE answered
    f._closed = True  # never send a CLOSE for it
    t.sock.shutdown(socket.SHUT_RDWR)
    t.sock.close()
    t.close()
    assert wait_until(lambda: len(xferlog_lines(xferlog)) >= 5, timeout=10), xferlog.read_text()
    records = [xfer(f) for f in xferlog_lines(xferlog)]
    assert len(records) == 5, records
    got = {(r["name"], r["direction"], r["service"]): r for r in records}
    expected = {
        ("/up_s.bin", "i", "sftp"): ("1000", "c"),
        ("/up_s.bin", "o", "sftp"): ("1000", "c"),
        ("/f.bin", "i", "ftp"): ("2000", "c"),
        ("/f.bin", "o", "ftp"): ("2000", "c"),
        ("/cut.bin", "i", "sftp"): ("100000", "i"),
    }
    assert set(got) == set(expected), records
    for k, (size, status) in expected.items():
        r = got[k]
        assert (r["size"], r["status"]) == (size, status), r
        assert (r["host"], r["user"], r["type"], r["action"], r["access"]) == ("127.0.0.1", "alice", "b", "_", "r"), r
        assert (r["auth"], r["auth_user"]) == ("0", "*") and int(r["secs"]) >= 1, r
    assert stat.S_IMODE(xferlog.stat().st_mode) & ~0o640 == 0, oct(xferlog.stat().st_mode)

    # logrotate: move the file away, SIGHUP, and the next transfer lands in a new file at the same path.
    rotated = xferlog.with_name("xferlog.1")
    os.rename(xferlog, rotated)
    since = len(srv.log())
    srv.proc.send_signal(signal.SIGHUP)
    assert srv.wait_for_log(r"reopened the transfer log", since=since, timeout=5), srv.log()[since:]
    with sftp_client(srv) as sftp:
        sftp.putfo(io.BytesIO(b"n" * 7), "/after.bin")
    assert wait_until(lambda: len(xferlog_lines(xferlog)) == 1, timeout=10), srv.log()[since:]
    (record,) = [xfer(f) for f in xferlog_lines(xferlog)]
    assert (record["name"], record["size"], record["direction"], record["status"]) == ("/after.bin", "7", "i", "c")
    assert len(xferlog_lines(rotated)) == 5, "the rotated file got lines after the reopen"
    assert srv.alive()


def test_a_transfer_log_that_cannot_be_written_is_refused_at_start(alice_servers, tmp_path):
    missing = tmp_path / "no-such-dir" / "xferlog"
    try:
        alice_servers(listen=("sftp=127.0.0.1:0",), config=f'[log]\nxferlog = "{missing}"\n')
    except AssertionError as e:
        assert "cannot open the transfer log" in str(e) and "hint:" in str(e), str(e)
    else:
        raise AssertionError("the server started without its transfer log")
