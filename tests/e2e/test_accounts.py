"""Account lifecycle: disable/enable, expiry, allowed addresses and protocols, and live sessions ended by
account changes (removed, disabled, password or keys changed), the same over SFTP and FTPS."""

from __future__ import annotations

import ftplib
import socket
import time

import paramiko
import pytest

from conftest import add_user, new_password, run_ferry, wait_until
from ftps_helpers import open_ftps

ENDED_WITHIN = 8  # seconds: the server polls the store every second


def fresh_user(srv, ferry, name):
    pw = new_password()
    add_user(ferry, srv.data_dir, name, password=pw)
    return pw


def sftp_login(srv, user, pw, source=None):
    sock = socket.create_connection((srv.listeners["sftp"][0], srv.listeners["sftp"][1]), timeout=10,
                                    source_address=(source, 0) if source else None)
    t = paramiko.Transport(sock)
    t.banner_timeout = t.auth_timeout = 10
    try:
        t.connect(username=user, password=pw)
    except BaseException:
        t.close()
        raise
    return t


def sftp_refused(srv, user, pw, source=None) -> bool:
    try:
        sftp_login(srv, user, pw, source).close()
    except paramiko.AuthenticationException:
        return True
    return False


def ftps_refused(srv, user, pw) -> bool:
    try:
        open_ftps(srv, user=user, password=pw).quit()
    except ftplib.error_perm as e:
        assert str(e).startswith("530"), e
        return True
    return False


def ftps_ended(ftps) -> bool:
    """True once the server has ended the session (421 on the next command, or the connection closed)."""
    try:
        ftps.voidcmd("NOOP")
    except (ftplib.error_temp, EOFError, OSError) as e:
        return not isinstance(e, ftplib.error_temp) or str(e).startswith("421")
    return False


@pytest.mark.parametrize("change", ["disable", "remove", "passwd"])
def test_account_changes_end_live_sessions(shared_ftps_server, ferry, change):
    srv = shared_ftps_server
    name = f"live-{change}"
    pw = fresh_user(srv, ferry, name)
    t = sftp_login(srv, name, pw)
    sftp = paramiko.SFTPClient.from_transport(t)
    assert sftp.listdir("/") == []
    ftps = open_ftps(srv, user=name, password=pw)
    before = len(srv.log())
    start = time.monotonic()
    if change == "disable":
        run_ferry(ferry, srv.data_dir, "user", "disable", name)
    elif change == "remove":
        run_ferry(ferry, srv.data_dir, "user", "remove", name)
    else:
        run_ferry(ferry, srv.data_dir, "user", "passwd", name, "--password-stdin", input=new_password() + "\n")
    try:
        assert wait_until(lambda: not t.is_active(), ENDED_WITHIN), "the SFTP session outlived the change"
        assert wait_until(lambda: ftps_ended(ftps), ENDED_WITHIN), "the FTPS session outlived the change"
        assert time.monotonic() - start < ENDED_WITHIN + 2
    finally:
        t.close()
        ftps.close()
    reason = {"disable": "account disabled", "remove": "account removed", "passwd": "password or keys changed"}[change]
    lines = [l for l in srv.log()[before:].splitlines() if "ending session" in l and f"user={name}" in l]
    assert len(lines) == 2 and all(reason in l for l in lines), srv.log()[before:]
    if change == "disable":
        assert sftp_refused(srv, name, pw) and ftps_refused(srv, name, pw)
        assert srv.wait_for_log(rf"login failed: account disabled.*user={name}", since=before, timeout=5)
        run_ferry(ferry, srv.data_dir, "user", "enable", name)
        sftp_login(srv, name, pw).close()


def test_expiry(shared_ftps_server, ferry):
    srv = shared_ftps_server
    pw = fresh_user(srv, ferry, "temp")
    run_ferry(ferry, srv.data_dir, "user", "set", "temp", "--expires", "2020-03-31")
    assert sftp_refused(srv, "temp", pw) and ftps_refused(srv, "temp", pw)
    assert srv.wait_for_log(r"login failed: account expired on 2020-03-31.*user=temp", timeout=5)
    run_ferry(ferry, srv.data_dir, "user", "set", "temp", "--expires", "2999-12-31")
    sftp_login(srv, "temp", pw).close()
    run_ferry(ferry, srv.data_dir, "user", "set", "temp", "--expires", "never")
    open_ftps(srv, user="temp", password=pw).quit()


def test_allowed_addresses(shared_ftps_server, ferry):
    srv = shared_ftps_server
    pw = fresh_user(srv, ferry, "branch")
    run_ferry(ferry, srv.data_dir, "user", "set", "branch", "--allow-from", "127.0.0.2/32", "10.0.0.0/8")
    assert sftp_refused(srv, "branch", pw)  # from 127.0.0.1
    assert srv.wait_for_log(r"login failed: address 127\.0\.0\.1 is not allowed for this account.*user=branch", timeout=5)
    sftp_login(srv, "branch", pw, source="127.0.0.2").close()
    # A session from an address the account no longer allows ends.
    t = sftp_login(srv, "branch", pw, source="127.0.0.2")
    run_ferry(ferry, srv.data_dir, "user", "set", "branch", "--allow-from", "10.0.0.0/8")
    assert wait_until(lambda: not t.is_active(), ENDED_WITHIN)
    t.close()
    run_ferry(ferry, srv.data_dir, "user", "set", "branch", "--allow-from", "any")
    sftp_login(srv, "branch", pw).close()


def test_allowed_protocols(shared_ftps_server, ferry):
    srv = shared_ftps_server
    pw = fresh_user(srv, ferry, "ftpsonly")
    run_ferry(ferry, srv.data_dir, "user", "set", "ftpsonly", "--protocols", "ftps")
    assert sftp_refused(srv, "ftpsonly", pw)
    open_ftps(srv, user="ftpsonly", password=pw).quit()
    run_ferry(ferry, srv.data_dir, "user", "set", "ftpsonly", "--protocols", "sftp")
    assert ftps_refused(srv, "ftpsonly", pw)
    sftp_login(srv, "ftpsonly", pw).close()
    run_ferry(ferry, srv.data_dir, "user", "set", "ftpsonly", "--protocols", "any")
    open_ftps(srv, user="ftpsonly", password=pw).quit()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--expires", "31.03.2027"], "is not a date"),
        (["--expires", "2027-02-30"], "is not a date"),
        (["--allow-from", "example.com"], "is not an address"),
        (["--protocols", "sftp,scp"], "is not a list of protocols"),
        ([], "nothing to change"),
    ],
)
def test_set_refuses_bad_values(shared_ftps_server, ferry, args, message):
    srv = shared_ftps_server
    fresh_user(srv, ferry, "strict") if "strict" not in run_ferry(ferry, srv.data_dir, "user", "list").stdout else None
    p = run_ferry(ferry, srv.data_dir, "user", "set", "strict", *args, check=False)
    assert p.returncode == 2, p
    assert message in p.stderr and "hint:" in p.stderr, p.stderr
