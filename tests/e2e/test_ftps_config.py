"""FTPS settings from the configuration file: certificate files and their reload on SIGHUP, the announced passive
address, the passive port range, and require_session_reuse (data TLS must resume the control session)."""

from __future__ import annotations

import ftplib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import FerryServer, have, run_ferry, wait_until
from ftps_helpers import (
    ResumingExplicitFTPS,
    close_quietly,
    colon_sha256,
    curl_ftps,
    ftp_url,
    ftps_session,
    lftp,
    make_cert,
    open_ftps,
    parse_pasv_port,
    pem_sha256,
    reply_code,
    retr_bytes,
    stor_bytes,
)

LISTENERS = """
[server]
listeners = [
  { protocols = "ftps", address = "127.0.0.1:0" },
  { protocols = "ftps-implicit", address = "127.0.0.1:0" },
]
passive_ports = "{passive_ports}"
"""
BOTH = ("ftps", "ftps-implicit")


def served_fingerprint(srv, implicit: bool = False) -> str:
    """The SHA-256 of the certificate a new connection gets (explicit: after AUTH TLS; no login)."""
    ftps = open_ftps(srv, implicit=implicit, login=False)
    try:
        if not implicit:
            ftps.auth()
        return colon_sha256(ftps.sock.getpeercert(binary_form=True))
    finally:
        close_quietly(ftps)


def fingerprint_or_error(srv, implicit: bool = False) -> str:
    try:
        return served_fingerprint(srv, implicit)
    except (OSError, EOFError, ftplib.Error) as e:
        return f"<no TLS connection: {e!r}>"


def install_pair(cert: os.PathLike, key: os.PathLike, live_cert, live_key) -> None:
    """Replaces the live files the way an ACME client does: write aside (the key private, 0600), then rename over."""
    for src, dst in ((key, live_key), (cert, live_cert)):
        tmp = dst.with_name(dst.name + ".new")
        shutil.copy(src, tmp)  # with the mode: Ferry refuses a key file others may read
        os.replace(tmp, dst)


# ------------------------------------------------------------------------------------------------
# certificate files and SIGHUP


def test_certificate_from_files_and_sighup_reload(ftps_server_factory, tmp_path):
    c1, k1 = make_cert(tmp_path / "certs", "one")
    c2, k2 = make_cert(tmp_path / "certs", "two")
    fp1, fp2 = pem_sha256(c1), pem_sha256(c2)
    assert fp1 != fp2
    live = tmp_path / "live"
    live.mkdir()
    live_cert, live_key = live / "cert.pem", live / "key.pem"
    install_pair(c1, k1, live_cert, live_key)
    srv = ftps_server_factory(
        listen=(), expect=BOTH,
        config=LISTENERS + f'\n[ftps]\ncert = "{live_cert}"\nkey = "{live_key}"\n',
    )
    assert srv.tls_sha256 == fp1, f"stdout shows {srv.tls_sha256}, the configured certificate is {fp1}"
    assert served_fingerprint(srv) == fp1
    assert served_fingerprint(srv, implicit=True) == fp1

    data = os.urandom(200_000)
    (srv.root / "f.bin").write_bytes(data)
    old = open_ftps(srv)
    try:
        assert retr_bytes(old, "/f.bin") == data
        install_pair(c2, k2, live_cert, live_key)
        os.kill(srv.proc.pid, signal.SIGHUP)
        assert wait_until(lambda: not srv.alive() or fingerprint_or_error(srv) == fp2, timeout=10), (
            f"new connections still get {fingerprint_or_error(srv)} 10 s after SIGHUP; the new certificate is {fp2}"
        )
        assert srv.alive(), f"ferry serve died on SIGHUP (exit {srv.proc.poll()})\n{srv.log()[-3000:]}"
        assert served_fingerprint(srv, implicit=True) == fp2
        # the session opened before the reload is still alive and works, data connections included
        assert colon_sha256(old.sock.getpeercert(binary_form=True)) == fp1
        old.voidcmd("NOOP")
        assert retr_bytes(old, "/f.bin") == data
        stor_bytes(old, "/after-reload.bin", data[::-1])
        assert (srv.root / "after-reload.bin").read_bytes() == data[::-1]
    finally:
        close_quietly(old, quit=True)
    with ftps_session(srv) as new:
        assert colon_sha256(new.sock.getpeercert(binary_form=True)) == fp2
        assert retr_bytes(new, "/after-reload.bin") == data[::-1]

    # a broken certificate file on SIGHUP: keep serving the last good one, and say so in the log
    before = len(srv.log())
    live_cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with ftps_session(srv) as during:
        os.kill(srv.proc.pid, signal.SIGHUP)
        line = srv.wait_for_log(r"\b(ERROR|WARN)\b", since=before, flags=0)
        assert line, f"no error logged for a reload with a broken certificate:\n{srv.log()[before:]}"
        assert srv.alive()
        during.voidcmd("NOOP")
        assert retr_bytes(during, "/f.bin") == data
    assert served_fingerprint(srv) == fp2

    # a key file that group or others may read is refused at SIGHUP too, as at start ("UNPROTECTED PRIVATE
    # KEY FILE"), and the last good certificate stays in service
    before = len(srv.log())
    install_pair(c1, k1, live_cert, live_key)
    live_key.chmod(0o640)
    os.kill(srv.proc.pid, signal.SIGHUP)
    line = srv.wait_for_log(r"UNPROTECTED PRIVATE KEY FILE", since=before, timeout=10)
    assert line is not None and str(live_key) in line and "0640" in line, srv.log()[before:]
    assert srv.alive()
    assert served_fingerprint(srv) == fp2, "a reload with a group-readable key file was taken"


def test_certificate_without_key_is_refused(ferry, tmp_path):
    cert, _ = make_cert(tmp_path / "certs", "lonely")
    conf = tmp_path / "ferry.toml"
    conf.write_text(LISTENERS.replace("{passive_ports}", "41990-41999") + f'\n[ftps]\ncert = "{cert}"\n')
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    try:
        proc = run_ferry(ferry, data_dir, "serve", "--config", str(conf), check=False, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("serve started with [ftps] cert but no key")
    assert proc.returncode != 0, proc.stdout
    assert "key" in proc.stderr, proc.stderr


def test_self_signed_certificate_is_generated_in_data_dir(ftps_server_factory):
    srv = ftps_server_factory(listen=(), expect=BOTH, config=LISTENERS)
    tls_dir = srv.data_dir / "tls"
    pems = sorted(p for p in tls_dir.iterdir() if p.suffix in (".pem", ".crt"))
    assert pems, f"no PEM files in {tls_dir}: {os.listdir(tls_dir)}"
    fps = set()
    for p in pems:
        if "BEGIN CERTIFICATE" in p.read_text():
            fps.add(pem_sha256(p))
    assert srv.tls_sha256 in fps, f"{srv.tls_sha256} is none of the certificates in {tls_dir}"
    assert served_fingerprint(srv) == srv.tls_sha256


# ------------------------------------------------------------------------------------------------
# passive address and ports


def test_passive_address_and_ports_from_config(ftps_server_factory):
    srv = ftps_server_factory(listen=(), expect=BOTH, config=LISTENERS + '\n[ftps]\npassive_address = "127.0.0.3"\n')
    lo, hi = srv.passive
    data = os.urandom(100_000)
    (srv.root / "f.bin").write_bytes(data)
    with ftps_session(srv) as ftps:
        ftps.voidcmd("TYPE I")
        host, port = parse_pasv_port(ftps.sendcmd("PASV"))
        assert host == "127.0.0.3", f"PASV announced {host}, passive_address is 127.0.0.3"
        assert lo <= port <= hi, f"PASV port {port} outside passive_ports {lo}-{hi}"
        # ftplib connects to the control connection's host, whatever PASV says: the transfer works
        assert retr_bytes(ftps, "/f.bin") == data


# ------------------------------------------------------------------------------------------------
# require_session_reuse


@pytest.fixture
def reuse_server(ftps_server_factory):
    return ftps_server_factory(listen=(), expect=BOTH, config=LISTENERS + "\n[ftps]\nrequire_session_reuse = true\n")


def test_require_session_reuse_refuses_ftplib_data(reuse_server):
    srv = reuse_server
    secret = os.urandom(100_000)
    (srv.root / "s.bin").write_bytes(secret)
    for implicit in (False, True):
        with ftps_session(srv, implicit=implicit) as ftps:
            ftps.voidcmd("TYPE I")
            got = b""
            code = None
            try:
                conn = ftps.transfercmd("RETR /s.bin")  # ftplib: a brand-new TLS session on the data connection
                try:
                    while chunk := conn.recv(65536):
                        got += chunk
                finally:
                    conn.close()
            except ftplib.Error as e:
                code = reply_code(e)
            except (OSError, ssl.SSLError):
                pass
            if code is None:
                try:
                    resp = ftps.getmultiline()
                    while resp[:1] == "1":
                        resp = ftps.getmultiline()
                    code = reply_code(resp)
                except socket.timeout:
                    pytest.fail("no final reply to RETR after a data connection without session reuse")
            assert got != secret, "a data connection without TLS session reuse got the file"
            assert code is not None and 400 <= code < 600, f"RETR without session reuse ended with {code}"
            # (whether the control connection survives is up to the server; vsftpd closes it)


def test_require_session_reuse_allows_curl(reuse_server, tmp_path):
    srv = reuse_server
    data = os.urandom(600_000)
    (tmp_path / "up.bin").write_bytes(data)
    for implicit in (False, True):
        name = f"/curl-{implicit}.bin"
        curl_ftps(srv, "-T", str(tmp_path / "up.bin"), ftp_url(srv, name, implicit), implicit=implicit)
        assert (srv.root / name.lstrip("/")).read_bytes() == data
        curl_ftps(srv, "-o", str(tmp_path / "down.bin"), ftp_url(srv, name, implicit), implicit=implicit)
        assert (tmp_path / "down.bin").read_bytes() == data
        listing = curl_ftps(srv, "-l", ftp_url(srv, "/", implicit), implicit=implicit).stdout.decode().split()
        assert name.lstrip("/") in listing, listing


@pytest.mark.skipif(not have("lftp"), reason="lftp is not installed (scripts/test --deps-only installs it)")
def test_require_session_reuse_allows_lftp(reuse_server, tmp_path):
    srv = reuse_server
    data = os.urandom(300_000)
    (tmp_path / "p.bin").write_bytes(data)
    lftp(srv, f"put '{tmp_path / 'p.bin'}' -o /p.bin; get /p.bin -o '{tmp_path / 'q.bin'}'; cls -1 /",
         tmp_path / "home")
    assert (srv.root / "p.bin").read_bytes() == data
    assert (tmp_path / "q.bin").read_bytes() == data


def test_require_session_reuse_allows_resuming_python_client(reuse_server):
    """ftplib taught to pass the control connection's TLS session to the data connection works."""
    srv = reuse_server
    data = os.urandom(250_000)
    with ftps_session(srv, cls=ResumingExplicitFTPS) as ftps:
        ftps.voidcmd("NOOP")  # lets TLS 1.3 session tickets arrive before the first data connection
        stor_bytes(ftps, "/py.bin", data)
        assert retr_bytes(ftps, "/py.bin") == data
        assert "py.bin" in [os.path.basename(n) for n in ftps.nlst("/")]
    assert (srv.root / "py.bin").read_bytes() == data


def test_without_require_session_reuse_ftplib_works(ftps_server_factory):
    """The default (require_session_reuse = false): plain ftplib data connections are fine."""
    srv = ftps_server_factory(listen=(), expect=BOTH, config=LISTENERS + "\n[ftps]\nrequire_session_reuse = false\n")
    with ftps_session(srv) as ftps:
        stor_bytes(ftps, "/x.bin", b"x" * 1000)
        assert retr_bytes(ftps, "/x.bin") == b"x" * 1000


# ------------------------------------------------------------------------------------------------
# signals


def test_signals_right_after_ready(ftps_server_factory, tmp_path):
    """`ready` means the signal handlers are in place: a SIGHUP right after it does not kill the server (its
    default action would) and a SIGTERM right after it is a clean exit 0, not death by signal.

    A race, so it is tried 10 times per signal; it shows more often on a busy machine."""
    first = ftps_server_factory()
    with ftps_session(first):
        pass
    assert first.stop() == 0
    problems = []
    for i in range(10):
        for sig in (signal.SIGHUP, signal.SIGTERM):
            srv = FerryServer(first.ferry, first.data_dir, tmp_path / f"again-{i}-{sig.name}.log",
                              listen=first.listen, extra_args=first.extra_args)
            srv.start()
            os.kill(srv.proc.pid, sig)
            if sig == signal.SIGHUP:
                time.sleep(0.2)
                if not srv.alive():
                    problems.append(
                        f"try {i}: SIGHUP right after `ready` killed the server (exit {srv.proc.returncode})"
                    )
                code = srv.stop()
                if code != 0 and srv.proc.returncode != -signal.SIGHUP:
                    problems.append(f"try {i}: SIGTERM after a SIGHUP: exit {code}")
            else:
                try:
                    srv.proc.wait(15)
                finally:
                    code = srv.stop()
                if code != 0:
                    problems.append(f"try {i}: SIGTERM right after `ready`: exit {code} instead of 0")
    assert not problems, "\n".join(problems)
