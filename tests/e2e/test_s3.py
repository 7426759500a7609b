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
    # A directory with files in it is renamed (each object copied, then the originals deleted).
    c.mkdir("/in/sub")
    with c.open("/in/sub/x.txt", "wb") as fh2:
        fh2.write(b"x" * 1000)
    c.rename("/in", "/out")
    assert c.listdir("/") == ["out", "renamed.bin"] or sorted(c.listdir("/")) == ["out", "renamed.bin"]
    assert c.open("/out/sub/x.txt").read() == b"x" * 1000
    c.remove("/out/sub/x.txt")
    c.rmdir("/out/sub")
    c.rename("/out", "/in")
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


def make_small_tree(base) -> dict[str, bytes]:
    files = {f"d/f{i}.txt": os.urandom(1000 + i) for i in range(5)}
    files["big.bin"] = os.urandom(9 * 1024 * 1024)  # two parts: a multipart upload
    for name, data in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(data)
    return files


def assert_tree(base, files: dict[str, bytes]) -> None:
    got = {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*") if p.is_file()}
    assert got.keys() == files.keys(), sorted(got)
    for name, data in files.items():
        assert got[name] == data, name


@pytest.mark.parametrize("client", ["rclone-sftp", "rclone-ftps", "lftp-explicit", "lftp-implicit", "ftplib"])
def test_clients_mirror_a_tree_to_an_s3_user_and_back(s3_server, s3_bucket, tmp_path, client):
    from conftest import rclone
    from ftps_helpers import lftp, rclone_ftps_conf
    from test_sftp_interop import rclone_sftp_conf

    srv = s3_server
    src, back = tmp_path / "src", tmp_path / "back"
    files = make_small_tree(src)
    if client == "rclone-sftp":
        conf = rclone_sftp_conf(type("S", (), {"host": srv.listeners["sftp"][0], "port": srv.listeners["sftp"][1],
                                               "user": srv.user, "password": srv.password})(), tmp_path / "r.conf")
        rclone(conf, "copy", str(src), "ferry:/tree")
        rclone(conf, "copy", "ferry:/tree", str(back))
    elif client == "rclone-ftps":
        conf = rclone_ftps_conf(srv, tmp_path / "r.conf")
        rclone(conf, "copy", str(src), "fx:/tree")
        rclone(conf, "copy", "fi:/tree", str(back))
    elif client.startswith("lftp"):
        implicit = client.endswith("implicit")
        lftp(srv, f"mirror -R {src} /tree", tmp_path / "home", implicit=implicit)
        lftp(srv, f"mirror /tree {back}", tmp_path / "home", implicit=implicit)
    else:
        for implicit in (False, True):
            f = open_ftps(srv, implicit=implicit)
            name = f"ftplib-{implicit}.bin"
            f.storbinary(f"STOR {name}", io.BytesIO(files["big.bin"]))
            got = io.BytesIO()
            f.retrbinary(f"RETR {name}", got.write)
            assert got.getvalue() == files["big.bin"]
            f.quit()
        assert s3_bucket.cat(srv.s3_prefix + "ftplib-True.bin") == files["big.bin"]
        return
    assert_tree(back, files)
    assert sorted(s3_bucket.keys(srv.s3_prefix)) == sorted(f"tree/{n}" for n in files)


def test_one_gib_both_ways_with_sha256(s3_server, s3_bucket, tmp_path):
    from conftest import sha256_file, write_random

    srv = s3_server
    digest = write_random(tmp_path / "gib.bin", 1 << 30)
    run_sftp(srv, ["put gib.bin /gib.bin", "get /gib.bin back.bin"], cwd=tmp_path, timeout=300)
    assert sha256_file(tmp_path / "back.bin") == digest
    (tmp_path / "back.bin").unlink()
    curl_ftps(srv, "-o", str(tmp_path / "back.bin"), ftp_url(srv, "gib.bin"), timeout=300)
    assert sha256_file(tmp_path / "back.bin") == digest


def test_parts_left_by_a_killed_upload_are_swept_at_start(ftps_server_factory, s3_bucket, tmp_path):
    prefix = f"t-{uuid.uuid4().hex[:10]}/"
    # A client killed mid-upload (SIGKILL: no abort) leaves an incomplete multipart upload, as a node
    # killed in the middle of an upload does.
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(30 * 1024 * 1024))
    cmd = s3_bucket.rclone_cmd("--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--bwlimit", "4M",
                               "copyto", str(src), f":s3:{s3_bucket.bucket}/{prefix}alice/left.bin")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=s3_bucket.env())

    def incomplete() -> str:
        return s3_bucket.rclone("backend", "list-multipart-uploads", f":s3:{s3_bucket.bucket}").stdout

    assert wait_until(lambda: prefix in incomplete(), timeout=20), "no incomplete upload to sweep"
    proc.kill()
    proc.wait(10)
    # Younger than the age: another node's upload in progress, perhaps. Kept.
    srv = ftps_server_factory(listen=("sftp=127.0.0.1:0",),
                              config=s3_bucket.storage_toml(prefix) + "abort_incomplete_uploads_after_secs = 3600\n")
    time.sleep(2)
    assert prefix in incomplete(), "a young upload was aborted"
    assert "aborted" not in srv.log()
    srv.stop()
    # Older than the age: aborted at start, said in one line.
    srv = ftps_server_factory(listen=("sftp=127.0.0.1:0",),
                              config=s3_bucket.storage_toml(prefix) + "abort_incomplete_uploads_after_secs = 1\n")
    assert srv.wait_for_log(r"aborted 1 incomplete multipart upload\(s\) older than 1s", timeout=10), srv.log()
    assert prefix not in incomplete()


def test_one_user_in_s3_on_a_server_whose_default_is_local_disk(ftps_server_factory, s3_bucket, ferry):
    from conftest import run_ferry

    prefix = f"t-{uuid.uuid4().hex[:10]}/"
    # The bucket is configured, but not as the default backend.
    srv = ftps_server_factory(listen=("sftp=127.0.0.1:0",),
                              config=s3_bucket.storage_toml(prefix).replace('backend = "s3"\n', ""))
    t, c = sftp(srv)
    with c.open("/on-disk.txt", "wb") as fh:
        fh.write(b"local")
    t.close()
    assert (srv.root / "on-disk.txt").read_bytes() == b"local"
    assert s3_bucket.keys(prefix) == []
    out = run_ferry(ferry, srv.data_dir, "user", "set", "alice", "--storage", "s3").stdout
    assert "storage: s3" in out, out
    assert "storage     s3" in run_ferry(ferry, srv.data_dir, "user", "show", "alice").stdout
    t, c = sftp(srv)
    assert c.listdir("/") == [], "alice's root is now the bucket"
    with c.open("/in-s3.txt", "wb") as fh:
        fh.write(b"object")
    t.close()
    assert s3_bucket.keys(prefix) == ["alice/in-s3.txt"]
    assert not (srv.root / "in-s3.txt").exists()
    r = run_ferry(ferry, srv.data_dir, "user", "set", "alice", "--storage", "nfs", check=False)
    assert r.returncode == 2 and "is not a storage backend" in r.stderr, r.stderr
    run_ferry(ferry, srv.data_dir, "user", "set", "alice", "--storage", "default")
    t, c = sftp(srv)
    assert c.listdir("/") == ["on-disk.txt"], "back on local disk"
    t.close()


def test_listings_of_more_than_one_page(s3_server, s3_bucket, tmp_path):
    # S3 lists 1000 keys a page: 1,100 objects (put straight into the bucket) are all listed.
    src = tmp_path / "many"
    src.mkdir()
    for i in range(1100):
        (src / f"f{i:04}.txt").write_bytes(b"x")
    s3_bucket.rclone("copy", "--transfers", "16", str(src), f":s3:{s3_bucket.bucket}/{s3_server.s3_prefix}many")
    t, c = sftp(s3_server)
    names = c.listdir("/many")
    t.close()
    assert len(names) == 1100 and sorted(names) == sorted(p.name for p in src.iterdir())
