"""`ferry probe`: what a port speaks and what is wrong, against Ferry, OpenSSH sshd, vsftpd and odd ports."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from conftest import (
    FerryServer,
    free_port,
    run_probe,
    self_signed_rsa,
    start_ftps_server,
    stop_and_check,
)
from ftps_helpers import pem_sha256

MIB = 1 << 20


def probe_json(probe_cmd, *args, input=None) -> tuple[int, dict]:
    proc = run_probe(probe_cmd, *args, "--json", input=input)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"--json printed no JSON ({e}):\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    assert doc["passed"] == (proc.returncode == 0), f"exit {proc.returncode} but passed={doc['passed']}"
    return proc.returncode, doc


def checks(target: dict) -> dict[str, dict]:
    return {c["name"]: c for c in target["checks"]}


def statuses(target: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in target["checks"]}


def only_target(doc: dict) -> dict:
    assert len(doc["targets"]) == 1, doc
    return doc["targets"][0]


def no_leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("ferry-probe-*.tmp"))


@pytest.fixture
def ferry_ftps(ferry, tmp_path):
    """A Ferry server with ftps, ftps-implicit and sftp listeners; skipped (with the reason) when FTPS does not start."""
    try:
        srv = start_ftps_server(ferry, tmp_path / "ftps-srv")
    except AssertionError as e:
        pytest.skip(f"Ferry's FTPS listeners do not start in this build: {str(e).splitlines()[0]}")
    yield srv
    stop_and_check(srv)


# --------------------------------------------------------------------------------------------------
# Ferry


def test_ferry_sftp_port(probe_cmd, server: FerryServer):
    target = f"{server.host}:{server.port}"
    proc = run_probe(probe_cmd, target)
    out = proc.stdout
    assert proc.returncode == 0, f"probe failed:\n{out}\n{proc.stderr}"
    assert f"== {target}: SSH (SFTP)" in out, out
    assert "SSH-2.0-Ferry" in out, out
    for alg, fp in server.host_keys:
        assert fp in out, f"host key {alg} {fp} missing:\n{out}"
    # The other ways in say what a client of the wrong kind meets.
    assert "this is an SSH/SFTP port, not FTPS" in out, out
    assert "result: passed" in out, out


def test_ferry_sftp_json(probe_cmd, server: FerryServer):
    code, doc = probe_json(probe_cmd, f"{server.host}:{server.port}")
    assert code == 0, json.dumps(doc, indent=1)
    t = only_target(doc)
    assert (t["host"], t["port"], t["protocols"], t["passed"]) == (server.host, server.port, ["ssh"], True)
    assert t["ssh"]["version"]["software"].startswith("Ferry")
    assert "curve25519-sha256" in t["ssh"]["kex"]
    assert t["ssh"]["strict_kex"] is True and t["ssh"]["terrapin"] is False
    served = {fp for _, fp in server.host_keys}
    probed = {k["fingerprint"] for k in t["ssh"]["host_keys"]}
    assert probed == served, f"probe {probed} != serve {served}"
    assert {c["status"] for c in t["checks"]} <= {"pass", "warn"}
    assert t["tls"] is None and t["ftp"] is None
    assert any(a["method"] == "tls_hello" and "SSH" in a["result"] for a in t["attempts"]), t["attempts"]


def test_ferry_sftp_login_transfer(probe_cmd, server: FerryServer):
    code, doc = probe_json(probe_cmd, f"{server.host}:{server.port}", "--user", server.user, "--password-stdin",
                           input=server.password + "\n")
    t = only_target(doc)
    assert code == 0, json.dumps(t["checks"], indent=1)
    s = statuses(t)
    for name in ("sftp.login", "sftp.subsystem", "sftp.list", "sftp.upload", "sftp.download", "sftp.remove"):
        assert s.get(name) == "pass", f"{name}: {checks(t).get(name)}"
    (tr,) = t["transfers"]
    assert (tr["protocol"], tr["user"], tr["bytes"]) == ("sftp", server.user, MIB)
    assert tr["upload_mb_per_s"] > 0 and tr["download_mb_per_s"] > 0
    assert server.root is not None and no_leftovers(server.root) == []


def test_ferry_sftp_login_with_key(probe_cmd, server: FerryServer):
    code, doc = probe_json(probe_cmd, f"{server.host}:{server.port}", "--user", server.user, "--key", server.key)
    t = only_target(doc)
    assert code == 0, json.dumps(t["checks"], indent=1)
    assert statuses(t)["sftp.download"] == "pass"


def test_ferry_wrong_password_fails(probe_cmd, server: FerryServer):
    proc = run_probe(probe_cmd, f"{server.host}:{server.port}", "--user", server.user, "--password-stdin",
                     input="not-the-password\n")
    assert proc.returncode != 0, proc.stdout
    assert "FAIL  sftp.login" in proc.stdout, proc.stdout
    assert "refused the password" in proc.stdout, proc.stdout


def test_ferry_ftps_ports(probe_cmd, ferry_ftps: FerryServer):
    explicit = "{}:{}".format(*ferry_ftps.listeners["ftps"])
    implicit = "{}:{}".format(*ferry_ftps.listeners["ftps-implicit"])
    code, doc = probe_json(probe_cmd, explicit, implicit)
    assert code == 0, json.dumps(doc, indent=1)
    exp, imp = doc["targets"]
    assert exp["protocols"] == ["ftps"]
    assert exp["ftp"]["auth_tls"] and "AUTH TLS" in exp["ftp"]["features"]
    cert = exp["ftp"]["tls"]["certificate"]
    assert cert["sha256"] == ferry_ftps.tls_sha256
    assert cert["self_signed"] is True
    assert statuses(exp)["ftp.tls.certificate.chain"] == "warn"  # self-signed: a warning, not a failure
    # Ferry's implicit port may also greet a silent client in plain FTP (protocol detection): either way it
    # must speak implicit FTPS.
    assert "ftps-implicit" in imp["protocols"], imp["protocols"]
    assert imp["tls"]["certificate"]["sha256"] == ferry_ftps.tls_sha256
    assert imp["tls"]["ftp_greeting"].startswith("220")
    assert statuses(imp)["tls.ftp_greeting"] == "pass"
    # what a client of the wrong kind meets on each port
    assert any("not implicit FTPS" in a["result"] for a in exp["attempts"]), exp["attempts"]
    assert not any("SSH" in p for p in imp["protocols"]), imp["protocols"]


def test_ferry_ftps_login_transfer(probe_cmd, ferry_ftps: FerryServer):
    explicit = "{}:{}".format(*ferry_ftps.listeners["ftps"])
    implicit = "{}:{}".format(*ferry_ftps.listeners["ftps-implicit"])
    code, doc = probe_json(probe_cmd, explicit, implicit, "--user", ferry_ftps.user, "--password-stdin",
                           input=ferry_ftps.password + "\n")
    assert code == 0, json.dumps([t["checks"] for t in doc["targets"]], indent=1)
    lo, hi = ferry_ftps.passive
    for t, proto in zip(doc["targets"], ("ftps", "ftps-implicit")):
        s = statuses(t)
        for step in ("login", "list", "upload", "download", "remove"):
            assert s.get(f"{proto}.{step}") == "pass", f"{proto}.{step}: {checks(t).get(f'{proto}.{step}')}"
        tr = next(tr for tr in t["transfers"] if tr["protocol"] == proto)
        assert tr["bytes"] == MIB and lo <= tr["data_port"] <= hi
    assert ferry_ftps.root is not None and no_leftovers(ferry_ftps.root) == []


class LoopbackServer(threading.Thread):
    """A tiny TCP server on an ephemeral loopback port: each connection goes to `handle` on its own thread."""

    def __init__(self):
        super().__init__(daemon=True)
        self.lsn = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsn.getsockname()[1]
        self.lsn.settimeout(0.2)
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            with contextlib.suppress(OSError):
                conn, _ = self.lsn.accept()
                threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket):
        raise NotImplementedError

    def stop(self):
        self.stopped.set()
        self.lsn.close()


class ProtocolSwitch(LoopbackServer):
    """One port, three protocols, the way a multi-protocol listener tells them apart: a client that sends a
    TLS ClientHello goes to the implicit-FTPS backend, one that sends an SSH line to the SFTP backend, and one
    that says nothing for 150 ms gets the FTP greeting of the explicit-FTPS backend."""

    WAIT = 0.15

    def __init__(self, backends: dict[str, tuple[str, int]]):
        super().__init__()
        self.backends = backends

    def handle(self, conn: socket.socket):
        with contextlib.suppress(OSError):
            conn.settimeout(self.WAIT)
            try:
                first = conn.recv(4096)
            except socket.timeout:
                first = b""
            kind = "ftps-implicit" if first[:1] == b"\x16" else "sftp" if first.startswith(b"SSH-") else "ftps"
            back = socket.create_connection(self.backends[kind], timeout=10)
            back.sendall(first)
            conn.settimeout(None)
            back.settimeout(None)

            def pipe(src, dst):
                with contextlib.suppress(OSError):
                    while data := src.recv(65536):
                        dst.sendall(data)
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

            threading.Thread(target=pipe, args=(back, conn), daemon=True).start()
            pipe(conn, back)


def test_multi_protocol_port_reports_every_protocol(probe_cmd, ferry_ftps: FerryServer):
    switch = ProtocolSwitch({k: ferry_ftps.listeners[k] for k in ("sftp", "ftps", "ftps-implicit")})
    switch.start()
    try:
        code, doc = probe_json(probe_cmd, f"127.0.0.1:{switch.port}", "--user", ferry_ftps.user,
                               "--password-stdin", input=ferry_ftps.password + "\n")
    finally:
        switch.stop()
    t = only_target(doc)
    assert code == 0, json.dumps(t["checks"], indent=1)
    assert t["protocols"] == ["ssh", "ftps", "ftps-implicit"], t["protocols"]
    assert t["attempts"] == [], "every way in found a protocol"
    assert {tr["protocol"] for tr in t["transfers"]} == {"sftp", "ftps", "ftps-implicit"}
    assert {k["fingerprint"] for k in t["ssh"]["host_keys"]} == {fp for _, fp in ferry_ftps.host_keys}


# --------------------------------------------------------------------------------------------------
# OpenSSH


def test_openssh_version_algorithms_fingerprints(probe_cmd, openssh_factory):
    sshd = openssh_factory()
    code, doc = probe_json(probe_cmd, f"127.0.0.1:{sshd.port}")
    t = only_target(doc)
    assert code == 0, json.dumps(t["checks"], indent=1)
    assert t["protocols"] == ["ssh"]
    ssh = t["ssh"]
    assert ssh["version"]["line"].startswith("SSH-2.0-OpenSSH_"), ssh["version"]
    assert "curve25519-sha256" in ssh["kex"] and "ssh-ed25519" in ssh["host_key_algorithms"]
    assert any(c.startswith("aes") for c in ssh["ciphers"]) and ssh["macs"]
    probed = {k["algorithm"]: k["fingerprint"] for k in ssh["host_keys"]}
    expected = sshd.host_key_fingerprints  # from ssh-keygen -lf
    assert probed.get("ssh-ed25519") == expected["ED25519"], (probed, expected)
    assert probed.get("ecdsa-sha2-nistp256") == expected["ECDSA"], (probed, expected)
    assert probed.get("ssh-rsa") == expected["RSA"], (probed, expected)
    # OpenSSH 9.x still offers SHA-1 and 64-bit-tag MACs by default: flagged, not failed.
    macs = checks(t)["ssh.macs"]
    assert macs["status"] == "warn" and "hmac-sha1" in macs["detail"], macs


def test_openssh_weak_configuration(probe_cmd, openssh_factory):
    sshd = openssh_factory(
        "KexAlgorithms diffie-hellman-group14-sha1\n"
        "Ciphers aes128-cbc,aes256-ctr\n"
        "MACs hmac-sha1,hmac-sha2-256\n"
    )
    proc = run_probe(probe_cmd, f"127.0.0.1:{sshd.port}")
    assert proc.returncode != 0, proc.stdout
    out = proc.stdout
    assert "FAIL  ssh.kex" in out and "every key exchange offered is weak" in out, out
    assert "warn  ssh.ciphers" in out and "aes128-cbc (CBC mode" in out, out
    assert "warn  ssh.macs" in out and "hmac-sha1 (SHA-1)" in out, out
    # the keys are still read, through the weak key exchange
    assert sshd.host_key_fingerprints["ED25519"] in out, out


def test_openssh_sftp_login(probe_cmd, openssh_factory, linux_user):
    name, password, home = linux_user
    sshd = openssh_factory()
    code, doc = probe_json(probe_cmd, f"127.0.0.1:{sshd.port}", "--user", name, "--password-stdin",
                           input=password + "\n")
    t = only_target(doc)
    assert code == 0, json.dumps(t["checks"], indent=1)
    assert statuses(t)["sftp.download"] == "pass"
    assert t["transfers"][0]["file"].startswith(str(home) + "/ferry-probe-")
    assert no_leftovers(home) == []


# --------------------------------------------------------------------------------------------------
# vsftpd


def test_vsftpd_explicit_tls(probe_cmd, vsftpd_factory):
    ftpd = vsftpd_factory(ssl=True)
    code, doc = probe_json(probe_cmd, f"127.0.0.1:{ftpd.port}")
    t = only_target(doc)
    assert code == 0, json.dumps(t["checks"], indent=1)
    assert t["protocols"] == ["ftps"]
    ftp = t["ftp"]
    assert "vsFTPd" in ftp["greeting"] and ftp["greeting"].startswith("220")
    assert "AUTH TLS" in ftp["features"] and ftp["auth_tls"] is True
    cert = ftp["tls"]["certificate"]
    assert cert["subject"] == "CN=localhost" and cert["issuer"] == "CN=localhost"
    assert cert["sans"] == ["DNS:localhost", "IP:127.0.0.1"]
    assert cert["self_signed"] is True and ftp["tls"]["chain_valid"] is False
    assert ftp["tls"]["hostname_match"] is True
    assert cert["sha256"] == pem_sha256(ftpd.cert)
    assert 28 <= cert["days_left"] <= 30
    assert statuses(t)["ftp.tls.certificate.chain"] == "warn"


def test_vsftpd_without_tls_fails(probe_cmd, vsftpd_factory):
    ftpd = vsftpd_factory(ssl=False)
    proc = run_probe(probe_cmd, f"127.0.0.1:{ftpd.port}")
    assert proc.returncode != 0, proc.stdout
    assert "FTP without TLS" in proc.stdout, proc.stdout
    assert "FAIL  ftp.auth_tls" in proc.stdout and "offers no TLS" in proc.stdout, proc.stdout
    assert "this is an FTP port, not SFTP" in proc.stdout, proc.stdout


def test_vsftpd_login_transfer_with_session_reuse(probe_cmd, vsftpd_factory, linux_user):
    name, password, home = linux_user
    # vsftpd's default require_ssl_reuse=YES: data connections must resume the control session.
    ftpd = vsftpd_factory(ssl=True, extra_config="require_ssl_reuse=YES\nforce_local_logins_ssl=YES\n")
    code, doc = probe_json(probe_cmd, f"127.0.0.1:{ftpd.port}", "--user", name, "--password-stdin",
                           input=password + "\n")
    t = only_target(doc)
    assert code == 0, json.dumps(t["checks"], indent=1) + "\n" + ftpd.log()
    for step in ("login", "list", "upload", "download", "remove"):
        assert statuses(t)[f"ftps.{step}"] == "pass", checks(t)
    (tr,) = t["transfers"]
    assert tr["data_tls_resumed"] is True and tr["bytes"] == MIB
    assert no_leftovers(home) == []


# --------------------------------------------------------------------------------------------------
# ports that do not work


def test_closed_port_is_refused(probe_cmd):
    port = free_port()
    proc = run_probe(probe_cmd, f"127.0.0.1:{port}")
    assert proc.returncode != 0
    assert f"nothing listens on port {port}" in proc.stdout, proc.stdout
    assert "is the server running?" in proc.stdout, proc.stdout


def test_dropped_connection_times_out(probe_cmd):
    """A full accept queue drops SYNs, as a firewall does: the probe says so within its timeout."""
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(0)
        port = lsn.getsockname()[1]
        fillers = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", port))
            fillers.append(c)
        time.sleep(0.2)
        try:
            started = time.monotonic()
            proc = run_probe(probe_cmd, f"127.0.0.1:{port}", "--timeout", "1")
            took = time.monotonic() - started
        finally:
            for c in fillers:
                c.close()
    assert proc.returncode != 0
    assert "timed out" in proc.stdout and "firewall" in proc.stdout, proc.stdout
    assert took < 10, f"took {took:.1f} s"


def test_silent_port_is_not_identified(probe_cmd):
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(16)
        port = lsn.getsockname()[1]
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept_and_ignore():
            lsn.settimeout(0.2)
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    held.append(lsn.accept()[0])

        thread = threading.Thread(target=accept_and_ignore, daemon=True)
        thread.start()
        try:
            proc = run_probe(probe_cmd, f"127.0.0.1:{port}", "--timeout", "2")
        finally:
            stop.set()
            thread.join(5)
            for c in held:
                c.close()
    assert proc.returncode != 0
    assert "speaks neither SSH, FTP nor TLS" in proc.stdout, proc.stdout


class FakeFtps(LoopbackServer):
    """An explicit-FTPS server whose passive answer points at a port nothing listens on: a firewalled data port."""

    def __init__(self, cert: Path, key: Path, dead_port: int):
        super().__init__()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.dead_port = dead_port

    def handle(self, conn: socket.socket):
        replies = {
            "FEAT": "211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPSV\r\n211 End",
            "USER": "331 Password required", "PASS": "230 Logged in", "PBSZ": "200 PBSZ=0",
            "PROT": "200 Protection set to Private", "TYPE": "200 Binary",
            "EPSV": f"229 Entering Extended Passive Mode (|||{self.dead_port}|)", "QUIT": "221 Bye",
        }
        with contextlib.suppress(OSError, ssl.SSLError, ValueError):
            conn.settimeout(10)
            conn.sendall(b"220 fake FTPS ready\r\n")
            f = conn.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line.decode("latin-1").strip().split(" ")[0].upper()
                if verb == "AUTH":
                    conn.sendall(b"234 Proceed with negotiation\r\n")
                    conn = self.ctx.wrap_socket(conn, server_side=True)
                    f = conn.makefile("rb")
                    continue
                conn.sendall((replies.get(verb, "502 Not implemented") + "\r\n").encode())
                if verb == "QUIT":
                    return


def test_blocked_passive_port_is_told_apart(probe_cmd, tmp_path):
    cert, key = self_signed_rsa(tmp_path)
    fake = FakeFtps(cert, key, dead_port=free_port())
    fake.start()
    try:
        proc = run_probe(probe_cmd, f"127.0.0.1:{fake.port}", "--user", "bob", "--password-stdin",
                         "--timeout", "3", input="pw\n")
    finally:
        fake.stop()
    out = proc.stdout
    assert proc.returncode != 0, out
    assert "ok    ftps.login" in out, out
    assert (f"control connection works but the passive data port {fake.dead_port} is blocked" in out
            and "open the passive range in the firewall" in out), out


def test_several_targets_in_order_and_bad_arguments(probe_cmd, server: FerryServer):
    closed = free_port()
    proc = run_probe(probe_cmd, f"{server.host}:{server.port}", f"127.0.0.1:{closed}")
    assert proc.returncode != 0, "one failing port fails the run"
    first = proc.stdout.index(f"== {server.host}:{server.port}:")
    second = proc.stdout.index(f"== 127.0.0.1:{closed}:")
    assert first < second, proc.stdout
    assert "FAILED (1 of 2 port(s) failed)" in proc.stdout, proc.stdout
    bad = run_probe(probe_cmd, "127.0.0.1:99999")
    assert bad.returncode not in (0, 1), "a bad target is a usage error, not a probe result"
    assert "99999" in bad.stderr, bad.stderr
