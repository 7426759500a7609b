"""Real FTPS clients against Ferry: curl (OpenSSL), lftp (GnuTLS), rclone (Go crypto/tls), explicit and implicit,
and a 100 MB transfer."""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import assert_same_tree, have, make_tree, rclone, sha256_file, upload_temp_files, write_random
from ftps_helpers import curl_ftps, ftp_url, ftps_session, lftp, rclone_ftps_conf, retr_bytes

NEEDS_LFTP = pytest.mark.skipif(not have("lftp"), reason="lftp is not installed (scripts/test --deps-only installs it)")
MODES = pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])


def sent_commands(stderr: bytes) -> list[str]:
    """The FTP commands curl -v sent (its `> CMD` lines)."""
    return [line[2:].strip() for line in stderr.decode(errors="replace").splitlines() if line.startswith("> ")]


# ------------------------------------------------------------------------------------------------
# curl


@MODES
def test_curl_upload_download(shared_ftps_server, frdir, tmp_path, implicit):
    srv = shared_ftps_server
    digest = write_random(tmp_path / "up.bin", 1_500_000)
    url = ftp_url(srv, frdir.r("up.bin"), implicit)
    proc = curl_ftps(srv, "-v", "-T", str(tmp_path / "up.bin"), url, implicit=implicit)
    assert sha256_file(frdir.local / "up.bin") == digest
    assert upload_temp_files(frdir.local) == []
    cmds = sent_commands(proc.stderr)
    if not implicit:
        assert any(c.startswith("AUTH ") for c in cmds), cmds
    assert "PROT P" in cmds, cmds
    curl_ftps(srv, "-o", str(tmp_path / "down.bin"), ftp_url(srv, frdir.r("up.bin"), implicit), implicit=implicit)
    assert sha256_file(tmp_path / "down.bin") == digest


def test_curl_uses_epsv_by_default_and_pasv_when_disabled(shared_ftps_server, frdir, tmp_path):
    srv = shared_ftps_server
    data = os.urandom(300_000)
    (frdir.local / "f.bin").write_bytes(data)
    proc = curl_ftps(srv, "-v", "-o", str(tmp_path / "a"), ftp_url(srv, frdir.r("f.bin")))
    cmds = sent_commands(proc.stderr)
    assert "EPSV" in cmds and "PASV" not in cmds, f"EPSV did not work (curl fell back to PASV?): {cmds}"
    assert (tmp_path / "a").read_bytes() == data
    proc = curl_ftps(srv, "-v", "--disable-epsv", "-o", str(tmp_path / "b"), ftp_url(srv, frdir.r("f.bin")))
    cmds = sent_commands(proc.stderr)
    assert "PASV" in cmds and "EPSV" not in cmds, cmds
    assert (tmp_path / "b").read_bytes() == data
    # an upload over PASV too
    proc = curl_ftps(srv, "--disable-epsv", "-T", str(tmp_path / "b"), ftp_url(srv, frdir.r("g.bin")))
    assert (frdir.local / "g.bin").read_bytes() == data


@MODES
def test_curl_directory_listing(shared_ftps_server, frdir, implicit):
    srv = shared_ftps_server
    (frdir.local / "one.txt").write_text("1")
    (frdir.local / "sub").mkdir()
    (frdir.local / "with space.txt").write_text("s")
    out = curl_ftps(srv, ftp_url(srv, frdir.remote + "/", implicit), implicit=implicit).stdout.decode()
    lines = out.splitlines()
    assert any(line.endswith(" one.txt") and line.startswith("-") for line in lines), out
    assert any(line.endswith(" sub") and line.startswith("d") for line in lines), out
    assert any(line.endswith(" with space.txt") for line in lines), out
    names = curl_ftps(srv, "-l", ftp_url(srv, frdir.remote + "/", implicit), implicit=implicit).stdout.decode()
    assert sorted(os.path.basename(n) for n in names.splitlines()) == ["one.txt", "sub", "with space.txt"], names


def test_curl_resume_download(shared_ftps_server, frdir, tmp_path):
    srv = shared_ftps_server
    digest = write_random(frdir.local / "r.bin", 1_000_000)
    with open(frdir.local / "r.bin", "rb") as f:
        (tmp_path / "r.bin").write_bytes(f.read(400_000))
    proc = curl_ftps(srv, "-v", "-C", "-", "-o", str(tmp_path / "r.bin"), ftp_url(srv, frdir.r("r.bin")))
    assert "REST 400000" in sent_commands(proc.stderr), sent_commands(proc.stderr)
    assert sha256_file(tmp_path / "r.bin") == digest


@MODES
def test_curl_resume_upload(shared_ftps_server, frdir, tmp_path, implicit):
    """curl -C - -T: SIZE, then APPE of the rest."""
    srv = shared_ftps_server
    digest = write_random(tmp_path / "u.bin", 1_000_000)
    with open(tmp_path / "u.bin", "rb") as f:
        (frdir.local / "u.bin").write_bytes(f.read(400_000))
    curl_ftps(srv, "-C", "-", "-T", str(tmp_path / "u.bin"), ftp_url(srv, frdir.r("u.bin"), implicit), implicit=implicit)
    got = frdir.local / "u.bin"
    assert got.stat().st_size == 1_000_000, f"resumed upload left {got.stat().st_size} bytes"
    assert sha256_file(got) == digest
    assert upload_temp_files(frdir.local) == []


def test_curl_create_dirs_and_quote(shared_ftps_server, frdir, tmp_path):
    srv = shared_ftps_server
    (tmp_path / "f.txt").write_bytes(b"nested\n")
    curl_ftps(srv, "--ftp-create-dirs", "-T", str(tmp_path / "f.txt"), ftp_url(srv, frdir.r("x/y/f.txt")))
    assert (frdir.local / "x" / "y" / "f.txt").read_bytes() == b"nested\n"
    (frdir.local / "a").write_text("a")
    curl_ftps(
        srv,
        "-Q", f"RNFR {frdir.r('a')}", "-Q", f"RNTO {frdir.r('b')}", "-Q", f"MKD {frdir.r('d')}",
        "-Q", f"DELE {frdir.r('x/y/f.txt')}",
        ftp_url(srv, frdir.remote + "/"),
    )
    assert (frdir.local / "b").read_text() == "a" and not (frdir.local / "a").exists()
    assert (frdir.local / "d").is_dir()
    assert not (frdir.local / "x" / "y" / "f.txt").exists()


def test_curl_failures(shared_ftps_server, frdir, tmp_path):
    srv = shared_ftps_server
    proc = curl_ftps(srv, "-o", str(tmp_path / "x"), ftp_url(srv, frdir.r("missing")), check=False)
    assert proc.returncode == 78, f"missing file: curl exit {proc.returncode} (78 = remote file not found)"
    (tmp_path / "f").write_text("x")
    proc = curl_ftps(srv, "-T", str(tmp_path / "f"), ftp_url(srv, frdir.r("f")), password="wrong", check=False)
    assert proc.returncode == 67, f"wrong password: curl exit {proc.returncode} (67 = login denied)"
    assert not (frdir.local / "f").exists()


@pytest.mark.slow
def test_curl_100mb_up_and_down(ftps_server, tmp_path):
    srv = ftps_server
    digest = write_random(tmp_path / "big.bin", 100 * 1024 * 1024)
    curl_ftps(srv, "-T", str(tmp_path / "big.bin"), ftp_url(srv, "/big.bin"), timeout=300)
    assert (srv.root / "big.bin").stat().st_size == 100 * 1024 * 1024
    assert sha256_file(srv.root / "big.bin") == digest
    (tmp_path / "big.bin").unlink()
    curl_ftps(srv, "-o", str(tmp_path / "down.bin"), ftp_url(srv, "/big.bin", implicit=True), implicit=True, timeout=300)
    assert sha256_file(tmp_path / "down.bin") == digest
    line = srv.wait_for_log(r"\btransfer\b.*path=\"?/big\.bin.*\b104857600\b")
    assert line, f"no transfer log line with 104857600 bytes:\n{srv.log()[-3000:]}"


# ------------------------------------------------------------------------------------------------
# lftp (GnuTLS)


@NEEDS_LFTP
@MODES
def test_lftp_mirror_both_ways(shared_ftps_server, frdir, tmp_path, implicit):
    srv = shared_ftps_server
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)
    lftp(srv, f"mirror -R '{src}' '{frdir.r('tree')}'", tmp_path / "home", implicit=implicit)
    assert_same_tree(src, frdir.local / "tree")
    assert upload_temp_files(frdir.local) == []
    lftp(srv, f"mirror '{frdir.r('tree')}' '{dst}'", tmp_path / "home", implicit=implicit)
    assert_same_tree(src, dst)
    # changes propagate: delete, modify, add; mirror -R --delete again
    (src / "top.txt").unlink()
    (src / "docs" / "readme.md").write_text("changed, and longer than before\n" * 3)
    (src / "docs" / "new.txt").write_text("new\n")
    lftp(srv, f"mirror -R --delete '{src}' '{frdir.r('tree')}'", tmp_path / "home", implicit=implicit)
    assert_same_tree(src, frdir.local / "tree")


@NEEDS_LFTP
def test_lftp_get_put_and_ls(shared_ftps_server, frdir, tmp_path):
    srv = shared_ftps_server
    data = os.urandom(777_777)
    (tmp_path / "p.bin").write_bytes(data)
    proc = lftp(
        srv,
        f"cd '{frdir.remote}'; put '{tmp_path / 'p.bin'}' -o p.bin; mkdir sub; mv p.bin sub/q.bin; cls -1 sub; "
        f"get sub/q.bin -o '{tmp_path / 'q.bin'}'",
        tmp_path / "home",
    )
    assert "q.bin" in proc.stdout, proc.stdout
    assert (frdir.local / "sub" / "q.bin").read_bytes() == data
    assert (tmp_path / "q.bin").read_bytes() == data


# ------------------------------------------------------------------------------------------------
# rclone (Go's crypto/tls, jlaffaye/ftp)


def test_rclone_sync_check_roundtrip(shared_ftps_server, frdir, tmp_path):
    srv = shared_ftps_server
    conf = rclone_ftps_conf(srv, tmp_path / "rclone.conf")
    src = tmp_path / "src"
    make_tree(src)
    rclone(conf, "sync", str(src), f"fx:{frdir.r('tree')}")
    assert_same_tree(src, frdir.local / "tree")
    assert upload_temp_files(frdir.local) == []
    rclone(conf, "check", "--download", str(src), f"fx:{frdir.r('tree')}")
    listing = rclone(conf, "lsf", "-R", f"fi:{frdir.r('tree')}").stdout.split("\n")
    assert "docs/deep/er/tiny" in listing and "ünïcødé.txt" in listing and "with space/x y z.txt" in listing, listing
    # sync down over implicit FTPS
    dst = tmp_path / "dst"
    rclone(conf, "sync", f"fi:{frdir.r('tree')}", str(dst))
    assert_same_tree(src, dst)
    # a file changed behind rclone's back makes check fail
    (frdir.local / "tree" / "docs" / "readme.md").write_text("# README\n" * 50)
    proc = rclone(conf, "check", "--download", str(src), f"fx:{frdir.r('tree')}", check=False)
    assert proc.returncode != 0, "rclone check did not notice a changed file"


def test_rclone_sync_propagates_deletes(shared_ftps_server, frdir, tmp_path):
    srv = shared_ftps_server
    conf = rclone_ftps_conf(srv, tmp_path / "rclone.conf")
    src = tmp_path / "src"
    make_tree(src)
    rclone(conf, "sync", str(src), f"fi:{frdir.r('tree')}")
    shutil.rmtree(src / "docs" / "deep")
    (src / "n03.dat").unlink()
    (src / "added.txt").write_text("added\n")
    rclone(conf, "sync", str(src), f"fi:{frdir.r('tree')}")
    assert_same_tree(src, frdir.local / "tree")
    assert not (frdir.local / "tree" / "docs" / "deep").exists() or not any(
        (frdir.local / "tree" / "docs" / "deep").rglob("*")
    )
    with ftps_session(srv) as ftps:
        assert retr_bytes(ftps, frdir.r("tree/added.txt")) == b"added\n"
