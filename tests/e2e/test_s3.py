"""Users' files in S3 (issue 13): `[storage] backend = "s3"` against a real Garage on loopback. Each test has a
key prefix of its own; rclone (straight to the bucket) shows what Ferry stored.

What a user sees over SFTP and FTPS is the same as on local disk; uploads become the object only when they
complete (a cut-off upload leaves the previous object, and no parts); what S3 cannot do is refused with a
sentence."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import time
import uuid

import paramiko
import pytest

from conftest import run_sftp, wait_until
from ftps_helpers import curl_ftps, ftp_url, open_ftps

TIMEOUT = 15


@pytest.fixture
def s3_server(ftps_server_factory, s3_bucket):
    prefix = f"t-{uuid.uuid4().hex[:10]}/"
    srv = ftps_server_factory(
        listen=("sftp=127.0.0.1:0", "ftps=127.0.0.1:0", "ftps-implicit=127.0.0.1:0"),
        config="[server]\npassive_ports = \"{passive_ports}\"\n" + s3_bucket.storage_toml(prefix),
    )
    srv.s3_prefix = prefix + "alice/"
    return srv


def sftp(srv) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    t = paramiko.Transport(socket.create_connection(srv.listeners["sftp"], timeout=TIMEOUT))
    t.start_client(timeout=TIMEOUT)
    t.auth_password(srv.user, srv.password)
    return t, paramiko.SFTPClient.from_transport(t)


def test_files_live_in_the_bucket_under_the_users_prefix(s3_server, s3_bucket, tmp_path):
    srv = s3_server
    assert srv.wait_for_log(r"users' files are in S3", timeout=5), srv.log()
    data = os.urandom(20 * 1024 * 1024 + 12345)  # more than two 8 MiB parts: a multipart upload
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "big.bin").write_bytes(data)
    # OpenSSH sftp: mkdir, put, ls, get, rename, rm, rmdir.
    run_sftp(srv, ["mkdir /in", "put big.bin /in/big.bin", "ls -l /in", "get /in/big.bin back.bin"], cwd=tmp_path)
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest
    assert s3_bucket.keys(srv.s3_prefix) == ["in/big.bin"], "the object, under PREFIX alice/"
    assert hashlib.sha256(s3_bucket.cat(srv.s3_prefix + "in/big.bin")).hexdigest() == digest
    t, c = sftp(srv)
    c.rename("/in/big.bin", "/renamed.bin")
    assert sorted(c.listdir("/")) == ["in", "renamed.bin"], "the emptied directory stays (its marker)"
    assert c.stat("/renamed.bin").st_size == len(data)
    assert c.listdir("/in") == []
    # Parallel reads at any offset (paramiko's prefetch) come back whole.
    with c.open("/renamed.bin", "rb") as fh:
        fh.prefetch()
        assert hashlib.sha256(fh.read()).hexdigest() == digest
    with c.open("/renamed.bin", "rb") as fh:
        fh.seek(len(data) - 100)
        assert fh.read(100) == data[-100:]
    c.remove("/renamed.bin")
    c.rmdir("/in")
    assert c.listdir("/") == []
    t.close()
    assert s3_bucket.keys(srv.s3_prefix) == []

    # FTPS, explicit and implicit (curl), through the same storage.
    for implicit in (False, True):
        name = "via-implicit.bin" if implicit else "via-explicit.bin"
        curl_ftps(srv, "-T", str(tmp_path / "big.bin"), ftp_url(srv, name, implicit), implicit=implicit)
        out = tmp_path / f"down-{name}"
        curl_ftps(srv, "-o", str(out), ftp_url(srv, name, implicit), implicit=implicit)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    assert s3_bucket.keys(srv.s3_prefix) == ["via-explicit.bin", "via-implicit.bin"]


def test_a_cut_off_upload_leaves_the_previous_object_and_no_parts(s3_server, s3_bucket):
    srv = s3_server
    good = os.urandom(3 * 1024 * 1024)
    t, c = sftp(srv)
    with c.open("/report.bin", "wb") as fh:
        fh.write(good)
    t.close()
    # A 40 MiB replacement cut off after about 20 MiB: the connection just goes.
    t, c = sftp(srv)
    fh = c.open("/report.bin", "wb")
    chunk = os.urandom(1024 * 1024)
    for _ in range(20):
        fh.write(chunk)
    t.sock.close()
    t.close()
    assert wait_until(lambda: "transfer interrupted" in srv.log() or "logout" in srv.log(), timeout=10)
    time.sleep(1)
    assert s3_bucket.cat(srv.s3_prefix + "report.bin") == good, "the previous object was replaced"
    assert s3_bucket.keys(srv.s3_prefix) == ["report.bin"]
    uploads = s3_bucket.rclone("backend", "list-multipart-uploads", f":s3:{s3_bucket.bucket}").stdout
    assert srv.s3_prefix not in uploads, f"parts left behind: {uploads}"


def test_what_s3_cannot_do_is_refused_with_a_reason(s3_server, s3_bucket):
    srv = s3_server
    t, c = sftp(srv)
    with c.open("/f.txt", "wb") as fh:
        fh.write(b"hello")
    with pytest.raises(IOError, match="S3 storage has no file modes"):
        c.chmod("/f.txt", 0o600)
    with pytest.raises(IOError, match="symbolic links"):
        c.symlink("/f.txt", "/link")
    # A write that is not at the end of what was written (a resumed or patched upload).
    fh = c.open("/g.bin", "wb")
    fh.write(b"a" * 1000)
    fh.seek(10)
    with pytest.raises(IOError, match="from start to end"):
        fh.write(b"b" * 10)
        fh.flush()
    fh.close()  # paramiko swallows the close's error; the log and the bucket tell
    assert srv.wait_for_log(r"transfer interrupted: a write failed .*from start to end.*undone", timeout=5)
    # Appending, or opening an existing file to write into it.
    with pytest.raises(IOError, match="S3 objects are written whole"):
        c.open("/f.txt", "a").write(b"more")
    # Times are accepted (clients that preserve them, rclone and `put -p`, keep working).
    c.utime("/f.txt", (1_000_000_000, 1_000_000_000))
    t.close()
    assert s3_bucket.cat(srv.s3_prefix + "f.txt") == b"hello"
    assert "g.bin" not in s3_bucket.keys(srv.s3_prefix), "no object from the refused upload"
    # FTP: APPE and REST+STOR get a 5xx naming the reason.
    f = open_ftps(srv)
    with pytest.raises(Exception, match="written whole"):
        f.storbinary("APPE f.txt", io.BytesIO(b"x"))
    f.quit()
    assert s3_bucket.cat(srv.s3_prefix + "f.txt") == b"hello"


def test_a_bucket_that_refuses_is_said_at_start(ferry, tmp_path, s3_bucket):
    conf = tmp_path / "ferry.toml"
    conf.write_text(s3_bucket.storage_toml("x/").replace(f'bucket = "{s3_bucket.bucket}"', 'bucket = "no-such-bucket"'))
    data = tmp_path / "d"
    r = subprocess.run([str(ferry), "--data-dir", str(data), "--config", str(conf), "serve", "--listen",
                        "sftp=127.0.0.1:0"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "no-such-bucket" in r.stderr and "Ferry does not create buckets" in r.stderr, r.stderr
