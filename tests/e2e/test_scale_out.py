"""Scale-out (issue 13), the whole set-up: two Ferry nodes (127.0.0.2 and 127.0.0.3) sharing one PostgreSQL
database and one Garage bucket, HAProxy (`send-proxy-v2`, round robin) on 127.0.0.1 in front of SFTP,
explicit and implicit FTPS and each node's passive range.

Through the balancer: a file uploaded through one node downloads byte-identical through the other; a user
added through one node's CLI logs in everywhere; a ban made by one node holds on the other; killing a node
mid-upload leaves the other serving and no corrupt object behind."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import threading
import uuid

import paramiko
import pytest

from conftest import FerryServer, first_line, free_port, new_password, balancer_ports, proxy_v2, run_ferry, wait_until
from ftps_helpers import curl_ftps, ftp_url

TIMEOUT = 15
PROTOCOLS = ("sftp", "ftps", "ftps-implicit")


class Node:
    def __init__(self, ferry, base, ip: str, config: str):
        base.mkdir(parents=True)
        self.ferry, self.ip = ferry, ip
        self.conf = base / "ferry.toml"
        self.conf.write_text(config)
        self.data_dir = base / "data"
        self.srv = FerryServer(ferry, self.data_dir, base / "serve.log", listen=(), extra_args=["--config", str(self.conf)])

    def cli(self, *args: str, **kw):
        return run_ferry(self.ferry, self.data_dir, "--config", str(self.conf), *args, **kw)

    def logins(self) -> list[str]:
        return re.findall(r"\blogin user=\S+ client=(\S+)", self.srv.log())


def node_config(ip: str, passive: tuple[int, int], db: str, storage: str) -> str:
    listeners = ",\n".join(f'  {{ protocols = "{p}", address = "{ip}:0", proxy_protocol = true }}' for p in PROTOCOLS)
    return (
        f'[server]\ntrusted_proxies = ["127.0.0.1/32"]\npassive_ports = "{passive[0]}-{passive[1]}"\n'
        f"listeners = [\n{listeners},\n]\n"
        f'[ftps]\npassive_address = "127.0.0.1"\n'
        f'[users]\ndatabase = "{db}"\n'
        f"[defender]\nthreshold = 2\nsafelist = []\n" + storage
    )


@pytest.fixture
def cluster(ferry, tmp_path, postgres_url, s3_bucket, haproxy):
    prefix = f"t-{uuid.uuid4().hex[:10]}/"
    lo, hi = balancer_ports()
    half = (hi - lo + 1) // 2
    ranges = [(lo, lo + half - 1), (lo + half, hi)]
    nodes = [
        Node(ferry, tmp_path / name, ip, node_config(ip, r, postgres_url, s3_bucket.storage_toml(prefix)))
        for name, ip, r in (("a", "127.0.0.2", ranges[0]), ("b", "127.0.0.3", ranges[1]))
    ]
    password = new_password()
    nodes[0].cli("user", "add", "alice", "--password-stdin", input=password + "\n")
    for n in nodes:
        n.srv.start()
    front = {p: ("127.0.0.1", free_port()) for p in PROTOCOLS}
    routes = [(f"127.0.0.1:{front[p][1]}", [f"{n.srv.listeners[p][0]}:{n.srv.listeners[p][1]}" for n in nodes])
              for p in PROTOCOLS]
    routes += [(f"127.0.0.1:{r[0]}-{r[1]}", [n.ip]) for n, r in zip(nodes, ranges)]
    haproxy(routes)
    lb = type("Balancer", (), {})()
    lb.listeners, lb.user, lb.password, lb.prefix = front, "alice", password, prefix + "alice/"
    yield nodes, lb
    for n in nodes:
        if n.srv.proc is not None and n.srv.alive():
            assert n.srv.stop() == 0, n.srv.log()[-3000:]


def sftp_session(lb, user: str = "alice", password: str = "", source: str = "127.0.0.1"):
    sock = socket.create_connection(lb.listeners["sftp"], timeout=TIMEOUT, source_address=(source, 0))
    port = sock.getsockname()[1]
    t = paramiko.Transport(sock)
    t.banner_timeout = t.auth_timeout = TIMEOUT
    t.start_client(timeout=TIMEOUT)
    t.auth_password(user, password or lb.password)
    return t, paramiko.SFTPClient.from_transport(t), port


def served_by(nodes, port: int) -> int:
    """Which node logged the login of the client with this source port."""
    for i, n in enumerate(nodes):
        if any(c.endswith(f":{port}") for c in n.logins()):
            return i
    raise AssertionError(f"no node logged a login from port {port}")


def test_two_nodes_behind_haproxy_serve_as_one(cluster, s3_bucket, tmp_path):
    nodes, lb = cluster
    data = os.urandom(12 * 1024 * 1024 + 7)
    digest = hashlib.sha256(data).hexdigest()

    # SFTP: one session per node (round robin), the file crosses from one to the other through S3.
    t, c, p1 = sftp_session(lb)
    with c.open("/shared.bin", "wb") as fh:
        fh.write(data)
    t.close()
    t, c, p2 = sftp_session(lb)
    with c.open("/shared.bin", "rb") as fh:
        fh.prefetch()
        assert hashlib.sha256(fh.read()).hexdigest() == digest
    t.close()
    assert wait_until(lambda: {served_by(nodes, p1), served_by(nodes, p2)} == {0, 1}, timeout=5), \
        "both nodes served one session each"
    assert s3_bucket.keys(lb.prefix) == ["shared.bin"]

    # Explicit and implicit FTPS with curl: control and passive data through the balancer, on either node.
    (tmp_path / "up.bin").write_bytes(data)
    for implicit in (False, True):
        for attempt in range(2):  # two connections: both nodes
            name = f"ftps-{implicit}-{attempt}.bin"
            curl_ftps(lb, "-T", str(tmp_path / "up.bin"), ftp_url(lb, name, implicit), implicit=implicit)
            out = tmp_path / f"down-{name}"
            curl_ftps(lb, "-o", str(out), ftp_url(lb, "shared.bin", implicit), implicit=implicit)
            assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    for n in nodes:
        assert "closed a data connection" not in n.srv.log(), n.srv.log()[-3000:]

    # A user added through node B's CLI logs in through the balancer, on both nodes.
    pw = new_password()
    nodes[1].cli("user", "add", "carol", "--password-stdin", input=pw + "\n")
    ports = []
    for _ in range(2):
        t, c, port = sftp_session(lb, "carol", pw)
        c.listdir("/")
        t.close()
        ports.append(port)
    assert wait_until(lambda: {served_by(nodes, p) for p in ports} == {0, 1}, timeout=5)


def test_a_ban_made_by_one_node_holds_on_the_other(cluster):
    nodes, lb = cluster
    a = nodes[0]
    # Two failed logins of 127.0.0.9 on node A (sent as the balancer would, naming the client).
    for i in range(2):
        sock = socket.create_connection(a.srv.listeners["sftp"], timeout=TIMEOUT)
        sock.sendall(proxy_v2("127.0.0.9", 40000 + i, *a.srv.listeners["sftp"]))
        t = paramiko.Transport(sock)
        t.start_client(timeout=TIMEOUT)
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_password("alice", f"wrong-{i}")
        t.close()
    assert a.srv.wait_for_log(r"banned for .*client=127\.0\.0\.9|client=127\.0\.0\.9.*banned for", timeout=5), a.srv.log()[-2000:]

    # Through the balancer, every connection from 127.0.0.9 is refused, whichever node it reaches.
    def refused_everywhere() -> bool:
        return all(first_line(lb.listeners["sftp"], "127.0.0.9").startswith(b"Your address is banned") for _ in range(4))

    assert wait_until(refused_everywhere, timeout=6), [n.srv.log()[-1500:] for n in nodes]
    t, c, _ = sftp_session(lb)  # 127.0.0.1 is not banned
    t.close()


def test_killing_a_node_mid_upload_leaves_the_other_serving_and_no_corrupt_object(cluster, s3_bucket):
    nodes, lb = cluster
    good = os.urandom(2 * 1024 * 1024)
    t, c, _ = sftp_session(lb)
    with c.open("/report.bin", "wb") as fh:
        fh.write(good)
    t.close()

    # A 64 MiB replacement; the node that serves it is killed (SIGKILL) once 20 MiB are through.
    t, c, port = sftp_session(lb)
    victim = served_by(nodes, port)
    fh = c.open("/report.bin", "wb")
    chunk = os.urandom(1024 * 1024)
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            for _ in range(64):
                fh.write(chunk)
            fh.close()
        except BaseException as e:  # noqa: BLE001 - the node dies under it: any error is the expected end
            errors.append(e)

    th = threading.Thread(target=upload, daemon=True)
    th.start()
    assert wait_until(lambda: fh._realpos >= 20 * 1024 * 1024 or not th.is_alive(), timeout=30)
    os.kill(nodes[victim].srv.proc.pid, signal.SIGKILL)
    nodes[victim].srv.proc.wait(10)
    th.join(30)
    assert errors, "the upload through the killed node cannot have completed"
    t.close()

    # The other node serves on, through the balancer (HAProxy redispatches away from the dead one).
    for _ in range(3):
        t, c, port = sftp_session(lb)
        assert c.open("/report.bin", "rb").read() == good, "the object is the previous upload, whole"
        t.close()
        assert served_by(nodes, port) != victim
    assert s3_bucket.cat(lb.prefix + "report.bin") == good
    assert s3_bucket.keys(lb.prefix) == ["report.bin"]
