"""Uploads cut off by faults never replace a good file, on either protocol (issue 10): a client killed
mid-upload, a full file system, the server killed and restarted, a TLS data connection that ends without
close_notify. Afterwards the previous file is intact byte for byte, nothing hidden is left on disk, the
space is free again, and the log says `transfer interrupted` (and, after a crash, `recover`).
"""

from __future__ import annotations

import ftplib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import paramiko
import pytest
from paramiko.sftp import CMD_CLOSE

from conftest import (
    connect_transport,
    crash_server,
    die_with_parent,
    disk_bytes,
    disk_entries,
    file_bytes,
    kill_process_group,
    run_sftp,
    sftp_client,
    ssh_options,
    transfer_log_lines,
    upload_temp_files,
    wait_until,
    write_random,
)
from ftps_helpers import close_quietly, ftp_url, open_ftps, reply_code, retr_bytes, stor_bytes

OLD = b"the previous, good version of the file\n" * 1000
SFTP_AND_FTPS = ("sftp=127.0.0.1:0", "ftps=127.0.0.1:0", "ftps-implicit=127.0.0.1:0")
MODES = pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])


def assert_previous_file_back(srv, directory: Path, name: str, expected: bytes, timeout: float = 15) -> None:
    """The file is the previous one again and nothing else is on disk in its directory; the server serves it."""
    target = directory / name

    def settled() -> bool:
        return disk_entries(directory) == [name] and file_bytes(target) == expected

    if not wait_until(settled, timeout=timeout):
        got = file_bytes(target)
        state = "missing" if got is None else (
            "intact" if got == expected else f"replaced by {len(got)} bytes (previous: {len(expected)})"
        )
        raise AssertionError(
            f"after the interrupted upload {name} is {state}; in its directory on disk: {disk_entries(directory)}"
        )
    assert srv.alive(), "the server died"
    with sftp_client(srv) as sftp:
        assert sftp.open("/" + target.relative_to(srv.root).as_posix()).read() == expected


def assert_logged_interrupted(srv, path: str, since: int) -> None:
    ok = wait_until(lambda: transfer_log_lines(srv, path, since)[1], timeout=10)
    done, cut = transfer_log_lines(srv, path, since)
    assert ok, f"no `transfer interrupted` line for {path}:\n{srv.log()[since:][-4000:]}"
    assert done == [], f"the interrupted upload of {path} was logged as a complete transfer: {done}"


def data_arrived(directory: Path, at_least: int) -> bool:
    return disk_bytes(directory) >= at_least


# ------------------------------------------------------------------------------------------------
# a client killed (kill -9) half-way through an upload that replaces a good file

# A paramiko client in its own process: opens REMOTE for writing (truncate), writes SIZE bytes, waits for
# every reply, then hangs until killed.
CHILD = textwrap.dedent(
    """
    import os, socket, sys, time, paramiko
    host, port, user, password, remote, size = sys.argv[1:7]
    t = paramiko.Transport(socket.create_connection((host, int(port)), timeout=15))
    t.connect(username=user, password=password)
    sftp = paramiko.SFTPClient.from_transport(t)
    f = sftp.open(remote, "w")
    written, block = 0, os.urandom(32768)
    while written < int(size):
        f.write(block)
        written += len(block)
    f.flush()
    time.sleep(300)
    """
)


def test_killed_paramiko_client_sftp(shared_ftps_server, frdir):
    srv = shared_ftps_server
    (frdir.local / "data.bin").write_bytes(OLD)
    before = len(srv.log())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, srv.host, str(srv.port), srv.user, srv.password, frdir.r("data.bin"),
         str(4 * 1024 * 1024)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=die_with_parent,
    )
    try:
        assert wait_until(lambda: data_arrived(frdir.local, 4 * 1024 * 1024) or child.poll() is not None,
                          timeout=60)
        assert child.poll() is None, f"the upload client ended early: {child.stderr.read()}"
    finally:
        kill_process_group(child)
    assert_previous_file_back(srv, frdir.local, "data.bin", OLD)
    assert_logged_interrupted(srv, frdir.r("data.bin"), before)


def test_killed_openssh_sftp_client(shared_ftps_server, frdir, tmp_path):
    srv = shared_ftps_server
    (frdir.local / "data.bin").write_bytes(OLD)
    write_random(tmp_path / "new.bin", 24 * 1024 * 1024)
    before = len(srv.log())
    cmd = ["sftp", "-b", "-", "-l", "16000",  # ~2 MB/s: the upload would take ~12 s
           "-P", str(srv.port), *ssh_options(srv), "-o", "BatchMode=yes", f"{srv.user}@{srv.host}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path, start_new_session=True, preexec_fn=die_with_parent)
    try:
        proc.stdin.write(f"put new.bin {frdir.r('data.bin')}\n".encode())
        proc.stdin.close()
        assert wait_until(lambda: data_arrived(frdir.local, len(OLD) + 2 * 1024 * 1024), timeout=30), (
            f"the upload did not start (sftp exit {proc.poll()})"
        )
        assert proc.poll() is None, "the upload finished before it could be interrupted"
    finally:
        kill_process_group(proc)
    assert_previous_file_back(srv, frdir.local, "data.bin", OLD)
    assert_logged_interrupted(srv, frdir.r("data.bin"), before)


@MODES
def test_killed_curl_ftps_client(shared_ftps_server, frdir, tmp_path, implicit):
    """curl -T at 4 MB/s killed after 1.5 s: its TLS data connection ends without close_notify."""
    srv = shared_ftps_server
    (frdir.local / "data.bin").write_bytes(OLD)
    write_random(tmp_path / "new.bin", 24 * 1024 * 1024)
    before = len(srv.log())
    cmd = ["curl", "-sS", "-k", "--connect-timeout", "15", "--max-time", "60", "--limit-rate", "4M",
           "-u", f"{srv.user}:{srv.password}", "-T", str(tmp_path / "new.bin"),
           ftp_url(srv, frdir.r("data.bin"), implicit)]
    if not implicit:
        cmd.insert(1, "--ssl-reqd")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=die_with_parent,
                            env=dict(os.environ, CURL_HOME="/nonexistent"))
    try:
        assert wait_until(lambda: data_arrived(frdir.local, len(OLD) + 1024 * 1024) or proc.poll() is not None,
                          timeout=30)
        time.sleep(0.5)
        assert proc.poll() is None, f"curl ended before it was killed: {proc.stderr.read().decode(errors='replace')}"
    finally:
        kill_process_group(proc)
    assert_previous_file_back(srv, frdir.local, "data.bin", OLD)
    assert_logged_interrupted(srv, frdir.r("data.bin"), before)


# ------------------------------------------------------------------------------------------------
# a TLS data connection that ends without close_notify while the control connection stays


def end_without_close_notify(conn: ssl.SSLSocket) -> None:
    """Ends a TLS data connection with a plain TCP FIN: no close_notify alert (what a crash or a cut
    connection looks like). Whatever the server still sends is read and dropped, so no RST follows."""
    conn.shutdown(socket.SHUT_WR)  # SSLSocket.shutdown drops the TLS state: a bare TCP shutdown
    conn.settimeout(15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if not conn.recv(65536):
                break
        except ConnectionResetError:
            break
    conn.close()


def final_reply(ftp: ftplib.FTP) -> str:
    resp = ftp.getmultiline()
    while resp[:1] == "1":
        resp = ftp.getmultiline()
    return resp


@MODES
def test_ftps_data_connection_ended_without_close_notify(shared_ftps_server, frdir, implicit):
    srv = shared_ftps_server
    (frdir.local / "data.bin").write_bytes(OLD)
    before = len(srv.log())
    ftps = open_ftps(srv, implicit=implicit)
    try:
        ftps.voidcmd("TYPE I")
        conn = ftps.transfercmd(f"STOR {frdir.r('data.bin')}")
        block = os.urandom(65536)
        for _ in range(32):  # 2 MiB
            conn.sendall(block)
        end_without_close_notify(conn)
        resp = final_reply(ftps)
        assert 400 <= reply_code(resp) < 500, (
            f"a STOR whose TLS data connection ended without close_notify was answered {resp!r}"
        )
        assert_previous_file_back(srv, frdir.local, "data.bin", OLD)
        assert_logged_interrupted(srv, frdir.r("data.bin"), before)
        # the control connection goes on: a complete upload replaces the file
        assert reply_code(stor_bytes(ftps, frdir.r("data.bin"), b"complete")) == 226
        assert retr_bytes(ftps, frdir.r("data.bin")) == b"complete"
    finally:
        close_quietly(ftps, quit=True)
    assert (frdir.local / "data.bin").read_bytes() == b"complete"


# ------------------------------------------------------------------------------------------------
# a full file system: the upload fails, the good file stays, the space comes back

FS_SIZE = 4 * 1024 * 1024
GOOD_SIZE = 1024 * 1024


@pytest.fixture
def small_fs(tmp_path) -> Path:
    """A 4 MiB tmpfs mounted for this test (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the full-disk tests needs root")
    if not shutil.which("mount") or not shutil.which("umount"):
        pytest.skip("mount/umount not installed")
    mnt = tmp_path / "small-fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        r = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def used_bytes(mnt: Path) -> int:
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@pytest.fixture
def full_disk_server(small_fs, alice_servers, tmp_path):
    """A server whose user alice has her home on the small tmpfs, with a good 1 MiB file in it; a 16 MiB
    file to upload over it."""
    home = small_fs / "home"
    home.mkdir()
    srv = alice_servers(listen=SFTP_AND_FTPS, home=home)
    good = os.urandom(GOOD_SIZE)
    (home / "good.bin").write_bytes(good)
    write_random(tmp_path / "big.bin", 16 * 1024 * 1024)
    srv.good, srv.big, srv.fs = good, tmp_path / "big.bin", small_fs
    return srv


def assert_good_file_kept(srv, log_since: int) -> None:
    """The good file is intact and alone, and the failed upload was not logged as a complete transfer."""
    assert_previous_file_back(srv, srv.root, "good.bin", srv.good)
    assert transfer_log_lines(srv, "/good.bin", log_since)[0] == [], "the failed upload was logged as complete"


def assert_space_back(srv) -> None:
    """Once the good file is removed the file system is (nearly) empty again."""
    with sftp_client(srv) as sftp:
        sftp.remove("/good.bin")
        assert sftp.listdir("/") == []
    assert wait_until(lambda: used_bytes(srv.fs) < 256 * 1024, timeout=10), (
        f"{used_bytes(srv.fs)} bytes of the {FS_SIZE}-byte file system are still used after the last file was "
        f"removed (space held by hidden or unlinked-but-open files); on disk: {disk_entries(srv.fs)}"
    )


def test_full_disk_openssh_sftp_put(full_disk_server, tmp_path):
    srv = full_disk_server
    before = len(srv.log())
    proc = run_sftp(srv, [f"put {srv.big} /good.bin"], check=False, timeout=60)
    assert proc.returncode != 0, f"sftp reported success for an upload that did not fit:\n{proc.stdout}"
    assert_good_file_kept(srv, before)
    assert_space_back(srv)


def test_full_disk_paramiko_put(full_disk_server):
    srv = full_disk_server
    before = len(srv.log())
    with sftp_client(srv) as sftp:
        with pytest.raises(IOError):
            sftp.put(str(srv.big), "/good.bin")
    assert_good_file_kept(srv, before)
    assert_space_back(srv)


def test_full_disk_sftp_close_reports_the_failed_write(full_disk_server):
    """A WRITE failed with ENOSPC: the CLOSE of that handle must fail too, and the old file stays."""
    srv = full_disk_server
    before = len(srv.log())
    with sftp_client(srv) as sftp:
        f = sftp.open("/good.bin", "w")
        f.set_pipelined(False)
        block = os.urandom(256 * 1024)
        failed_write = None
        for i in range(64):  # 16 MiB, four times the file system
            try:
                f.write(block)
                f.flush()
            except IOError as e:
                failed_write = e
                break
        assert failed_write is not None, "16 MiB were written to a 4 MiB file system"
        # paramiko's SFTPFile.close() ignores the CLOSE status, so the CLOSE is sent by hand
        with pytest.raises(IOError):
            sftp._request(CMD_CLOSE, f.handle)
        f._closed = True
        # the session goes on, with the previous file under the name
        assert sftp.open("/good.bin").read() == srv.good
    assert_good_file_kept(srv, before)
    assert_space_back(srv)


def test_full_disk_ftps_stor(full_disk_server):
    srv = full_disk_server
    before = len(srv.log())
    ftps = open_ftps(srv)
    try:
        ftps.voidcmd("TYPE I")
        conn = ftps.transfercmd("STOR /good.bin")
        sent = 0
        try:
            with open(srv.big, "rb") as src:
                while chunk := src.read(65536):
                    conn.sendall(chunk)
                    sent += len(chunk)
            conn.unwrap()
        except (ConnectionError, ssl.SSLError, socket.timeout):
            pass  # the server stopped taking data: what a client sees when the upload failed
        finally:
            conn.close()
        resp = final_reply(ftps)
        assert reply_code(resp) >= 400, f"a STOR that did not fit was answered {resp!r} (after {sent} bytes sent)"
    finally:
        close_quietly(ftps, quit=True)
    assert_good_file_kept(srv, before)
    assert_space_back(srv)


# ------------------------------------------------------------------------------------------------
# the server killed (kill -9) mid-upload, then restarted on the same data dir


def test_server_killed_mid_upload_then_restarted(alice_servers):
    srv = alice_servers(listen=SFTP_AND_FTPS)
    root = srv.root
    old_sftp, old_ftps = OLD, b"the previous FTPS file\n" * 3000
    (root / "data.bin").write_bytes(old_sftp)
    (root / "ftp-data.bin").write_bytes(old_ftps)
    (root / "fresh").mkdir()
    (root / "ftp-fresh").mkdir()
    mib = 1024 * 1024

    t = connect_transport(srv)
    sftp = paramiko.SFTPClient.from_transport(t)
    replacing = sftp.open("/data.bin", "w")
    creating = sftp.open("/fresh/new.bin", "w")
    for _ in range(4):
        replacing.write(os.urandom(mib))
        creating.write(os.urandom(mib // 2))
    replacing.flush()
    creating.flush()
    sftp.stat("/data.bin")  # every WRITE has been answered
    ftp_conns = []
    for path, size in (("/ftp-data.bin", 2 * mib), ("/ftp-fresh/new.bin", mib)):
        ftps = open_ftps(srv)
        ftps.voidcmd("TYPE I")
        conn = ftps.transfercmd(f"STOR {path}")
        conn.sendall(os.urandom(size))
        ftp_conns.append((ftps, conn))
    assert wait_until(lambda: data_arrived(root, 4 * mib + 2 * mib + 2 * mib + mib), timeout=15), (
        f"the uploads did not reach the disk: {disk_bytes(root)} bytes"
    )

    crash_server(srv)
    t.close()
    for ftps, conn in ftp_conns:
        conn.close()
        close_quietly(ftps)

    again = alice_servers.restart(srv)
    expected = ["data.bin", "fresh", "ftp-data.bin", "ftp-fresh"]
    ok = wait_until(lambda: disk_entries(root) == expected, timeout=15)
    assert ok, f"after the restart, on disk: {disk_entries(root)} (expected {expected}: the previous files back, " \
               f"the new partial files and every temporary file gone)"
    assert (root / "data.bin").read_bytes() == old_sftp, "the file replaced over SFTP was not restored"
    assert (root / "ftp-data.bin").read_bytes() == old_ftps, "the file replaced over FTPS was not restored"
    recovered = again.wait_for_log(r"recover", timeout=10)
    assert recovered, f"no log line about recovering interrupted uploads at start:\n{again.log()[-4000:]}"
    lines = [line for line in again.log().splitlines() if re.search(r"recover", line, re.I)]
    assert any("data.bin" in line for line in lines), f"the recover lines name no path: {lines}"
    with sftp_client(again) as sftp:
        assert sftp.open("/data.bin").read() == old_sftp
        sftp.rmdir("/fresh")  # it lists empty, so it is empty
        sftp.rmdir("/ftp-fresh")
        with sftp.open("/data.bin", "w") as f:
            f.write(b"complete")
    assert (root / "data.bin").read_bytes() == b"complete"
    assert upload_temp_files(root) == []


# ------------------------------------------------------------------------------------------------
# two uploads replacing the same file at once, both cut off: neither one's partial data may stay


@pytest.mark.parametrize("cut_first", ["first", "second"])
def test_overlapping_replacements_both_cut_off(shared_ftps_server, frdir, cut_first):
    srv = shared_ftps_server
    (frdir.local / "data.bin").write_bytes(OLD)
    uploads = []
    for size in (200_000, 300_000):
        t = connect_transport(srv)
        sftp = paramiko.SFTPClient.from_transport(t)
        f = sftp.open(frdir.r("data.bin"), "w")
        f.write(os.urandom(size))
        f.flush()  # every WRITE answered before the next upload opens the file
        uploads.append((t, f))  # a dropped SFTPFile sends CLOSE from __del__: keep both referenced
    if cut_first == "second":
        uploads.reverse()
    for t, f in uploads:
        f._closed = True  # never send a CLOSE for it
        t.sock.shutdown(socket.SHUT_RDWR)
        t.sock.close()
        t.close()
        time.sleep(0.3)
    assert_previous_file_back(srv, frdir.local, "data.bin", OLD)
