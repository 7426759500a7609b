"""Protocol detection: any client on any port of a multi-protocol listener, the implicit-FTPS fallback for
clients that wait for a greeting, and hint lines for clients on the wrong port."""

import re
import socket
import ssl
import subprocess
import time
from ftplib import FTP_TLS

import paramiko
import pytest

from conftest import have, read_line, wait_until


def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


@pytest.fixture
def any_server(ftps_server_factory):
    return ftps_server_factory(listen=["any=127.0.0.1:0"], expect=["sftp", "ftps", "ftps-implicit"])


def test_one_port_serves_all_three_protocols(any_server):
    srv = any_server
    port = srv.listeners["sftp"][1]
    assert srv.listeners["ftps"][1] == port == srv.listeners["ftps-implicit"][1]

    # SFTP (paramiko speaks first with its SSH version line).
    t = paramiko.Transport(("127.0.0.1", port))
    t.connect(username=srv.user, password=srv.password)
    sftp = paramiko.SFTPClient.from_transport(t)
    with sftp.open("via-sftp.txt", "wb") as f:
        f.write(b"one port\n")
    t.close()

    # Explicit FTPS (waits for the greeting).
    ftps = FTP_TLS(context=ctx(), timeout=15)
    ftps.connect("127.0.0.1", port)
    ftps.login(srv.user, srv.password)
    ftps.prot_p()
    assert "via-sftp.txt" in ftps.nlst()
    ftps.quit()

    # Implicit FTPS (TLS ClientHello first).
    if have("curl"):
        out = subprocess.run(
            ["curl", "-sS", "-k", "-u", f"{srv.user}:{srv.password}", f"ftps://127.0.0.1:{port}/via-sftp.txt"],
            capture_output=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout == b"one port\n"


def test_stock_ftplib_on_the_implicit_port_gets_explicit_ftps(ftps_server_factory):
    """`FTP_TLS().connect(host, implicit_port)` waits for a greeting a normal implicit server never sends;
    Ferry greets it after a short silence and serves explicit FTPS (AUTH TLS required)."""
    srv = ftps_server_factory(listen=["ftps-implicit=127.0.0.1:0"], expect=["ftps-implicit"])
    port = srv.listeners["ftps-implicit"][1]
    ftps = FTP_TLS(context=ctx(), timeout=15)
    welcome = ftps.connect("127.0.0.1", port)
    assert welcome.startswith("220")
    ftps.login(srv.user, srv.password)
    ftps.prot_p()
    ftps.storbinary("STOR fallback.txt", __import__("io").BytesIO(b"hello"))
    assert "fallback.txt" in ftps.nlst()
    ftps.quit()
    assert "hint: client sent nothing to the implicit FTPS port" in srv.log()
    # Without TLS the fallback still demands it: no clear-text credentials.
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    s.sendall(b"USER alice\r\n")
    assert f.readline().startswith(b"530")
    s.close()


def test_ssh_client_that_waits_for_the_server_first(any_server):
    """A silent client gets the FTP greeting; answering with an SSH version line (RFC 4253 lets servers
    send lines before their version) makes it an SFTP session."""
    port = any_server.listeners["sftp"][1]
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert read_line(s).startswith(b"220")
    s.sendall(b"SSH-2.0-WaitingClient_1.0\r\n")
    line = read_line(s)
    assert line.startswith(b"SSH-2.0-Ferry"), line
    s.close()


def test_silent_client_is_eventually_served_ssh(any_server):
    port = any_server.listeners["sftp"][1]
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert read_line(s).startswith(b"220")
    start = time.monotonic()
    line = read_line(s, timeout=10)
    assert line.startswith(b"SSH-2.0-Ferry"), line
    assert time.monotonic() - start < 8
    s.close()


def test_wrong_protocol_on_single_protocol_listeners_gets_a_hint(ftps_server_factory):
    srv = ftps_server_factory(
        listen=["sftp=127.0.0.1:0", "ftps-implicit=127.0.0.1:0", "ftps=127.0.0.1:0"],
        expect=["sftp", "ftps-implicit", "ftps"],
    )
    sftp_port = srv.listeners["sftp"][1]
    implicit = srv.listeners["ftps-implicit"][1]
    # An implicit FTPS client (TLS ClientHello) on the SFTP port.
    with pytest.raises((ssl.SSLError, OSError)):
        raw = socket.create_connection(("127.0.0.1", sftp_port), timeout=10)
        ctx().wrap_socket(raw, server_hostname="localhost")
    assert wait_until(
        lambda: "sent a TLS ClientHello" in srv.log() and f"implicit FTPS is served on 127.0.0.1:{implicit}" in srv.log(),
        timeout=5,
    ), srv.log()
    # An SSH client on the explicit FTPS port.
    ftps_port = srv.listeners["ftps"][1]
    t = paramiko.Transport(("127.0.0.1", ftps_port))
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        t.start_client(timeout=5)
    t.close()
    assert wait_until(
        lambda: "sent an SSH identification line" in srv.log() and f"SFTP is served on 127.0.0.1:{sftp_port}" in srv.log(),
        timeout=5,
    ), srv.log()


def _send_line(sock, line: bytes) -> bytes:
    sock.sendall(line + b"\r\n")
    return read_line(sock)


def test_any_listener_never_takes_a_password_in_clear(any_server):
    """The quickstart's `any` ports serve explicit FTPS, never plain FTP: "AUTH TLS required before any
    password", whether the FTP client waits for the greeting or speaks first."""
    srv = any_server
    port = srv.listeners["ftps"][1]
    before = len(srv.log())
    for speaks_first in (False, True):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            if speaks_first:
                s.sendall(f"USER {srv.user}\r\n".encode())
                assert read_line(s).startswith(b"220")
                user = read_line(s)
            else:
                assert read_line(s).startswith(b"220")
                user = _send_line(s, f"USER {srv.user}".encode())
            assert user.startswith(b"530") and b"AUTH TLS" in user, (speaks_first, user)
            password = _send_line(s, f"PASS {srv.password}".encode())
            assert password[:3] in (b"530", b"503"), (speaks_first, password)
            assert _send_line(s, b"AUTH TLS").startswith(b"234"), "the client could still upgrade to TLS"
    assert not re.search(r"\blogin user=", srv.log()[before:]), srv.log()[before:]


def test_http_request_gets_a_plain_answer(any_server):
    port = any_server.listeners["sftp"][1]
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = s.recv(4096)
    assert data.startswith(b"HTTP/1.0 400"), data
    assert b"not HTTP" in data
    s.close()
