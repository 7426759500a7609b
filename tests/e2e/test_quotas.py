"""Quotas per user (bytes and files), enforced while writing, the same over SFTP and FTPS and across
sessions: an upload that would pass the limit fails ("Quota exceeded", FTP 552) and the previous file
stays; removing files makes room again; `ferry user show` prints the usage."""

from __future__ import annotations

import ftplib
import io
import json
import os
import ssl

import pytest

from conftest import run_ferry, sftp_client
from ftps_helpers import open_ftps, retr_bytes

TIMEOUT = 10
LISTEN = ("sftp=127.0.0.1:0", "ftps=127.0.0.1:0")
KIB = 1024


def stor_refused(ftps, path: str, data: bytes) -> str:
    """STOR that the server refuses mid-upload: the reply, whether ftplib saw it at once or first met the
    data connection closed under it (then the 552 waits on the control connection)."""
    try:
        ftps.storbinary(f"STOR {path}", io.BytesIO(data))
    except ftplib.error_perm as e:
        return str(e)
    except (ssl.SSLError, ConnectionError):
        with pytest.raises(ftplib.error_perm) as refused:
            ftps.getresp()
        return str(refused.value)
    pytest.fail(f"STOR {path} of {len(data)} bytes was accepted over the quota")


def put(sftp, data: bytes, path: str) -> None:
    """An upload that waits for each WRITE's answer (paramiko's putfo pipelines its writes and swallows the
    error of CLOSE, so it reports only the missing file afterwards)."""
    with sftp.open(path, "w") as f:
        f.write(data)


def test_bytes_quota_over_both_protocols_keeps_the_old_file_and_frees_on_delete(alice_servers, ferry):
    srv = alice_servers(listen=LISTEN)
    run_ferry(ferry, srv.data_dir, "user", "set", "alice", "--quota-bytes", str(1000 * KIB))
    first, good = os.urandom(600 * KIB), b"the good version\n"
    with sftp_client(srv, timeout=TIMEOUT) as sftp:
        sftp.putfo(io.BytesIO(first), "/first.bin")
        sftp.putfo(io.BytesIO(good), "/report.txt")
        # 600 KiB + 17 bytes used: another 600 KiB does not fit, over SFTP ...
        with pytest.raises(IOError, match="Quota exceeded"):
            put(sftp, os.urandom(600 * KIB), "/second.bin")
        assert "second.bin" not in sftp.listdir("/"), "a refused new file was left behind"
        # ... nor as a replacement of an existing file: the previous version stays.
        with pytest.raises(IOError, match="Quota exceeded"):
            put(sftp, os.urandom(600 * KIB), "/report.txt")
        assert sftp.open("/report.txt").read() == good
    # The same count over FTPS, in another session.
    ftps = open_ftps(srv)
    try:
        assert stor_refused(ftps, "/second.bin", os.urandom(600 * KIB)).startswith("552 Quota exceeded")
        assert retr_bytes(ftps, "/report.txt") == good
        ftps.delete("/first.bin")
        ftps.storbinary("STOR /second.bin", io.BytesIO(os.urandom(600 * KIB)))  # room again
    finally:
        ftps.quit()
    assert (srv.root / "report.txt").read_bytes() == good
    shown = json.loads(run_ferry(ferry, srv.data_dir, "user", "show", "alice", "--json").stdout)
    assert shown["quota_bytes"] == 1000 * KIB and shown["usage"] == {"bytes": 600 * KIB + len(good), "files": 2}
    assert f"quota       {1000 * KIB} bytes, no file limit ({600 * KIB + len(good)} bytes in 2 files used)" in \
        run_ferry(ferry, srv.data_dir, "user", "show", "alice").stdout
    assert srv.wait_for_log(r"quota: measured the user's files", timeout=1)


def test_files_quota_counts_new_files_only(alice_servers, ferry):
    srv = alice_servers(listen=LISTEN)
    (srv.root / "existing.txt").write_bytes(b"was here before the quota\n")
    run_ferry(ferry, srv.data_dir, "user", "set", "alice", "--quota-files", "2")
    with sftp_client(srv, timeout=TIMEOUT) as sftp:
        sftp.putfo(io.BytesIO(b"one"), "/one.txt")
        with pytest.raises(IOError, match="Quota exceeded"):
            put(sftp, b"two", "/two.txt")
        sftp.putfo(io.BytesIO(b"replaced"), "/one.txt")  # replacing is not a new file
        sftp.mkdir("/dir")  # directories are not files
    ftps = open_ftps(srv)
    try:
        with pytest.raises(ftplib.error_perm, match="^552"):
            ftps.storbinary("STOR /dir/three.txt", io.BytesIO(b"three"))
        ftps.rename("/one.txt", "/dir/one.txt")
        ftps.delete("/existing.txt")
        ftps.storbinary("STOR /three.txt", io.BytesIO(b"three"))
    finally:
        ftps.quit()
    assert sorted(p.name for p in srv.root.rglob("*") if p.is_file()) == ["one.txt", "three.txt"]
    # Lifted: any number of files.
    run_ferry(ferry, srv.data_dir, "user", "set", "alice", "--quota-files", "0")
    with sftp_client(srv, timeout=TIMEOUT) as sftp:
        for i in range(3):
            sftp.putfo(io.BytesIO(b"x"), f"/more-{i}.txt")
