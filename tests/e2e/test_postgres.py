"""The PostgreSQL user store (issue 13): `[users] database = "postgres://..."`. Two Ferry nodes (127.0.0.2 and
127.0.0.3, each with its own data dir and passive range) share one database: a user added through either
node's CLI logs in on both, a ban made by one node's defender holds on the other and is lifted from the
other's CLI, a password changed anywhere is changed everywhere. The same `ferry user` / `ferry ban` commands
work against it.

Files: both nodes serve the same local directory here (one machine); on several machines that is S3's job."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import socket
import time

import paramiko
import pytest

from conftest import FerryServer, first_line, new_password, passive_ports, run_ferry, wait_until
from ftps_helpers import client_context

TIMEOUT = 10
APPLIED_WITHIN = 5.0  # a node polls the database's change counter every second


def node_config(url: str, ip: str, passive: tuple[int, int]) -> str:
    return (
        f'[server]\npassive_ports = "{passive[0]}-{passive[1]}"\nlisteners = [\n'
        f'  {{ protocols = "sftp", address = "{ip}:0" }},\n  {{ protocols = "ftps", address = "{ip}:0" }},\n]\n'
        f'[users]\ndatabase = "{url}"\n[defender]\nthreshold = 2\nsafelist = []\n'
    )


class Node:
    def __init__(self, ferry, base, url: str, ip: str, passive: tuple[int, int]):
        self.ferry, self.ip = ferry, ip
        base.mkdir(parents=True)
        self.conf = base / "ferry.toml"
        self.conf.write_text(node_config(url, ip, passive))
        self.data_dir = base / "data"
        self.srv = FerryServer(ferry, self.data_dir, base / "serve.log", listen=(), extra_args=["--config", str(self.conf)])

    def cli(self, *args: str, **kw):
        return run_ferry(self.ferry, self.data_dir, "--config", str(self.conf), *args, **kw)


@pytest.fixture
def nodes(ferry, tmp_path, postgres_url):
    lo, hi = passive_ports()
    half = (hi - lo + 1) // 2
    a = Node(ferry, tmp_path / "a", postgres_url, "127.0.0.2", (lo, lo + half - 1))
    b = Node(ferry, tmp_path / "b", postgres_url, "127.0.0.3", (lo + half, hi))
    yield a, b
    for n in (a, b):
        if n.srv.proc is not None and n.srv.alive():
            assert n.srv.stop() == 0, n.srv.log()[-3000:]


def sftp_login(node: Node, user: str, password: str, source: str = "127.0.0.1") -> paramiko.Transport:
    sock = socket.create_connection(node.srv.listeners["sftp"], timeout=TIMEOUT, source_address=(source, 0))
    t = paramiko.Transport(sock)
    t.banner_timeout = t.auth_timeout = TIMEOUT
    t.start_client(timeout=TIMEOUT)
    t.auth_password(user, password)
    return t


def ftps_login(node: Node, user: str, password: str) -> ftplib.FTP_TLS:
    f = ftplib.FTP_TLS(context=client_context(), timeout=TIMEOUT)
    f.connect(*node.srv.listeners["ftps"])
    f.auth()
    f.login(user, password)
    f.prot_p()
    return f


def banned(node: Node, source: str) -> bool:
    return first_line(node.srv.listeners["sftp"], source).startswith(b"Your address is banned")


def test_two_nodes_share_users_bans_and_passwords(nodes):
    a, b = nodes
    pw = new_password()
    a.cli("user", "add", "alice", "--password-stdin", input=pw + "\n")
    a.srv.start()
    b.srv.start()
    assert "demo password" not in a.srv.stdout() + b.srv.stdout(), "the shared store had a user: no demo user"
    assert not (a.data_dir / "users.db").exists() and not (b.data_dir / "users.db").exists()

    # Uploaded through node B over SFTP, downloaded through node A over FTPS: the same user, the same bytes.
    data = os.urandom(1 << 20)
    t = sftp_login(b, "alice", pw)
    with paramiko.SFTPClient.from_transport(t).open("shared.bin", "wb") as fh:
        fh.write(data)
    t.close()
    f = ftps_login(a, "alice", pw)
    got = io.BytesIO()
    f.retrbinary("RETR shared.bin", got.write)
    f.quit()
    assert hashlib.sha256(got.getvalue()).digest() == hashlib.sha256(data).digest()

    # A user added through one node's CLI logs in on the other at once.
    pw2 = new_password()
    b.cli("user", "add", "carol", "--password-stdin", input=pw2 + "\n")
    sftp_login(a, "carol", pw2).close()
    assert "carol" in a.cli("user", "list").stdout

    # Failed logins on node A ban the address on node B too.
    for i in range(2):
        with pytest.raises(paramiko.AuthenticationException):
            sftp_login(a, "alice", f"wrong-{i}", source="127.0.0.9")
    assert wait_until(lambda: banned(a, "127.0.0.9"), timeout=3), a.srv.log()[-2000:]
    assert wait_until(lambda: banned(b, "127.0.0.9"), timeout=APPLIED_WITHIN), "node B did not learn the ban"
    assert "127.0.0.9" in b.cli("ban", "list").stdout
    # ... and node B's CLI lifts it everywhere.
    b.cli("ban", "remove", "127.0.0.9")
    assert wait_until(lambda: not banned(a, "127.0.0.9"), timeout=APPLIED_WITHIN), "node A kept the ban"
    sftp_login(a, "alice", pw, source="127.0.0.9").close()

    # Quota usage lives in the database: what alice uploads through node A counts on node B.
    a.cli("user", "set", "alice", "--quota-bytes", "3000000")
    t = sftp_login(b, "alice", pw)  # node B counts alice's files now: 1 MiB
    c = paramiko.SFTPClient.from_transport(t)
    t2 = sftp_login(a, "alice", pw)
    with paramiko.SFTPClient.from_transport(t2).open("more.bin", "wb") as fh:
        fh.write(os.urandom(1536 * 1024))  # 2.5 MiB in all
    t2.close()
    time.sleep(2.5)  # node B re-reads the count when the database changes (polled every second)
    with pytest.raises(IOError, match="Quota exceeded"):
        with c.open("third.bin", "wb") as fh:
            fh.write(os.urandom(1024 * 1024))
    t.close()
    a.cli("user", "set", "alice", "--quota-bytes", "0")

    # A password changed through node A is the password on node B.
    new = new_password()
    a.cli("user", "passwd", "alice", "--password-stdin", input=new + "\n")
    with pytest.raises(paramiko.AuthenticationException):
        sftp_login(b, "alice", pw)
    sftp_login(b, "alice", new).close()


def test_a_database_that_refuses_is_a_clear_error(ferry, tmp_path, postgres_url):
    wrong = postgres_url.replace("ferry-test@", "not-the-password@")
    assert wrong != postgres_url
    conf = tmp_path / "ferry.toml"
    conf.write_text(f'[users]\ndatabase = "{wrong}"\n')
    r = run_ferry(ferry, tmp_path / "d", "--config", str(conf), "user", "list", check=False)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert 'password authentication failed for user "ferry"' in r.stderr and "[users] database" in r.stderr, r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf.write_text(f'[users]\ndatabase = "postgres://ferry:x@127.0.0.1:{port}/ferry"\n')
    r = run_ferry(ferry, tmp_path / "d", "--config", str(conf), "serve", "--listen", "sftp=127.0.0.1:0", check=False)
    assert r.returncode == 1 and "Connection refused" in r.stderr, (r.returncode, r.stderr)
    r = run_ferry(ferry, tmp_path / "d", "--config", str(conf), "config", "check", check=False)
    conf.write_text('[users]\ndatabase = "mysql://ferry@db/ferry"\n')
    r = run_ferry(ferry, tmp_path / "d", "--config", str(conf), "user", "list", check=False)
    assert r.returncode != 0 and "users.database" in r.stderr, r.stderr
