"""curl (libssh2: aes-ctr + hmac-sha2) and rclone (Go x/crypto/ssh) against Ferry, password auth."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import assert_same_tree, make_tree, rclone, sha256_file, upload_temp_files, write_random


# ------------------------------------------------------------------------------------------------
# curl


def curl(server, *args, check=True, timeout=120):
    cmd = ["curl", "-sS", "--fail", "--insecure", "--connect-timeout", "15", "-u", f"{server.user}:{server.password}", *args]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=_curl_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"curl exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return proc


def _curl_env():
    # keep curl from picking up ~/.curlrc or the user's ssh keys in an unexpected HOME
    env = dict(os.environ)
    env["CURL_HOME"] = "/nonexistent"
    return env


def url(server, path):
    return f"sftp://{server.host}:{server.port}{path}"


def test_curl_upload_download(shared_server, rdir, tmp_path):
    digest = write_random(tmp_path / "up.bin", 1_500_000)
    curl(shared_server, "-T", str(tmp_path / "up.bin"), url(shared_server, rdir.r("up.bin")))
    assert sha256_file(rdir.local / "up.bin") == digest
    assert upload_temp_files(rdir.local) == []
    curl(shared_server, "-o", str(tmp_path / "down.bin"), url(shared_server, rdir.r("up.bin")))
    assert sha256_file(tmp_path / "down.bin") == digest


def test_curl_overwrite_and_create_dirs(shared_server, rdir, tmp_path):
    (rdir.local / "f.txt").write_bytes(b"a much longer previous version of the file\n" * 10)
    (tmp_path / "f.txt").write_bytes(b"short\n")
    curl(shared_server, "-T", str(tmp_path / "f.txt"), url(shared_server, rdir.r("f.txt")))
    assert (rdir.local / "f.txt").read_bytes() == b"short\n"
    curl(shared_server, "--ftp-create-dirs", "-T", str(tmp_path / "f.txt"), url(shared_server, rdir.r("x/y/f.txt")))
    assert (rdir.local / "x" / "y" / "f.txt").read_bytes() == b"short\n"


def test_curl_directory_listing(shared_server, rdir):
    (rdir.local / "one.txt").write_text("1")
    (rdir.local / "sub").mkdir()
    out = curl(shared_server, url(shared_server, rdir.remote + "/")).stdout.decode()
    assert "one.txt" in out and "sub" in out, out
    names = curl(shared_server, "--list-only", url(shared_server, rdir.remote + "/")).stdout.decode().split()
    assert "one.txt" in names and "sub" in names, names


def test_curl_download_missing_file_fails(shared_server, rdir, tmp_path):
    proc = curl(shared_server, "-o", str(tmp_path / "x"), url(shared_server, rdir.r("missing")), check=False)
    assert proc.returncode != 0


def test_curl_wrong_password_fails(shared_server, rdir, tmp_path):
    (tmp_path / "f").write_text("x")
    cmd = ["curl", "-sS", "--insecure", "-u", f"{shared_server.user}:wrong-password", "-T", str(tmp_path / "f"),
           url(shared_server, rdir.r("f"))]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, env=_curl_env())
    assert proc.returncode != 0
    assert not (rdir.local / "f").exists()


def test_curl_resume_upload(shared_server, rdir, tmp_path):
    digest = write_random(tmp_path / "r.bin", 1_000_000)
    with open(tmp_path / "r.bin", "rb") as f:
        (rdir.local / "r.bin").write_bytes(f.read(400_000))
    curl(shared_server, "-C", "-", "-T", str(tmp_path / "r.bin"), url(shared_server, rdir.r("r.bin")))
    assert sha256_file(rdir.local / "r.bin") == digest


def test_curl_quote_commands(shared_server, rdir):
    (rdir.local / "a").write_text("a")
    curl(
        shared_server,
        "-Q", f"rename {rdir.r('a')} {rdir.r('b')}",
        "-Q", f"mkdir {rdir.r('d')}",
        "-Q", f"chmod 600 {rdir.r('b')}",
        url(shared_server, rdir.remote + "/"),
    )
    assert (rdir.local / "b").read_text() == "a" and not (rdir.local / "a").exists()
    assert (rdir.local / "d").is_dir()
    assert (os.stat(rdir.local / "b").st_mode & 0o777) == 0o600


# ------------------------------------------------------------------------------------------------
# rclone


@pytest.fixture
def rclone_conf(shared_server, tmp_path) -> Path:
    obscured = subprocess.run(
        ["rclone", "obscure", shared_server.password], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    conf = tmp_path / "rclone.conf"
    conf.write_text(
        "[ferry]\n"
        "type = sftp\n"
        f"host = {shared_server.host}\n"
        f"port = {shared_server.port}\n"
        f"user = {shared_server.user}\n"
        f"pass = {obscured}\n"
        "shell_type = none\n"
        "md5sum_command = none\n"
        "sha1sum_command = none\n"
    )
    return conf


def test_rclone_sync_check_roundtrip(shared_server, rdir, tmp_path, rclone_conf):
    src = tmp_path / "src"
    make_tree(src)
    remote = f"ferry:{rdir.r('tree')}"
    rclone(rclone_conf, "sync", str(src), remote)
    assert_same_tree(src, rdir.local / "tree")
    assert upload_temp_files(rdir.local) == []

    # modification times are carried over (rclone sets them with SETSTAT)
    for p in src.rglob("*"):
        if p.is_file():
            remote_mtime = os.stat(rdir.local / "tree" / p.relative_to(src)).st_mtime
            assert abs(remote_mtime - p.stat().st_mtime) < 1.01, p

    rclone(rclone_conf, "check", "--download", str(src), remote)

    listing = rclone(rclone_conf, "lsf", "-R", remote).stdout.split("\n")
    assert "docs/deep/er/tiny" in listing and "ünïcødé.txt" in listing, listing

    dst = tmp_path / "dst"
    rclone(rclone_conf, "sync", remote, str(dst))
    assert_same_tree(src, dst)


def test_rclone_sync_propagates_changes(shared_server, rdir, tmp_path, rclone_conf):
    src = tmp_path / "src"
    make_tree(src)
    remote = f"ferry:{rdir.r('tree')}"
    rclone(rclone_conf, "sync", str(src), remote)
    # delete, modify, add locally; sync again
    (src / "top.txt").unlink()
    (src / "docs" / "readme.md").write_text("changed\n")
    (src / "docs" / "new.txt").write_text("new\n")
    rclone(rclone_conf, "sync", str(src), remote)
    assert_same_tree(src, rdir.local / "tree")
    rclone(rclone_conf, "check", "--download", str(src), remote)
    # a file changed behind rclone's back makes check fail
    (rdir.local / "tree" / "docs" / "new.txt").write_text("NEW\n")
    proc = rclone(rclone_conf, "check", "--download", str(src), remote, check=False)
    assert proc.returncode != 0


def test_rclone_about_uses_statvfs(rclone_conf):
    out = rclone(rclone_conf, "about", "ferry:/").stdout
    assert re.search(r"Total:\s+\S+", out), out
