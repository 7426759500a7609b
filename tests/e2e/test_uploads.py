"""Uploads cut off half-way leave the previous file intact and nothing behind (no `.ferry-upload.*` file).

In the default `[uploads] mode = "standard"` the file shows under its name from the OPEN on, as on OpenSSH
(test_upload_visibility.py has the details, and the `atomic` mode that hides it until CLOSE).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import paramiko

from conftest import (
    connect_transport,
    disk_bytes,
    sftp_client,
    ssh_options,
    upload_temp_files,
    wait_until,
    write_random,
)

OLD = b"the previous, good version of the file\n" * 1000

# A client in its own process: opens REMOTE for writing (truncate), writes HALF bytes, says so, then hangs.
CHILD = textwrap.dedent(
    """
    import os, socket, sys, time, paramiko
    host, port, user, password, remote, half = sys.argv[1:7]
    sock = socket.create_connection((host, int(port)), timeout=15)
    t = paramiko.Transport(sock)
    t.connect(username=user, password=password)
    sftp = paramiko.SFTPClient.from_transport(t)
    f = sftp.open(remote, "w")
    written, block = 0, os.urandom(32768)
    while written < int(half):
        f.write(block)
        written += len(block)
    f.flush()
    sftp.stat(remote)  # a round trip: every write before it has been answered
    print("HALF", flush=True)
    time.sleep(300)
    """
)


def start_child(server, remote: str, half: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, server.host, str(server.port), server.user, server.password, remote, str(half)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    line = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        if line.strip() == "HALF":
            return proc
    proc.kill()
    raise AssertionError(f"upload child never got half-way (exit {proc.poll()}): {line!r} {proc.stderr.read()}")


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a client started with start_new_session=True, and everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def assert_cleaned_up(server, directory, target, expected: bytes):
    ok = wait_until(lambda: upload_temp_files(directory) == [], timeout=15)
    assert ok, f"temporary upload files left behind: {upload_temp_files(directory)}"
    assert target.read_bytes() == expected, "the previous file was damaged by an interrupted upload"
    assert server.alive()
    with sftp_client(server) as sftp:
        assert sftp.open("/" + target.relative_to(server.root).as_posix()).read() == expected


def test_killed_client_leaves_previous_file(shared_server, rdir):
    (rdir.local / "sub").mkdir()
    target = rdir.local / "sub" / "data.bin"
    target.write_bytes(OLD)
    child = start_child(shared_server, rdir.r("sub/data.bin"), 8 * 1024 * 1024)
    try:
        # mid-upload a second client sees the new data under the name (as on OpenSSH), and no other name
        with sftp_client(shared_server) as sftp:
            assert sftp.listdir(rdir.r("sub")) == ["data.bin"]
            assert sftp.stat(rdir.r("sub/data.bin")).st_size == 8 * 1024 * 1024
    finally:
        kill_group(child)
    assert_cleaned_up(shared_server, rdir.local, target, OLD)


def test_abruptly_closed_connection_leaves_previous_file(shared_server, rdir):
    target = rdir.local / "data.bin"
    target.write_bytes(OLD)
    t = connect_transport(shared_server)
    sftp = paramiko.SFTPClient.from_transport(t)
    f = sftp.open(rdir.r("data.bin"), "w")
    block = os.urandom(65536)
    for _ in range(40):
        f.write(block)
    sftp.stat(rdir.r("data.bin"))
    # cut the TCP connection under paramiko's feet
    t.sock.shutdown(socket.SHUT_RDWR)
    t.sock.close()
    t.close()
    assert_cleaned_up(shared_server, rdir.local, target, OLD)


def test_channel_closed_without_closing_file(shared_server, rdir):
    """The client closes its SFTP channel (politely) but never the file handle: the upload is discarded."""
    target = rdir.local / "data.bin"
    target.write_bytes(OLD)
    t = connect_transport(shared_server)
    try:
        sftp = paramiko.SFTPClient.from_transport(t)
        f = sftp.open(rdir.r("data.bin"), "w")
        f.write(b"partial new content")
        f.flush()
        sftp.stat(rdir.r("data.bin"))
        f._closed = True  # keep paramiko from closing the handle on garbage collection
        sftp.get_channel().close()
        # the same connection is still good for a new session
        sftp2 = paramiko.SFTPClient.from_transport(t)
        assert wait_until(lambda: upload_temp_files(rdir.local) == [], timeout=15), upload_temp_files(rdir.local)
        assert sftp2.open(rdir.r("data.bin")).read() == OLD
    finally:
        t.close()
    assert_cleaned_up(shared_server, rdir.local, target, OLD)


def test_killed_openssh_sftp_leaves_previous_file(shared_server, rdir, tmp_path):
    target = rdir.local / "data.bin"
    target.write_bytes(OLD)
    write_random(tmp_path / "new.bin", 24 * 1024 * 1024)
    cmd = [
        "sftp", "-b", "-", "-l", "16000",  # ~2 MB/s, so the upload takes ~12 s
        "-P", str(shared_server.port), *ssh_options(shared_server), "-o", "BatchMode=yes",
        f"{shared_server.user}@{shared_server.host}",
    ]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
        start_new_session=True,
    )
    try:
        proc.stdin.write(f"put new.bin {rdir.r('data.bin')}\n".encode())
        proc.stdin.close()

        assert wait_until(lambda: disk_bytes(rdir.local) > len(OLD) + 1024 * 1024, timeout=30), (
            f"the upload did not start; sftp exit={proc.poll()} dir={os.listdir(rdir.local)}"
        )
        assert proc.poll() is None, "the upload finished before it could be interrupted"
    finally:
        kill_group(proc)
    assert_cleaned_up(shared_server, rdir.local, target, OLD)


def test_completed_upload_replaces_the_file(shared_server, rdir):
    target = rdir.local / "data.bin"
    target.write_bytes(OLD)
    new = os.urandom(3 * 1024 * 1024)
    with sftp_client(shared_server) as writer, sftp_client(shared_server) as reader:
        f = writer.open(rdir.r("data.bin"), "w")
        f.write(new[: len(new) // 2])
        f.flush()
        # a reader during the upload sees what has been written so far, as on OpenSSH
        assert reader.stat(rdir.r("data.bin")).st_size == len(new) // 2
        assert reader.open(rdir.r("data.bin")).read() == new[: len(new) // 2]
        f.write(new[len(new) // 2 :])
        f.close()
        assert reader.open(rdir.r("data.bin")).read() == new
    assert target.read_bytes() == new
    assert upload_temp_files(rdir.local) == []


def test_new_file_is_listed_from_open(shared_server, rdir):
    with sftp_client(shared_server) as writer, sftp_client(shared_server) as reader:
        f = writer.open(rdir.r("fresh.bin"), "w")
        f.write(b"x" * 100_000)
        writer.stat(rdir.remote)  # a round trip after the writes
        assert reader.listdir(rdir.remote) == ["fresh.bin"]
        f.close()
        assert reader.listdir(rdir.remote) == ["fresh.bin"]
    assert (rdir.local / "fresh.bin").read_bytes() == b"x" * 100_000


def test_upload_keeps_mode_of_replaced_file(shared_server, rdir, tmp_path):
    """Replacing a file by upload keeps it a regular file with sane permissions (not the temp file's 0600)."""
    target = rdir.local / "data.txt"
    target.write_bytes(OLD)
    os.chmod(target, 0o644)
    with sftp_client(shared_server) as sftp:
        with sftp.open(rdir.r("data.txt"), "w") as f:
            f.write(b"new")
    assert target.read_bytes() == b"new"
    assert (target.stat().st_mode & 0o044) == 0o044, oct(target.stat().st_mode)


def test_server_serves_after_many_interrupted_uploads(shared_server, rdir):
    target = rdir.local / "data.bin"
    target.write_bytes(OLD)
    for _ in range(5):
        t = connect_transport(shared_server)
        sftp = paramiko.SFTPClient.from_transport(t)
        f = sftp.open(rdir.r("data.bin"), "w")
        f.write(os.urandom(200_000))
        sftp.stat(rdir.r("data.bin"))
        t.sock.close()
        t.close()
    assert_cleaned_up(shared_server, rdir.local, target, OLD)
    with sftp_client(shared_server) as sftp:
        with sftp.open(rdir.r("data.bin"), "w") as f:
            f.write(b"finally complete")
    assert target.read_bytes() == b"finally complete"
