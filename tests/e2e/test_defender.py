"""The defender: failed logins (and bytes of no protocol) from one address, over any protocol, ban that
address for every protocol; a banned address is closed at connect with a sentence; bans live in the user
database, survive restarts and are listed, added and lifted with `ferry ban` while the server runs.

Clients use source addresses 127.0.0.2 and up (every 127/8 address reaches the loopback listeners), so a
ban never touches the 127.0.0.1 the other checks come from."""

from __future__ import annotations

import ftplib
import json
import socket
import time

import paramiko
import pytest

from conftest import first_line, run_ferry, wait_until, words_until_closed
from ftps_helpers import client_context, ftp_addr

TIMEOUT = 10
REFUSED_WITHIN = 2.0  # a banned client is closed at once: no TLS, no key exchange
APPLIED_WITHIN = 4.0  # `ferry ban` from another process reaches the server (it polls every second)
LISTEN = ("sftp=127.0.0.1:0", "ftps=127.0.0.1:0", "ftps-implicit=127.0.0.1:0")


def defender_config(threshold: int = 3, ban_secs: int = 3600, extra: str = "") -> str:
    return f"[defender]\nthreshold = {threshold}\nban_secs = {ban_secs}\nsafelist = []\n{extra}"


def sftp_transport(srv, source: str, listener: str = "sftp") -> paramiko.Transport:
    host, port = srv.listeners[listener][:2]
    sock = socket.create_connection((host, port), timeout=TIMEOUT, source_address=(source, 0))
    t = paramiko.Transport(sock)
    t.banner_timeout = t.auth_timeout = TIMEOUT
    t.start_client(timeout=TIMEOUT)
    return t


def wrong_sftp_passwords(srv, source: str, n: int) -> None:
    t = sftp_transport(srv, source)
    try:
        for i in range(n):
            with pytest.raises(paramiko.AuthenticationException):
                t.auth_password(srv.user, f"wrong-{i}")
    finally:
        t.close()


def wrong_ftps_passwords(srv, source: str, n: int) -> None:
    ftps = ftplib.FTP_TLS(context=client_context(), timeout=TIMEOUT, source_address=(source, 0))
    ftps.connect(*ftp_addr(srv, "ftps"))
    try:
        ftps.auth()
        for i in range(n):
            with pytest.raises(ftplib.error_perm, match="^530"):
                ftps.login(srv.user, f"wrong-{i}")
    finally:
        ftps.close()


def sftp_works(srv, source: str) -> bool:
    t = sftp_transport(srv, source)
    try:
        t.auth_password(srv.user, srv.password)
        sftp = paramiko.SFTPClient.from_transport(t)
        sftp.listdir("/")
        return True
    finally:
        t.close()


def first_words(srv, source: str, listener: str) -> tuple[float, bytes]:
    """Connects from `source` and reads until the server closes: (seconds it took, what it sent)."""
    start = time.monotonic()
    got = words_until_closed(srv.listeners[listener][:2], source)
    return time.monotonic() - start, got


def refused_everywhere(srv, source: str) -> None:
    """The banned address is closed at connect on every listener, told why where its protocol allows (an
    implicit FTPS client expects TLS: it only sees the connection closed)."""
    for listener, expect in (("sftp", b"Your address is banned"), ("ftps", b"421 Your address is banned"),
                             ("ftps-implicit", b"")):
        took, said = first_words(srv, source, listener)
        assert took < REFUSED_WITHIN, f"{listener}: closed after {took:.1f}s"
        assert said.startswith(expect) and (expect or not said), f"{listener}: {said!r}"
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        sftp_transport(srv, source).close()


def is_refused(srv, source: str) -> bool:
    """The first line the FTPS listener sends `source`: a 421 ban, or the greeting of a served client."""
    line = first_line(srv.listeners["ftps"][:2], source, timeout=TIMEOUT)
    assert line.startswith((b"421 ", b"220 ")), line
    return line.startswith(b"421 Your address is banned")


@pytest.mark.parametrize("protocol", ["ftps", "sftp"])
def test_failed_logins_over_one_protocol_ban_the_address_for_all(alice_servers, protocol):
    srv = alice_servers(listen=LISTEN, config=defender_config(threshold=3, ban_secs=4))
    since = len(srv.log())
    (wrong_ftps_passwords if protocol == "ftps" else wrong_sftp_passwords)(srv, "127.0.0.2", 3)
    line = srv.wait_for_log(r"banned for 4s: 3 failed logins within 10m", since=since, timeout=5)
    assert line is not None and "client=127.0.0.2" in line, srv.log()[since:]
    refused_everywhere(srv, "127.0.0.2")
    assert sftp_works(srv, "127.0.0.1"), "another address is not affected"
    refused_line = srv.wait_for_log(r"refusing connections from a banned address", since=since, timeout=2)
    assert refused_line is not None and "client=127.0.0.2" in refused_line
    assert srv.log()[since:].count("refusing connections from a banned address") == 1, "one line per minute"
    # The ban ends by itself.
    assert wait_until(lambda: not is_refused(srv, "127.0.0.2"), timeout=8), "still banned after ban_secs"
    assert sftp_works(srv, "127.0.0.2")


def test_below_the_threshold_nothing_happens_and_a_success_does_not_reset_the_score(alice_servers):
    srv = alice_servers(listen=LISTEN, config=defender_config(threshold=3))
    wrong_sftp_passwords(srv, "127.0.0.2", 2)
    assert sftp_works(srv, "127.0.0.2"), "two failures of three: still served"
    assert "banned for" not in srv.log()
    wrong_ftps_passwords(srv, "127.0.0.2", 1)
    assert wait_until(lambda: is_refused(srv, "127.0.0.2"), timeout=3), "the third failure within 10 minutes bans"


def test_bans_survive_a_restart_and_ferry_ban_lifts_them_while_the_server_runs(alice_servers, ferry):
    srv = alice_servers(listen=LISTEN, config=defender_config(threshold=2))
    wrong_sftp_passwords(srv, "127.0.0.2", 2)
    assert wait_until(lambda: is_refused(srv, "127.0.0.2"), timeout=3)
    listed = json.loads(run_ferry(ferry, srv.data_dir, "ban", "list", "--json").stdout)
    assert [b["ip"] for b in listed] == ["127.0.0.2"], listed
    assert listed[0]["reason"] == "2 failed logins within 10m" and listed[0]["until"].endswith("UTC"), listed
    srv.stop()
    srv = alice_servers.restart(srv)
    assert is_refused(srv, "127.0.0.2"), "the ban was forgotten by the restart"
    out = run_ferry(ferry, srv.data_dir, "ban", "remove", "127.0.0.2").stdout
    assert "lifted the ban of 127.0.0.2" in out
    assert wait_until(lambda: not is_refused(srv, "127.0.0.2"), timeout=APPLIED_WITHIN), "the lift did not apply"
    assert sftp_works(srv, "127.0.0.2")
    # The score went with the ban: one more failure does not ban again at once.
    wrong_ftps_passwords(srv, "127.0.0.2", 1)
    assert sftp_works(srv, "127.0.0.2")


def test_ferry_ban_add_applies_to_a_running_server_and_is_listed(alice_servers, ferry):
    srv = alice_servers(listen=LISTEN, config=defender_config())
    r = run_ferry(ferry, srv.data_dir, "ban", "add", "127.0.0.3", "--for", "1h")
    assert r.stdout.startswith("banned 127.0.0.3 for 1h (until "), r.stdout
    assert wait_until(lambda: is_refused(srv, "127.0.0.3"), timeout=APPLIED_WITHIN), "the ban did not apply"
    refused_everywhere(srv, "127.0.0.3")
    assert sftp_works(srv, "127.0.0.1")
    table = run_ferry(ferry, srv.data_dir, "ban", "list").stdout
    assert "127.0.0.3" in table and "banned by an admin for 1h" in table, table
    run_ferry(ferry, srv.data_dir, "ban", "add", "127.0.0.4", "--for", "forever")
    forever = {b["ip"]: b for b in json.loads(run_ferry(ferry, srv.data_dir, "ban", "list", "--json").stdout)}
    assert forever["127.0.0.4"]["until"] is None, forever
    run_ferry(ferry, srv.data_dir, "ban", "remove", "127.0.0.3")
    assert wait_until(lambda: not is_refused(srv, "127.0.0.3"), timeout=APPLIED_WITHIN)
    # Clear answers to mistakes.
    r = run_ferry(ferry, srv.data_dir, "ban", "remove", "127.0.0.3", check=False)
    assert r.returncode == 1 and "127.0.0.3 is not banned" in r.stderr, (r.returncode, r.stderr)
    r = run_ferry(ferry, srv.data_dir, "ban", "add", "not-an-address", check=False)
    assert r.returncode == 2 and "is not an IP address" in r.stderr, (r.returncode, r.stderr)
    r = run_ferry(ferry, srv.data_dir, "ban", "add", "127.0.0.5", "--for", "1y", check=False)
    assert r.returncode == 2 and "is not a duration" in r.stderr, (r.returncode, r.stderr)


def test_bytes_of_no_protocol_count_too(alice_servers):
    srv = alice_servers(listen=("any=127.0.0.1:0",), config=defender_config(threshold=3, extra="score_failed_login = 0\n"))
    host, port = srv.listeners["sftp"][:2]  # the one `any` listener
    for _ in range(3):
        with socket.create_connection((host, port), timeout=TIMEOUT, source_address=("127.0.0.6", 0)) as s:
            s.sendall(b"\x00\x01\x02 garbage that is no protocol\r\n")
            while s.recv(4096):
                pass
    assert wait_until(lambda: is_refused(srv, "127.0.0.6"), timeout=3), srv.log()[-2000:]
    assert srv.wait_for_log(r"banned for 1h: 3 connections that spoke no known protocol within 10m", timeout=1)


def test_this_machine_is_safelisted_by_default(alice_servers):
    srv = alice_servers(listen=LISTEN, config="[defender]\nthreshold = 2\n")
    wrong_sftp_passwords(srv, "127.0.0.2", 3)
    assert sftp_works(srv, "127.0.0.2"), "loopback is on the default safelist, as fail2ban's ignoreip"
    assert "banned for" not in srv.log()
