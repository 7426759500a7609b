"""Per-user and per-address limits, the same decision over SFTP and FTPS: sessions per user (per user and
the server default), connections per address, and upload/download rates per session."""

from __future__ import annotations

import ftplib
import io
import os
import socket
import subprocess
import time

import paramiko
import pytest

from conftest import run_ferry, sftp_client, ssh_options, wait_until
from ftps_helpers import open_ftps, retr_bytes

TIMEOUT = 10
LISTEN = ("sftp=127.0.0.1:0", "ftps=127.0.0.1:0")


def second_sftp_refused(srv) -> str:
    """Logs in over SFTP while the user is at their limit; returns what OpenSSH's sftp printed."""
    # OpenSSH logs a disconnect's text at INFO: the suite's usual LogLevel=ERROR would hide it.
    opts = [o if o != "LogLevel=ERROR" else "LogLevel=INFO" for o in ssh_options(srv, srv.key)]
    proc = subprocess.run(
        ["sftp", "-b", "-", "-P", str(srv.port), *opts, "-o", "BatchMode=yes",
         f"{srv.user}@{srv.host}"],
        input="ls\n", capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode != 0, "a session beyond the limit was served"
    return proc.stderr


def test_max_sessions_per_user_refuses_the_next_session_on_every_protocol(alice_servers, ferry):
    srv = alice_servers(listen=LISTEN)
    out = run_ferry(ferry, srv.data_dir, "user", "set", "alice", "--max-sessions", "1").stdout
    assert "max sessions: 1" in out
    with sftp_client(srv, timeout=TIMEOUT) as sftp:
        sftp.listdir("/")
        said = second_sftp_refused(srv)
        assert "Too many sessions for alice: 1 at once" in said, said
        with pytest.raises(ftplib.error_temp, match="^421 Too many sessions for alice"):
            open_ftps(srv)
        assert sftp.listdir("/") == [], "the session that holds the place goes on"
    assert wait_until(lambda: srv.log().count("logout user=alice") >= 1, timeout=5)
    ftps = open_ftps(srv)  # the place is free again
    try:
        assert ftps.nlst() == []
    finally:
        ftps.quit()
    log = srv.log()
    assert "limit: refused: the user has 1 sessions, the most allowed (max_sessions 1)" in log, log[-3000:]
    assert "login failed" not in log, "a limit is not a failed login (the defender must not count it)"
    shown = run_ferry(ferry, srv.data_dir, "user", "show", "alice").stdout
    assert "sessions    at most 1 at once" in shown, shown


def test_the_server_default_applies_to_users_without_their_own(alice_servers, ferry):
    srv = alice_servers(listen=LISTEN, config="[limits]\nmax_sessions_per_user = 1\n")
    first = open_ftps(srv)
    try:
        with pytest.raises(ftplib.error_temp, match="^421 Too many sessions"):
            open_ftps(srv)
        # A user's own setting wins over the default: 0 lifts the limit for them.
        run_ferry(ferry, srv.data_dir, "user", "set", "alice", "--max-sessions", "0")
        second = open_ftps(srv)
        second.quit()
    finally:
        first.quit()


def test_connections_per_address_count_logged_in_ones(alice_servers):
    srv = alice_servers(listen=LISTEN, config="[limits]\nmax_connections_per_ip = 2\n")
    held = [open_ftps(srv), open_ftps(srv)]
    try:
        host, port = srv.listeners["ftps"]
        with socket.create_connection((host, port), timeout=TIMEOUT) as s:
            line = s.recv(200)
        assert line.startswith(b"421 Too many connections from your address"), line
        # Another address is not affected.
        with socket.create_connection((host, port), timeout=TIMEOUT, source_address=("127.0.0.2", 0)) as s:
            assert s.recv(4).startswith(b"220")
    finally:
        for f in held:
            f.quit()
    assert srv.wait_for_log(r"max_connections_per_ip", timeout=2)


@pytest.mark.parametrize("protocol", ["sftp", "ftps"])
def test_upload_and_download_rates_hold_per_session(alice_servers, ferry, protocol):
    srv = alice_servers(listen=LISTEN)
    rate = 512 * 1024
    data = os.urandom(1024 * 1024)  # 2 s at the rate
    run_ferry(ferry, srv.data_dir, "user", "set", "alice", "--upload-rate", str(rate), "--download-rate", str(rate))
    start = time.monotonic()
    if protocol == "sftp":
        with sftp_client(srv, timeout=TIMEOUT) as sftp:
            sftp.putfo(io.BytesIO(data), "/r.bin")
            up = time.monotonic() - start
            start = time.monotonic()
            got = sftp.open("/r.bin").read()
    else:
        ftps = open_ftps(srv)
        try:
            ftps.storbinary("STOR /r.bin", io.BytesIO(data))
            up = time.monotonic() - start
            start = time.monotonic()
            got = retr_bytes(ftps, "/r.bin")
        finally:
            ftps.quit()
    down = time.monotonic() - start
    assert got == data
    assert 1.6 <= up <= 6, f"1 MiB uploaded in {up:.2f}s at {rate} bytes/s"
    assert 1.6 <= down <= 6, f"1 MiB downloaded in {down:.2f}s at {rate} bytes/s"
    # Lifted: full speed again.
    run_ferry(ferry, srv.data_dir, "user", "set", "alice", "--upload-rate", "0", "--download-rate", "0")
    with sftp_client(srv, timeout=TIMEOUT) as sftp:
        start = time.monotonic()
        sftp.putfo(io.BytesIO(data), "/r2.bin")
        assert time.monotonic() - start < 1.5
