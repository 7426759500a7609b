"""SSH algorithms from `[sftp]`, host and TLS key files, the generated certificate and `config check` (issue 11).

The server's offer is read from its KEXINIT on a raw socket, so what is checked is what every client sees.
The legacy set is taken from the README's example, so the documented text is what is tested.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import (
    REPO_ROOT,
    FerryServer,
    add_user,
    clean_env,
    new_password,
    passive_ports,
    run_ferry,
    ssh_options,
    stop_and_check,
)
from ftps_helpers import make_cert

KEXINIT_FIELDS = ["kex", "host_key", "ciphers_c2s", "ciphers_s2c", "macs_c2s", "macs_s2c"]


def server_kexinit(host: str, port: int) -> dict[str, list[str]]:
    """The name-lists of the server's SSH_MSG_KEXINIT (RFC 4253 §7.1), read with a raw socket."""
    with socket.create_connection((host, port), timeout=15) as s:
        s.sendall(b"SSH-2.0-ferry_e2e_kexinit\r\n")
        buf = b""

        def need(n: int) -> None:
            nonlocal buf
            while len(buf) < n:
                chunk = s.recv(65536)
                assert chunk, f"connection closed after {buf!r}"
                buf += chunk

        while True:  # the identification line (RFC 4253 allows other lines before it)
            need(buf.find(b"\n") + 1 if b"\n" in buf else len(buf) + 1)
            line, _, rest = buf.partition(b"\n")
            buf = rest
            if line.startswith(b"SSH-"):
                break
        need(5)
        length, padding = struct.unpack(">IB", buf[:5])
        need(4 + length)
        payload = buf[5 : 4 + length - padding]
    assert payload[0] == 20, f"not a KEXINIT: message {payload[0]}"
    off, lists = 17, []
    for _ in KEXINIT_FIELDS:
        (n,) = struct.unpack(">I", payload[off : off + 4])
        lists.append(payload[off + 4 : off + 4 + n].decode().split(","))
        off += 4 + n
    return dict(zip(KEXINIT_FIELDS, lists))


def start(ferry: Path, base: Path, config: str = "", listen=("sftp=127.0.0.1:0",), check_user=True) -> FerryServer:
    """`serve` with user alice (password) and, when given, a config file."""
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    args = []
    if config:
        (base / "ferry.toml").write_text(config)
        args = ["--config", str(base / "ferry.toml")]
    password = new_password()
    if check_user:
        add_user(ferry, data, "alice", password=password)
    lo, hi = passive_ports()
    srv = FerryServer(ferry, data, base / "serve.stderr.log", listen=list(listen),
                      extra_args=[*args, "--passive-ports", f"{lo}-{hi}"])
    srv.user, srv.password = "alice", password
    return srv.start()


def serve_refused(ferry: Path, data: Path, *args: str) -> subprocess.CompletedProcess:
    """`serve` that is expected to refuse to start."""
    proc = subprocess.run([str(ferry), "--data-dir", str(data), *args, "serve", "--listen", "any=127.0.0.1:0"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=clean_env())
    assert proc.returncode != 0 and "ready" not in proc.stdout, f"serve started:\n{proc.stdout}\n{proc.stderr}"
    return proc


# --------------------------------------------------------------------------------------------------
# Algorithms


def test_default_offer(ferry, tmp_path):
    srv = start(ferry, tmp_path)
    try:
        k = server_kexinit(*srv.listeners["sftp"])
        assert k["kex"] == ["mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org",
                            "ext-info-s", "kex-strict-s-v00@openssh.com"], k
        assert k["host_key"] == ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"], k
        assert k["ciphers_s2c"] == ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                                    "chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"], k
        assert k["macs_s2c"] == ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256",
                                 "hmac-sha2-512"], k
    finally:
        stop_and_check(srv)


def test_config_removes_a_cipher(ferry, tmp_path):
    srv = start(ferry, tmp_path, '[sftp]\nciphers = "-aes128-ctr"\nkex = "^curve25519-sha256"\n')
    try:
        host, port = srv.listeners["sftp"]
        k = server_kexinit(host, port)
        assert "aes128-ctr" not in k["ciphers_c2s"] and "aes128-ctr" not in k["ciphers_s2c"], k
        assert "aes256-ctr" in k["ciphers_s2c"] and k["ciphers_s2c"][0] == "aes128-gcm@openssh.com", k
        assert k["kex"][:2] == ["curve25519-sha256", "mlkem768x25519-sha256"], k
        # A client that insists on the removed cipher is turned away; `ssh -vv` shows the server's list.
        proc = subprocess.run(
            ["sftp", "-vv", "-b", "-", "-P", str(port), *ssh_options(srv), "-o", "Ciphers=aes128-ctr",
             "-o", "BatchMode=yes", f"alice@{host}"],
            input="ls\n", capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode != 0
        assert "no matching cipher found" in proc.stderr, proc.stderr
        offer = re.search(r"peer server KEXINIT proposal.*?ciphers stoc: (\S+)", proc.stderr, re.S)
        assert offer and "aes128-ctr" not in offer.group(1).split(","), proc.stderr
    finally:
        stop_and_check(srv)


def test_unknown_algorithm_is_refused_with_line_and_hint(ferry, tmp_path):
    conf = tmp_path / "ferry.toml"
    conf.write_text('[sftp]\nkex = "+curve25519-sha256"\nciphers = "+aes128-cbc"\n')
    proc = run_ferry(ferry, tmp_path / "data", "--config", conf, "config", "check", check=False)
    assert proc.returncode == 2, proc
    assert f"{conf}:3: sftp.ciphers:" in proc.stderr and '"aes128-cbc"' in proc.stderr, proc.stderr
    hint = next(line for line in proc.stderr.splitlines() if line.startswith("hint:"))
    assert "aes256-gcm@openssh.com" in hint and "+a,b" in hint, hint
    conf.write_text('[sftp]\nmacs = "hmac-sha2-256,umac-64@openssh.com"\n')
    proc = serve_refused(ferry, tmp_path / "data", "--config", str(conf))
    assert f"{conf}:2: sftp.macs:" in proc.stderr and "umac-64@openssh.com" in proc.stderr, proc.stderr


def readme_legacy_set() -> str:
    """The README's legacy `[sftp]` example, as documented."""
    text = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    legacy = [b for b in blocks if 'host_key_algorithms = "+ssh-rsa"' in b]
    assert len(legacy) == 1, "the README has no single legacy [sftp] example"
    return legacy[0]


# What an old client offers: libssh2 1.8 (RHEL/CentOS 7, Debian 10), expressed as OpenSSH client options.
OLD_LIBSSH2 = ["-o", "KexAlgorithms=diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha1",
               "-o", "HostKeyAlgorithms=ssh-rsa", "-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha2-256"]

def negotiated(srv: FerryServer) -> dict[str, str]:
    """What a stock OpenSSH client negotiates with the server (`ssh -v`; it stops at authentication)."""
    host, port = srv.listeners["sftp"]
    proc = subprocess.run(
        ["ssh", "-v", "-p", str(port), *ssh_options(srv), "-o", "BatchMode=yes", "-o", "PreferredAuthentications=none",
         f"nobody@{host}", "true"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )
    got = {}
    for what, rx in (("kex", r"kex: algorithm: (\S+)"), ("host key", r"kex: host key algorithm: (\S+)"),
                     ("cipher", r"kex: server->client cipher: (\S+)")):
        m = re.search(rx, proc.stderr)
        assert m, f"no `{rx}` in ssh -v output:\n{proc.stderr}"
        got[what] = m.group(1)
    return got


JSCH_JAR = Path("/usr/share/java/jsch.jar")
JSCH_CLIENT = """
import com.jcraft.jsch.*;
import java.io.*;

public class JschSftp {
    public static void main(String[] a) throws Exception {
        Session s = new JSch().getSession(a[2], a[0], Integer.parseInt(a[1]));
        s.setPassword(a[3]);
        s.setConfig("StrictHostKeyChecking", "no");
        s.connect(20000);
        System.out.println("hostkey " + s.getHostKey().getType());
        ChannelSftp c = (ChannelSftp) s.openChannel("sftp");
        c.connect(20000);
        c.put(new ByteArrayInputStream("from jsch".getBytes("UTF-8")), "jsch.txt");
        c.disconnect();
        s.disconnect();
    }
}
"""


def sftp_put_with(srv: FerryServer, tmp_path: Path, opts: list[str], password: bool = True):
    """OpenSSH `sftp` with `opts`; without `password` it stops after the key exchange (ssh's errors then reach
    stderr, which sshpass would swallow)."""
    (tmp_path / "old.txt").write_text("from an old client\n")
    host, port = srv.listeners["sftp"]
    auth = ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"]
    cmd = ["sftp", "-b", "-", "-P", str(port), *ssh_options(srv), *opts, *auth, f"alice@{host}"]
    if password:
        cmd = ["sshpass", "-e", "sftp", "-o", "BatchMode=no", *cmd[1:]]  # `-b` would turn BatchMode on
    else:
        cmd[1:1] = ["-o", "BatchMode=yes", "-o", "LogLevel=INFO"]  # ssh takes the first value given
    return subprocess.run(cmd, input="put old.txt old.txt\n", capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**os.environ, "SSHPASS": srv.password})


def jsch_put(srv: FerryServer, tmp_path: Path) -> subprocess.CompletedProcess:
    src = tmp_path / "JschSftp.java"
    src.write_text(JSCH_CLIENT)
    host, port = srv.listeners["sftp"]
    return subprocess.run(["java", "-cp", str(JSCH_JAR), str(src), host, str(port), "alice", srv.password],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.skipif(not shutil.which("sshpass"), reason="sshpass is not installed")
def test_legacy_set_lets_an_old_libssh2_client_in(ferry, tmp_path):
    default = start(ferry, tmp_path / "default")
    try:
        proc = sftp_put_with(default, tmp_path, OLD_LIBSSH2, password=False)
        assert proc.returncode != 0, "the defaults let a libssh2-1.8 client in"
        assert "no matching key exchange method" in proc.stderr, proc.stderr
        negotiated_with_defaults = negotiated(default)
        # OpenSSH before 9.9 has no mlkem768x25519-sha256: then curve25519-sha256.
        assert negotiated_with_defaults["kex"] in ("mlkem768x25519-sha256", "curve25519-sha256"), negotiated_with_defaults
        assert negotiated_with_defaults["host key"] == "ssh-ed25519", negotiated_with_defaults
    finally:
        stop_and_check(default)
    legacy = start(ferry, tmp_path / "legacy", readme_legacy_set())
    try:
        k = server_kexinit(*legacy.listeners["sftp"])
        assert "ssh-rsa" in k["host_key"] and "diffie-hellman-group-exchange-sha256" in k["kex"], k
        assert k["kex"][0] == "mlkem768x25519-sha256", "the defaults still come first"
        proc = sftp_put_with(legacy, tmp_path, OLD_LIBSSH2)
        assert proc.returncode == 0, proc.stderr
        assert (legacy.data_dir / "files" / "alice" / "old.txt").read_text() == "from an old client\n"
        # "Other clients keep what they negotiated before": a modern OpenSSH client, its own preferences.
        assert negotiated(legacy) == negotiated_with_defaults, "the legacy set changed what a modern client gets"
    finally:
        stop_and_check(legacy)


@pytest.mark.skipif(not (shutil.which("java") and JSCH_JAR.exists()),
                    reason="needs java and JSch (Debian: libjsch-java)")
def test_legacy_set_lets_jsch_in(ferry, tmp_path):
    """JSch 0.1.5x, a real old client: no curve25519, no ed25519, no rsa-sha2."""
    default = start(ferry, tmp_path / "default")
    try:
        proc = jsch_put(default, tmp_path)
        assert proc.returncode != 0 and "Algorithm negotiation fail" in proc.stderr, proc.stderr
    finally:
        stop_and_check(default)
    legacy = start(ferry, tmp_path / "legacy", readme_legacy_set())
    try:
        proc = jsch_put(legacy, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "hostkey ssh-rsa" in proc.stdout, proc.stdout
        assert (legacy.data_dir / "files" / "alice" / "jsch.txt").read_text() == "from jsch"
    finally:
        stop_and_check(legacy)


# --------------------------------------------------------------------------------------------------
# Host keys and key files


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_first_start_generates_ed25519_and_rsa_private(ferry, tmp_path):
    srv = start(ferry, tmp_path, listen=("any=127.0.0.1:0",))
    try:
        keys = srv.data_dir / "keys"
        assert sorted(p.name for p in keys.iterdir()) == ["ssh_host_ed25519_key", "ssh_host_rsa_key"]
        for p in [*keys.iterdir(), srv.data_dir / "tls" / "key.pem"]:
            assert mode(p) == 0o600, f"{p} is {mode(p):o}"
        assert [a for a, _ in srv.host_keys] == ["ssh-ed25519", "ssh-rsa"], srv.stdout()
        out = subprocess.run(["ssh-keygen", "-l", "-f", str(keys / "ssh_host_rsa_key")], capture_output=True,
                             text=True, timeout=30).stdout
        assert out.startswith("3072 "), out
    finally:
        stop_and_check(srv)


def test_old_ecdsa_key_is_offered_only_when_configured(ferry, tmp_path):
    data = tmp_path / "data"
    srv = start(ferry, tmp_path)
    stop_and_check(srv)
    ecdsa = data / "keys" / "ssh_host_ecdsa_key"  # as an older Ferry left it
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "256", "-N", "", "-f", str(ecdsa)], check=True,
                   timeout=30)
    srv = FerryServer(ferry, data, tmp_path / "again.log", extra_args=["--passive-ports", "%d-%d" % passive_ports()])
    srv.start()
    try:
        assert "ecdsa-sha2-nistp256" not in server_kexinit(*srv.listeners["sftp"])["host_key"]
        line = srv.wait_for_log(r"not offering the ECDSA host key")
        assert line and str(ecdsa) in line and "[sftp] host_keys" in line, srv.log()
    finally:
        stop_and_check(srv)
    keys = [data / "keys" / "ssh_host_ed25519_key", data / "keys" / "ssh_host_rsa_key", ecdsa]
    conf = "[sftp]\nhost_keys = [" + ", ".join(f'"{k}"' for k in keys) + "]\n"
    srv = start(ferry, tmp_path / "configured", conf, check_user=False)
    try:
        k = server_kexinit(*srv.listeners["sftp"])
        assert k["host_key"] == ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256", "ecdsa-sha2-nistp256"], k
        assert "ecdsa-sha2-nistp256" in [a for a, _ in srv.host_keys]
    finally:
        stop_and_check(srv)


def test_group_readable_keys_are_refused(ferry, tmp_path):
    data = tmp_path / "data"
    run_ferry(ferry, data, "user", "add", "alice", "--password-stdin", input="a long passphrase\n")
    # A generated host key made readable by the group.
    srv = start(ferry, tmp_path, listen=("any=127.0.0.1:0",), check_user=False)
    stop_and_check(srv)
    hostkey = data / "keys" / "ssh_host_ed25519_key"
    hostkey.chmod(0o640)
    proc = serve_refused(ferry, data)
    assert "UNPROTECTED PRIVATE KEY FILE" in proc.stderr and "0640" in proc.stderr, proc.stderr
    assert f"hint: chmod 600 {hostkey}" in proc.stderr, proc.stderr
    check = run_ferry(ferry, data, "config", "check", check=False)
    assert check.returncode == 1 and "UNPROTECTED PRIVATE KEY FILE" in check.stdout, check
    hostkey.chmod(0o600)

    # A host key named in the config, readable by everyone.
    own = tmp_path / "own_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(own)], check=True, timeout=30)
    own.chmod(0o644)
    conf = tmp_path / "ferry.toml"
    conf.write_text(f'[sftp]\nhost_keys = ["{own}"]\n')
    proc = serve_refused(ferry, data, "--config", str(conf))
    assert "UNPROTECTED PRIVATE KEY FILE" in proc.stderr and f"hint: chmod 600 {own}" in proc.stderr, proc.stderr

    # The TLS key named in the config.
    cert, key = make_cert(tmp_path / "certs", "site")
    key.chmod(0o640)
    conf.write_text(f'[ftps]\ncert = "{cert}"\nkey = "{key}"\n')
    proc = serve_refused(ferry, data, "--config", str(conf))
    assert "UNPROTECTED PRIVATE KEY FILE" in proc.stderr and f"hint: chmod 600 {key}" in proc.stderr, proc.stderr
    key.chmod(0o600)
    srv = start(ferry, tmp_path / "ok", conf.read_text(), listen=("ftps=127.0.0.1:0",))
    stop_and_check(srv)


# --------------------------------------------------------------------------------------------------
# The generated certificate


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]


def test_generated_certificate_names_and_validity(ferry, tmp_path):
    conf = '[ftps]\nnames = ["files.example.com", "192.0.2.10"]\n'
    srv = start(ferry, tmp_path, conf, listen=("ftps=127.0.0.2:0",))
    try:
        cert = load_cert(srv.data_dir / "tls" / "cert.pem")
        host = socket.gethostname().lower()
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == host
        dns, ips = sans(cert)
        assert dns == [host, "localhost", "files.example.com"], dns
        assert ips == ["127.0.0.1", "::1", "127.0.0.2", "192.0.2.10"], ips
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=365)
        assert cert.not_valid_before_utc <= datetime.datetime.now(datetime.timezone.utc)
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1", key
    finally:
        stop_and_check(srv)

    # A name added to the config: the next start makes the certificate again, with a log line, and prints
    # the new fingerprint.
    (tmp_path / "ferry.toml").write_text('[ftps]\nnames = ["files.example.com", "192.0.2.10", "new.example.org"]\n')
    again = FerryServer(ferry, srv.data_dir, tmp_path / "again.log", listen=["ftps=127.0.0.2:0"],
                        extra_args=["--config", str(tmp_path / "ferry.toml"), "--passive-ports", "%d-%d" % passive_ports()])
    again.start()
    try:
        line = again.wait_for_log(r"generated a new self-signed TLS certificate.*does not name DNS:new\.example\.org")
        assert line is not None, again.log()
        new = load_cert(srv.data_dir / "tls" / "cert.pem")
        assert "new.example.org" in sans(new)[0], sans(new)
        printed = re.search(r"^tls certificate SHA256 (\S+)", again.stdout(), re.M)
        assert printed and printed.group(1) == new.fingerprint(hashes.SHA256()).hex(":").upper(), again.stdout()
        assert new.fingerprint(hashes.SHA256()) != cert.fingerprint(hashes.SHA256())
    finally:
        stop_and_check(again)


def test_expiring_certificate_is_made_again_and_a_configured_one_never(ferry, tmp_path):
    srv = start(ferry, tmp_path, listen=("ftps=127.0.0.1:0",))
    stop_and_check(srv)
    tls = srv.data_dir / "tls"
    # Replace the generated pair with one that has 10 days left (same names, so only the date is wrong).
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "10", "-subj", "/CN=old", "-addext",
                    f"subjectAltName=DNS:{socket.gethostname().lower()},DNS:localhost,IP:127.0.0.1,IP:::1",
                    "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    old = load_cert(tls / "cert.pem")
    srv = FerryServer(ferry, srv.data_dir, tmp_path / "renew.log", listen=["ftps=127.0.0.1:0"],
                      extra_args=["--passive-ports", "%d-%d" % passive_ports()]).start()
    try:
        line = srv.wait_for_log(r"generated a new self-signed TLS certificate")
        assert line and ("expires in 9 days" in line or "expires in 10 days" in line), srv.log()
        new = load_cert(tls / "cert.pem")
        assert new.fingerprint(new.signature_hash_algorithm) != old.fingerprint(old.signature_hash_algorithm)
        printed = re.search(r"^tls certificate SHA256 (\S+)", srv.stdout(), re.M)
        assert printed and printed.group(1) == new.fingerprint(hashes.SHA256()).hex(":").upper(), srv.stdout()
    finally:
        stop_and_check(srv)

    # The same kind of certificate named in the config is served as it is, and `config check` warns.
    cert, key = tmp_path / "site.crt", tmp_path / "site.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "10", "-subj", "/CN=site", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    before = cert.read_bytes()
    conf = f'[ftps]\ncert = "{cert}"\nkey = "{key}"\n'
    srv = start(ferry, tmp_path / "configured", conf, listen=("ftps=127.0.0.1:0",))
    stop_and_check(srv)
    assert cert.read_bytes() == before, "a configured certificate was changed"
    (tmp_path / "configured" / "ferry.toml").write_text(conf)
    check = run_ferry(ferry, tmp_path / "configured" / "data", "--config", tmp_path / "configured" / "ferry.toml",
                      "config", "check")
    assert re.search(r"expires \d{4}-\d\d-\d\d \((9|10) days left\)", check.stdout), check.stdout
    assert "warning: fewer than 30 days left" in check.stdout and "configuration OK" in check.stdout, check.stdout


def test_config_check_reports_keys_and_certificate(ferry, tmp_path):
    srv = start(ferry, tmp_path, listen=("any=127.0.0.1:0",))
    stop_and_check(srv)
    check = run_ferry(ferry, srv.data_dir, "config", "check")
    out = check.stdout
    for alg, fp in srv.host_keys:
        assert re.search(rf"^host key {re.escape(alg)}( \d+)? {re.escape(fp)} .*: offered as ", out, re.M), out
    assert re.search(r"^host key ssh-rsa 3072 .*offered as rsa-sha2-512,rsa-sha2-256$", out, re.M), out
    assert "ssh kex: mlkem768x25519-sha256,curve25519-sha256,curve25519-sha256@libssh.org" in out, out
    sha = re.search(r"^tls certificate SHA256 (\S+)", srv.stdout(), re.M).group(1)
    assert f"SHA256 {sha}" in out and re.search(r"\((364|365) days left\)", out), out
    assert "IP:127.0.0.1" in out and "permissions OK" in out and out.rstrip().endswith("configuration OK"), out
