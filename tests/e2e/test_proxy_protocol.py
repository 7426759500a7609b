"""PROXY protocol listeners (issue 13): a load balancer in front sends a v1 or v2 header naming the client,
and that address is the one Ferry uses for logs, bans, --allow-from and FTP data connections. Only
`[server] trusted_proxies` may connect to such a listener; anyone else is refused whatever it sends.

The node listens on 127.0.0.2; the "balancer" is 127.0.0.1 (trusted), first a Python socket writing headers
by hand (so the tests can name any client), then a real HAProxy with `send-proxy-v2` in front of SFTP,
explicit and implicit FTPS, and the passive data ports."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import socket
import time
import types

import paramiko
import pytest

from conftest import balancer_ports, first_line, words_until_closed, free_port, proxy_v2, run_ferry, wait_until
from ftps_helpers import client_context, curl_ftps, ftp_url

TIMEOUT = 10
NODE = "127.0.0.2"


def proxy_v1(src: str, sport: int, dst: str = NODE, dport: int = 2222) -> bytes:
    return f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()


def node_config(passive_address: str = "", extra: str = "", passive: str = "{passive_ports}") -> str:
    listeners = ",\n".join(
        f'  {{ protocols = "{p}", address = "{NODE}:0", proxy_protocol = true }}'
        for p in ("sftp", "ftps", "ftps-implicit")
    )
    ftps = f'[ftps]\npassive_address = "{passive_address}"\n' if passive_address else ""
    return (
        f'[server]\ntrusted_proxies = ["127.0.0.1/32"]\npassive_ports = "{passive}"\nlisteners = [\n{listeners},\n]\n'
        f"{ftps}[defender]\nsafelist = []\nthreshold = 100\n{extra}"
    )


@pytest.fixture
def node(ftps_server_factory):
    return ftps_server_factory(listen=(), config=node_config(), expect=("sftp", "ftps", "ftps-implicit"))


def sftp_via(srv, header: bytes, source: str = "127.0.0.1", user: str = "", password: str = "") -> paramiko.Transport:
    """An SSH transport that first writes `header`, as a balancer would; authenticated when a password is given."""
    sock = socket.create_connection(srv.listeners["sftp"], timeout=TIMEOUT, source_address=(source, 0))
    sock.sendall(header)
    t = paramiko.Transport(sock)
    t.banner_timeout = t.auth_timeout = TIMEOUT
    t.start_client(timeout=TIMEOUT)
    if password:
        t.auth_password(user or srv.user, password)
    return t


def ftps_via(srv, header: bytes) -> ftplib.FTP_TLS:
    """An explicit FTPS client whose control connection starts with `header` (ftplib's connect(), by hand)."""
    sock = socket.create_connection(srv.listeners["ftps"], timeout=TIMEOUT)
    sock.sendall(header)
    f = ftplib.FTP_TLS(context=client_context(), timeout=TIMEOUT)
    f.sock, f.af = sock, sock.family
    f.host, f.port = srv.listeners["ftps"]
    f.file = sock.makefile("r", encoding=f.encoding)
    f.welcome = f.getresp()
    return f


def test_the_headers_client_is_the_one_logged_banned_and_checked(node, ferry):
    # v1 and v2 both name the client; its address and port are in the login line.
    t = sftp_via(node, proxy_v1("203.0.113.9", 4242), password=node.password)
    paramiko.SFTPClient.from_transport(t).listdir("/")
    t.close()
    assert node.wait_for_log(r"\blogin\b.*client=203\.0\.113\.9:4242", timeout=5), node.log()[-2000:]
    t = sftp_via(node, proxy_v2("198.51.100.7", 5151, NODE, 2222), password=node.password)
    t.close()
    assert node.wait_for_log(r"\blogin\b.*client=198\.51\.100\.7:5151", timeout=5), node.log()[-2000:]
    f = ftps_via(node, proxy_v2("198.51.100.8", 6161, NODE, 21))
    f.auth()
    f.login(node.user, node.password)
    f.quit()
    assert node.wait_for_log(r"\blogin\b.*client=198\.51\.100\.8:6161", timeout=5), node.log()[-2000:]

    # A ban of the header's address holds, though every connection comes from the balancer's 127.0.0.1.
    run_ferry(ferry, node.data_dir, "ban", "add", "203.0.113.9", "--for", "1h")

    def refused() -> bool:
        return first_line(node.listeners["sftp"], send=proxy_v1("203.0.113.9", 4243)).startswith(b"Your address is banned")

    assert wait_until(refused, timeout=4), "the ban of the proxied client did not apply"
    t = sftp_via(node, proxy_v1("203.0.113.10", 4244), password=node.password)
    t.close()  # its neighbour, and the balancer itself, are served

    # --allow-from sees the header's address too.
    run_ferry(ferry, node.data_dir, "user", "set", node.user, "--allow-from", "198.51.100.0/24")
    t = sftp_via(node, proxy_v2("198.51.100.7", 5152, NODE, 2222), password=node.password)
    t.close()
    with pytest.raises(paramiko.AuthenticationException):
        sftp_via(node, proxy_v2("192.0.2.1", 5153, NODE, 2222), password=node.password)
    assert node.wait_for_log(r"address 192\.0\.2\.1 is not allowed for this account", timeout=5)


def test_only_trusted_proxies_may_connect_and_they_must_send_a_header(node):
    since = len(node.log())
    # Someone other than the balancer, with or without a forged header: refused with a sentence, never read.
    for send in (b"", proxy_v1("127.0.0.1", 1000)):
        start = time.monotonic()
        said = words_until_closed(node.listeners["sftp"], "127.0.0.5", send)
        assert said.startswith(b"This port takes connections only through the load balancer"), said
        assert time.monotonic() - start < 2
    said = words_until_closed(node.listeners["ftps"], "127.0.0.5")
    assert said.startswith(b"421 This port takes connections only through the load balancer"), said
    line = node.wait_for_log(r"hint: refused 127\.0\.0\.5: listener .* has proxy_protocol = true", since=since, timeout=5)
    assert line is not None and "trusted_proxies" in line, node.log()[since:]
    # The balancer without send-proxy: a plain SSH client from the trusted address is closed, and told why.
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        sftp_via(node, b"").close()
    assert node.wait_for_log(r"did not start with a PROXY protocol header", since=since, timeout=7)
    # A broken header from the balancer: closed, one line.
    words_until_closed(node.listeners["sftp"], "127.0.0.1", b"PROXY TCP4 1.2.3.4 oops\r\n")
    assert node.wait_for_log(r"malformed PROXY protocol header", since=since, timeout=5)
    # And the listener still serves.
    sftp_via(node, proxy_v2("198.51.100.7", 5000, NODE, 2222), password=node.password).close()


def test_a_data_connection_must_speak_for_the_same_client(node):
    f = ftps_via(node, proxy_v2("127.0.0.1", 7000, NODE, 21))
    f.auth()
    f.login(node.user, node.password)
    f.prot_p()
    since = len(node.log())
    host, port = ftplib.parse227(f.sendcmd("PASV"))
    # A data connection through the balancer for another client is closed: no transfer theft via the proxy.
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.sendall(proxy_v2("192.0.2.99", 7001, NODE, port))
        assert s.recv(1) == b""
    line = node.wait_for_log(r"closed a data connection from another address than the client's", since=since, timeout=5)
    assert line is not None and "from=192.0.2.99:7001" in line, line
    # The client's own data connections (direct, from the same address) work.
    data = os.urandom(300_000)

    f.storbinary("STOR d.bin", io.BytesIO(data))
    got: list[bytes] = []
    f.retrbinary("RETR d.bin", got.append)
    assert b"".join(got) == data
    f.quit()


# --------------------------------------------------------------------------------------------------
# A real HAProxy in front


def test_sftp_and_ftps_through_haproxy(ftps_server_factory, haproxy, tmp_path):
    lo, hi = balancer_ports()
    node = ftps_server_factory(listen=(), config=node_config(passive_address="127.0.0.1", passive=f"{lo}-{hi}"),
                               expect=("sftp", "ftps", "ftps-implicit"))
    front = {p: ("127.0.0.1", free_port()) for p in ("sftp", "ftps", "ftps-implicit")}
    routes = [(f"{h}:{port}", [f"{node.listeners[p][0]}:{node.listeners[p][1]}"]) for p, (h, port) in front.items()]
    # Each passive port goes to the same port of the node, with a header too (no port on the server line).
    routes.append((f"127.0.0.1:{lo}-{hi}", [NODE]))
    haproxy(routes)
    lb = types.SimpleNamespace(listeners=front, user=node.user, password=node.password)

    data = os.urandom(3 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    # SFTP: the login line names the client's own source port, which only the header carries.
    sock = socket.create_connection(front["sftp"], timeout=TIMEOUT)
    client_port = sock.getsockname()[1]
    t = paramiko.Transport(sock)
    t.start_client(timeout=TIMEOUT)
    t.auth_password(node.user, node.password)
    sftp = paramiko.SFTPClient.from_transport(t)
    with sftp.open("via-sftp.bin", "wb") as fh:
        fh.write(data)
    with sftp.open("via-sftp.bin", "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == digest
    t.close()
    assert node.wait_for_log(rf"\blogin\b.*client=127\.0\.0\.1:{client_port}\b", timeout=5), node.log()[-3000:]

    # FTPS, explicit and implicit, with curl: control and passive data both through the balancer.
    (tmp_path / "up.bin").write_bytes(data)
    for implicit in (False, True):
        name = f"via-ftps-{'implicit' if implicit else 'explicit'}.bin"
        curl_ftps(lb, "-T", str(tmp_path / "up.bin"), ftp_url(lb, name, implicit), implicit=implicit)
        assert hashlib.sha256((node.root / name).read_bytes()).hexdigest() == digest
        out = tmp_path / f"down-{name}"
        curl_ftps(lb, "-o", str(out), ftp_url(lb, "via-sftp.bin", implicit), implicit=implicit)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    assert "closed a data connection" not in node.log(), node.log()[-3000:]
    for trouble in ("malformed PROXY", "did not start with a PROXY", "closed a connection from a load balancer"):
        assert trouble not in node.log(), node.log()[-3000:]
