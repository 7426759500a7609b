"""An upload is visible under its name from the OPEN (or STOR) that creates or truncates it, as on OpenSSH
(issue 10): STAT/LSTAT/FSTAT, READDIR, another OPEN, SETSTAT, RENAME and REMOVE of that name work while it is
written. A cut-off upload of a new file is removed (kept with `[uploads] keep_partial = true`); one that
replaces a file gives the previous file back. `[uploads] mode = "atomic"` keeps the old behaviour: the name
shows nothing of the upload until it is complete.
"""

from __future__ import annotations

import ftplib
import os
import socket
import stat

import paramiko
import pytest

from conftest import (
    connect_transport,
    disk_bytes,
    disk_entries,
    file_bytes,
    sftp_client,
    transfer_log_lines,
    upload_temp_files,
    wait_until,
)
from ftps_helpers import ftps_session, reply_code, retr_bytes

OLD = b"the previous, good version of the file\n" * 1000
ATOMIC = '[uploads]\nmode = "atomic"\n'
KEEP_PARTIAL = "[uploads]\nkeep_partial = true\n"
SFTP_AND_FTPS = ("sftp=127.0.0.1:0", "ftps=127.0.0.1:0")


def cut_connection(t: paramiko.Transport) -> None:
    """Ends the TCP connection under paramiko's feet, without closing any handle or channel."""
    t.sock.shutdown(socket.SHUT_RDWR)
    t.sock.close()
    t.close()


def assert_disk_settles(directory, expected: list[str], timeout: float = 15) -> None:
    ok = wait_until(lambda: disk_entries(directory) == expected, timeout=timeout)
    assert ok, f"on the server's disk: {disk_entries(directory)}, expected {expected}"


# ------------------------------------------------------------------------------------------------
# SFTP, standard mode


def test_new_file_is_visible_while_written(shared_server, rdir):
    path = rdir.r("new.bin")
    first, second = os.urandom(100_000), os.urandom(50_000)
    with sftp_client(shared_server) as writer, sftp_client(shared_server) as other:
        f = writer.open(path, "w")
        assert other.stat(path).st_size == 0, "a file just opened with CREAT does not exist under its name"
        assert other.listdir(rdir.remote) == ["new.bin"]
        f.write(first)
        f.flush()  # paramiko waits for every WRITE's status
        assert writer.stat(path).st_size == len(first)
        assert other.stat(path).st_size == len(first)
        assert other.lstat(path).st_size == len(first)
        assert stat.S_ISREG(other.lstat(path).st_mode)
        assert f.stat().st_size == len(first)  # FSTAT
        with other.open(path) as r:
            assert r.read() == first
        f.write(second)
        f.flush()
        assert other.stat(path).st_size == len(first) + len(second)
        listed = {a.filename: a.st_size for a in other.listdir_attr(rdir.remote)}
        assert listed == {"new.bin": len(first) + len(second)}
        f.close()
        assert other.open(path).read() == first + second
    assert (rdir.local / "new.bin").read_bytes() == first + second
    assert disk_entries(rdir.local) == ["new.bin"]


def test_replacing_upload_shows_the_new_data_under_the_name(shared_server, rdir):
    (rdir.local / "data.bin").write_bytes(OLD)
    path = rdir.r("data.bin")
    part1, part2 = os.urandom(70_000), os.urandom(30_000)
    with sftp_client(shared_server) as writer, sftp_client(shared_server) as other:
        f = writer.open(path, "w")
        assert other.stat(path).st_size == 0, "OPEN with TRUNC: the name still shows the previous file"
        f.write(part1)
        f.flush()
        assert other.stat(path).st_size == len(part1)
        assert f.stat().st_size == len(part1)
        with other.open(path) as r:
            assert r.read() == part1
        assert other.listdir(rdir.remote) == ["data.bin"]
        f.write(part2)
        f.close()
        assert other.open(path).read() == part1 + part2
    assert (rdir.local / "data.bin").read_bytes() == part1 + part2
    assert disk_entries(rdir.local) == ["data.bin"]


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
def test_remove_while_open_for_writing(shared_server, rdir, existing):
    if existing:
        (rdir.local / "f.bin").write_bytes(OLD)
    path = rdir.r("f.bin")
    with sftp_client(shared_server) as sftp:
        f = sftp.open(path, "w")
        f.write(os.urandom(200_000))
        f.flush()
        sftp.remove(path)
        with pytest.raises(FileNotFoundError):
            sftp.stat(path)
        assert sftp.listdir(rdir.remote) == []
        f.write(b"written after the remove, as POSIX allows")
        f.close()
        with pytest.raises(FileNotFoundError):
            sftp.stat(path)
        assert_disk_settles(rdir.local, [])
        sftp.rmdir(rdir.remote)
    assert not rdir.local.exists()


def test_abandoned_upload_removed_by_name_then_rmdir_in_the_same_session(shared_server, rdir):
    """What rclone does when it gives up an upload: the handle stays open, the name is removed, the
    directories are removed; the session goes on."""
    with sftp_client(shared_server) as sftp:
        sftp.mkdir(rdir.r("d"))
        f = sftp.open(rdir.r("d/part.bin"), "w")
        f.write(os.urandom(1024 * 1024))
        f.flush()
        sftp.remove(rdir.r("d/part.bin"))
        assert sftp.listdir(rdir.r("d")) == []
        sftp.rmdir(rdir.r("d"))
        assert not (rdir.local / "d").exists()
        assert sftp.listdir(rdir.remote) == []
        f.close()
    assert_disk_settles(rdir.local, [])


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
def test_rename_while_open_for_writing(shared_server, rdir, existing):
    if existing:
        (rdir.local / "a.bin").write_bytes(OLD)
    part1, part2 = os.urandom(60_000), os.urandom(40_000)
    with sftp_client(shared_server) as sftp:
        f = sftp.open(rdir.r("a.bin"), "w")
        f.write(part1)
        f.flush()
        sftp.rename(rdir.r("a.bin"), rdir.r("b.bin"))
        with pytest.raises(FileNotFoundError):
            sftp.stat(rdir.r("a.bin"))
        assert sftp.stat(rdir.r("b.bin")).st_size == len(part1)
        f.write(part2)  # the handle follows the file, as on POSIX
        f.close()
        assert sftp.open(rdir.r("b.bin")).read() == part1 + part2
    assert_disk_settles(rdir.local, ["b.bin"])
    assert (rdir.local / "b.bin").read_bytes() == part1 + part2


def test_setstat_while_open_for_writing(shared_server, rdir):
    """sshfs and rsync set the mode, the size and the times by name while the file is still open."""
    path = rdir.r("s.bin")
    with sftp_client(shared_server) as sftp:
        f = sftp.open(path, "w")
        f.write(b"0123456789" * 100)
        f.flush()
        sftp.chmod(path, 0o640)
        sftp.truncate(path, 10)
        sftp.utime(path, (981173106, 981173106))
        st = sftp.stat(path)
        assert (st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime) == (10, 0o640, 981173106)
        f.close()
        st = sftp.stat(path)
        assert (st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime) == (10, 0o640, 981173106)
    st = os.stat(rdir.local / "s.bin")
    assert (st.st_size, stat.S_IMODE(st.st_mode), int(st.st_mtime)) == (10, 0o640, 981173106)
    assert (rdir.local / "s.bin").read_bytes() == b"0123456789"


def test_cut_off_new_upload_is_removed(shared_server, rdir):
    before = len(shared_server.log())
    t = connect_transport(shared_server)
    sftp = paramiko.SFTPClient.from_transport(t)
    f = sftp.open(rdir.r("new.bin"), "w")
    f.write(os.urandom(1024 * 1024))
    f.flush()
    assert sftp.stat(rdir.r("new.bin")).st_size == 1024 * 1024
    cut_connection(t)
    assert_disk_settles(rdir.local, [])
    assert wait_until(lambda: transfer_log_lines(shared_server, rdir.r("new.bin"), before)[1], timeout=10), (
        f"no `transfer interrupted` line for {rdir.r('new.bin')}:\n{shared_server.log()[before:]}"
    )
    assert transfer_log_lines(shared_server, rdir.r("new.bin"), before)[0] == []


def test_keep_partial_keeps_a_cut_off_new_upload(alice_servers):
    srv = alice_servers(listen=("sftp=127.0.0.1:0",), config=KEEP_PARTIAL)
    (srv.root / "old.bin").write_bytes(OLD)
    data = os.urandom(1024 * 1024)
    t = connect_transport(srv)
    sftp = paramiko.SFTPClient.from_transport(t)
    f = sftp.open("/new.bin", "w")
    f.write(data)
    f.flush()
    g = sftp.open("/old.bin", "w")
    g.write(b"a replacement that is cut off")
    g.flush()
    sftp.stat("/new.bin")
    cut_connection(t)
    # the new file stays for a resume; the replaced file comes back
    assert wait_until(lambda: upload_temp_files(srv.root) == [] and file_bytes(srv.root / "old.bin") == OLD,
                      timeout=15), f"on disk: {disk_entries(srv.root)}"
    assert disk_entries(srv.root) == ["new.bin", "old.bin"]
    assert (srv.root / "new.bin").read_bytes() == data
    # resume it (`reput`: open without truncation, write from the end)
    rest = os.urandom(300_000)
    with sftp_client(srv) as sftp:
        offset = sftp.stat("/new.bin").st_size
        with sftp.open("/new.bin", "r+") as h:
            h.seek(offset)
            h.write(rest)
    assert (srv.root / "new.bin").read_bytes() == data + rest


# ------------------------------------------------------------------------------------------------
# FTPS, standard mode


def ftp_size(ftp: ftplib.FTP, path: str):
    """SIZE of a path, or None when the server says it does not exist."""
    try:
        return ftp.size(path)
    except ftplib.error_perm:
        return None


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
def test_ftps_upload_is_visible_while_stored(shared_ftps_server, frdir, existing):
    srv = shared_ftps_server
    if existing:
        (frdir.local / "data.bin").write_bytes(OLD)
    path = frdir.r("data.bin")
    block = os.urandom(256 * 1024)
    with ftps_session(srv) as ftps, ftps_session(srv) as other:
        ftps.voidcmd("TYPE I")
        other.voidcmd("TYPE I")
        conn = ftps.transfercmd(f"STOR {path}")
        try:
            for _ in range(4):
                conn.sendall(block)
            assert wait_until(lambda: ftp_size(other, path) == 4 * len(block), timeout=10), (
                f"SIZE during the upload: {ftp_size(other, path)}, {4 * len(block)} bytes were sent"
            )
            assert [os.path.basename(n) for n in other.nlst(frdir.remote)] == ["data.bin"]
            assert retr_bytes(other, path) == block * 4
            conn.sendall(block)
            conn.unwrap()
        finally:
            conn.close()
        assert reply_code(ftps.voidresp()) == 226
        assert retr_bytes(other, path) == block * 5
    assert (frdir.local / "data.bin").read_bytes() == block * 5
    assert disk_entries(frdir.local) == ["data.bin"]


# ------------------------------------------------------------------------------------------------
# [uploads] mode = "atomic": nothing of an upload shows under the name before it is complete


def test_atomic_mode_sftp_hides_the_upload_until_close(alice_servers):
    srv = alice_servers(listen=SFTP_AND_FTPS, config=ATOMIC)
    target = srv.root / "data.bin"
    target.write_bytes(OLD)
    old_inode = target.stat().st_ino
    new = os.urandom(3 * 1024 * 1024)
    with sftp_client(srv) as writer, sftp_client(srv) as reader:
        f = writer.open("/data.bin", "w")
        f.write(new[: len(new) // 2])
        g = writer.open("/fresh.bin", "w")
        g.write(b"x" * 100_000)
        g.flush()
        writer.stat("/data.bin")  # a round trip after the writes
        assert reader.stat("/data.bin").st_size == len(OLD)
        assert reader.open("/data.bin").read() == OLD
        assert reader.listdir("/") == ["data.bin"], "a partial upload showed in the listing in atomic mode"
        f.write(new[len(new) // 2 :])
        f.close()
        g.close()
        assert reader.open("/data.bin").read() == new
        assert sorted(reader.listdir("/")) == ["data.bin", "fresh.bin"]
    assert target.read_bytes() == new
    assert target.stat().st_ino != old_inode, "atomic mode rewrote the file in place instead of renaming it"
    assert upload_temp_files(srv.root) == []


def test_atomic_mode_ftps_hides_the_upload_until_complete(alice_servers):
    srv = alice_servers(listen=SFTP_AND_FTPS, config=ATOMIC)
    target = srv.root / "data.bin"
    target.write_bytes(OLD)
    old_inode = target.stat().st_ino
    block = os.urandom(256 * 1024)
    with ftps_session(srv) as ftps, ftps_session(srv) as other:
        ftps.voidcmd("TYPE I")
        conn = ftps.transfercmd("STOR /data.bin")
        try:
            for _ in range(4):
                conn.sendall(block)
            assert wait_until(lambda: disk_bytes(srv.root) >= len(OLD) + 4 * len(block), timeout=10)
            assert retr_bytes(other, "/data.bin") == OLD
            assert [os.path.basename(n) for n in other.nlst("/")] == ["data.bin"]
            conn.unwrap()
        finally:
            conn.close()
        assert reply_code(ftps.voidresp()) == 226
        assert retr_bytes(other, "/data.bin") == block * 4
    assert target.stat().st_ino != old_inode
    assert upload_temp_files(srv.root) == []


def test_atomic_mode_cut_off_upload_keeps_the_previous_file(alice_servers):
    srv = alice_servers(listen=("sftp=127.0.0.1:0",), config=ATOMIC)
    (srv.root / "data.bin").write_bytes(OLD)
    t = connect_transport(srv)
    sftp = paramiko.SFTPClient.from_transport(t)
    f = sftp.open("/data.bin", "w")
    f.write(os.urandom(2 * 1024 * 1024))
    f.flush()
    h = sftp.open("/new.bin", "w")
    h.write(b"partial")
    h.flush()
    sftp.stat("/data.bin")
    cut_connection(t)
    assert_disk_settles(srv.root, ["data.bin"])
    assert (srv.root / "data.bin").read_bytes() == OLD
