"""paramiko against Ferry: logins, SFTP operations, OpenSSH extensions, a big transfer, robustness."""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import stat
import struct
import threading
import time

import paramiko
import pytest
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_NAME,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READDIR,
    CMD_STAT,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_READ,
    SFTP_FLAG_WRITE,
)

from conftest import (
    connect_transport,
    sftp_client,
    sftp_version_extensions,
    sha256_file,
    upload_temp_files,
    wait_until,
    write_random,
)

EXPECTED_EXTENSIONS = [
    "posix-rename@openssh.com",
    "statvfs@openssh.com",
    "fstatvfs@openssh.com",
    "hardlink@openssh.com",
    "fsync@openssh.com",
    "limits@openssh.com",
    "expand-path@openssh.com",
]


# ------------------------------------------------------------------------------------------------
# logins


def test_transport_password_login(shared_server, rdir):
    t = paramiko.Transport((shared_server.host, shared_server.port))
    try:
        t.connect(username=shared_server.user, password=shared_server.password)
        assert t.is_authenticated()
        sftp = paramiko.SFTPClient.from_transport(t)
        with sftp.open(rdir.r("hello.txt"), "w") as f:
            f.write(b"hello ferry\n")
        assert sftp.open(rdir.r("hello.txt")).read() == b"hello ferry\n"
        assert "hello.txt" in sftp.listdir(rdir.remote)
        sftp.close()
    finally:
        t.close()
    assert (rdir.local / "hello.txt").read_bytes() == b"hello ferry\n"


def test_sshclient_autoadd_open_sftp(shared_server, rdir, tmp_path):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(
            shared_server.host, port=shared_server.port, username=shared_server.user,
            password=shared_server.password, look_for_keys=False, allow_agent=False, timeout=15,
        )
        sftp = client.open_sftp()
        digest = write_random(tmp_path / "up.bin", 300_000)
        sftp.put(str(tmp_path / "up.bin"), rdir.r("up.bin"))
        sftp.get(rdir.r("up.bin"), str(tmp_path / "down.bin"))
        sftp.close()
    finally:
        client.close()
    assert sha256_file(rdir.local / "up.bin") == digest
    assert sha256_file(tmp_path / "down.bin") == digest


def test_key_login(shared_server):
    with sftp_client(shared_server, key=shared_server.key) as sftp:
        assert sftp.normalize(".") == "/"


def test_wrong_password_rejected_and_logged(shared_server):
    before = len(shared_server.log())
    wrong = "definitely-wrong-" + "x" * 8
    with pytest.raises(paramiko.AuthenticationException):
        connect_transport(shared_server, password=wrong)
    line = shared_server.wait_for_log(r"alice.*(fail|denied|reject|invalid|wrong|bad)|(fail|denied|reject|invalid|wrong|bad).*alice", since=before)
    assert line, f"no log line about alice's failed login:\n{shared_server.log()[before:]}"
    assert wrong not in shared_server.log(), "the server logged a password"


def test_unknown_user_rejected(shared_server):
    with pytest.raises(paramiko.AuthenticationException):
        connect_transport(shared_server, user="nobody", password=shared_server.password)


def _event_lines(srv, event: str, client: str, since: int) -> list[str]:
    """The log lines of `event` (`login`, `logout`, `transfer`: the word right after the level) for one client."""
    rx = re.compile(rf"^\S+\s+(INFO|WARN)\s+{event}\s")
    return [line for line in srv.log()[since:].splitlines()
            if rx.search(line) and re.search(rf"\bclient={re.escape(client)}(\s|$)", line)]


@pytest.mark.parametrize("method", ["password", "publickey"])
def test_login_transfer_logout_logged_with_their_fields(shared_server, rdir, method):
    """One line per login, transfer and logout, with the fields fail2ban and admins read (README "Run it")."""
    srv = shared_server
    before = len(srv.log())
    data = os.urandom(12345)
    t = connect_transport(srv, key=srv.key if method == "publickey" else None)
    host, port = t.sock.getsockname()[:2]
    client = f"{host}:{port}"
    try:
        sftp = paramiko.SFTPClient.from_transport(t)
        sftp.get_channel().settimeout(30)
        sftp.putfo(io.BytesIO(data), rdir.r("logged.bin"))
        with sftp.open(rdir.r("logged.bin")) as f:
            assert f.read() == data
    finally:
        t.close()
    assert wait_until(lambda: _event_lines(srv, "logout", client, before), 5), srv.log()[before:]
    (login,) = _event_lines(srv, "login", client, before)
    for field in ("user=alice", 'protocol="?sftp"?(\\s|$)', f'method="?{method}"?(\\s|$)'):
        assert re.search(rf"\b{field}", login), f"{field} missing from the login line: {login}"
    transfers = _event_lines(srv, "transfer", client, before)
    path = re.escape(rdir.r("logged.bin"))
    up = [x for x in transfers if re.search(rf'\bpath="?{path}"?\s', x) and "bytes_written=12345" in x]
    down = [x for x in transfers if re.search(rf'\bpath="?{path}"?\s', x) and "bytes_read=12345" in x]
    assert len(up) == 1 and len(down) == 1, f"want one upload and one download line:\n" + "\n".join(transfers)
    for line in (*up, *down):
        assert "user=alice" in line and re.search(r"\bduration_ms=\d+", line), line
    (logout,) = _event_lines(srv, "logout", client, before)
    assert "user=alice" in logout and re.search(r"\bduration_ms=\d+", logout), logout
    assert srv.password not in srv.log(), "the server logged a password"


# ------------------------------------------------------------------------------------------------
# operations


def _raw_listing(sftp: paramiko.SFTPClient, path: bytes) -> list[bytes]:
    """READDIR through the raw protocol: the names as the server sent them, bytes, undecoded."""
    _, msg = sftp._request(CMD_OPENDIR, path)
    handle = msg.get_binary()
    names: list[bytes] = []
    try:
        while True:
            try:
                _, msg = sftp._request(CMD_READDIR, handle)
            except EOFError:
                return names
            for _ in range(msg.get_int()):
                names.append(msg.get_string())
                msg.get_string()
                paramiko.SFTPAttributes._from_msg(msg)
    finally:
        sftp._request(CMD_CLOSE, handle)


def test_names_that_are_not_utf8_are_kept_byte_for_byte(shared_server, rdir):
    """README: "File names that are not UTF-8 are kept byte for byte" (Latin-1 names from old systems)."""
    made_by_client = "caf\xe9-from-client.txt".encode("latin-1")
    on_disk = "na\xefve-on-disk.txt".encode("latin-1")
    (rdir.local.joinpath(os.fsdecode(on_disk))).write_bytes(b"made on the server\n")
    with sftp_client(shared_server) as sftp:
        base = rdir.remote.encode() + b"/"
        _, msg = sftp._request(CMD_OPEN, base + made_by_client, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE,
                               paramiko.SFTPAttributes())
        sftp._request(CMD_CLOSE, msg.get_binary())
        assert sorted(_raw_listing(sftp, rdir.remote.encode())) == sorted([made_by_client, on_disk])
        _, msg = sftp._request(CMD_STAT, base + on_disk)
        assert paramiko.SFTPAttributes._from_msg(msg).st_size == len(b"made on the server\n")
    assert sorted(os.listdir(os.fsencode(rdir.local))) == sorted([made_by_client, on_disk])


def test_version_and_extensions(shared_server):
    t = connect_transport(shared_server)
    try:
        version, exts = sftp_version_extensions(t)
    finally:
        t.close()
    assert version == 3
    missing = [e for e in EXPECTED_EXTENSIONS if e not in exts]
    assert not missing, f"extensions not advertised: {missing}; got {sorted(exts)}"


def test_posix_rename_overwrites(shared_server, rdir):
    (rdir.local / "a").write_text("A")
    (rdir.local / "b").write_text("B")
    with sftp_client(shared_server) as sftp:
        sftp.posix_rename(rdir.r("a"), rdir.r("b"))
        assert sftp.listdir(rdir.remote) == ["b"]
    assert (rdir.local / "b").read_text() == "A"
    assert not (rdir.local / "a").exists()


def test_plain_rename_does_not_overwrite(shared_server, rdir):
    (rdir.local / "a").write_text("A")
    (rdir.local / "b").write_text("B")
    with sftp_client(shared_server) as sftp:
        with pytest.raises(IOError):
            sftp.rename(rdir.r("a"), rdir.r("b"))
        sftp.rename(rdir.r("a"), rdir.r("c"))
    assert (rdir.local / "b").read_text() == "B"
    assert (rdir.local / "c").read_text() == "A"


def _u64s(msg, n):
    return [msg.get_int64() for _ in range(n)]


def test_statvfs_and_fstatvfs(shared_server, rdir):
    (rdir.local / "f").write_text("x")
    disk = os.statvfs(rdir.local)
    with sftp_client(shared_server) as sftp:
        t, msg = sftp._request(CMD_EXTENDED, "statvfs@openssh.com", rdir.remote)
        assert t == CMD_EXTENDED_REPLY
        bsize, frsize, blocks, bfree, bavail, files, ffree, favail, fsid, flag, namemax = _u64s(msg, 11)
        with sftp.open(rdir.r("f")) as f:
            t2, msg2 = sftp._request(CMD_EXTENDED, "fstatvfs@openssh.com", f.handle)
            assert t2 == CMD_EXTENDED_REPLY
            fvals = _u64s(msg2, 11)
    assert frsize > 0 and bsize > 0 and blocks > 0 and namemax > 0
    assert bavail <= bfree <= blocks
    assert blocks * frsize == disk.f_blocks * disk.f_frsize, "statvfs total size differs from the disk's"
    assert fvals[2] * fvals[1] == blocks * frsize


def test_limits_extension(shared_server):
    with sftp_client(shared_server) as sftp:
        t, msg = sftp._request(CMD_EXTENDED, "limits@openssh.com")
        assert t == CMD_EXTENDED_REPLY
        max_packet, max_read, max_write, max_handles = _u64s(msg, 4)
    assert max_packet >= 34000 and max_read >= 32768 and max_write >= 32768, (max_packet, max_read, max_write)


def test_expand_path_extension(shared_server, rdir):
    with sftp_client(shared_server) as sftp:
        results = []
        for p in ("~", f"~{rdir.remote}", "."):
            t, msg = sftp._request(CMD_EXTENDED, "expand-path@openssh.com", p)
            assert t == CMD_NAME
            assert msg.get_int() == 1
            results.append(msg.get_text())
    # Assumption: the user's home is the root of their jail.
    assert results == ["/", rdir.remote, "/"]


def test_hardlink_extension(shared_server, rdir):
    (rdir.local / "orig").write_text("same inode")
    with sftp_client(shared_server) as sftp:
        sftp._request(CMD_EXTENDED, "hardlink@openssh.com", rdir.r("orig"), rdir.r("link"))
        with pytest.raises(IOError):  # the new name must not exist yet
            sftp._request(CMD_EXTENDED, "hardlink@openssh.com", rdir.r("orig"), rdir.r("link"))
    assert os.stat(rdir.local / "link").st_ino == os.stat(rdir.local / "orig").st_ino


def test_fsync_extension(shared_server, rdir):
    with sftp_client(shared_server) as sftp:
        with sftp.open(rdir.r("synced"), "w") as f:
            f.write(b"durable\n")
            f.flush()
            sftp._request(CMD_EXTENDED, "fsync@openssh.com", f.handle)
    assert (rdir.local / "synced").read_bytes() == b"durable\n"


def test_unknown_extension_is_an_error(shared_server):
    with sftp_client(shared_server) as sftp:
        with pytest.raises(IOError):
            sftp._request(CMD_EXTENDED, "no-such-extension@example.org", "x")
        assert sftp.normalize(".") == "/"  # the session is still usable


def test_listdir_attr(shared_server, rdir):
    (rdir.local / "d").mkdir()
    (rdir.local / "small").write_bytes(b"12345")
    (rdir.local / "empty").write_bytes(b"")
    os.utime(rdir.local / "small", (1_500_000_000, 1_500_000_000))
    with sftp_client(shared_server) as sftp:
        attrs = {a.filename: a for a in sftp.listdir_attr(rdir.remote)}
    assert sorted(attrs) == ["d", "empty", "small"]
    assert stat.S_ISDIR(attrs["d"].st_mode)
    assert stat.S_ISREG(attrs["small"].st_mode) and attrs["small"].st_size == 5
    assert attrs["empty"].st_size == 0
    assert attrs["small"].st_mtime == 1_500_000_000
    assert "small" in attrs["small"].longname


def test_listdir_of_big_directory(shared_server, rdir):
    names = {f"entry-{i:04}" for i in range(1200)}
    for n in names:
        (rdir.local / n).write_bytes(b"")
    with sftp_client(shared_server) as sftp:
        assert set(sftp.listdir(rdir.remote)) == names


def test_stat_lstat(shared_server, rdir):
    (rdir.local / "file").write_bytes(b"x" * 1234)
    os.chmod(rdir.local / "file", 0o604)
    os.symlink("file", rdir.local / "link")
    with sftp_client(shared_server) as sftp:
        st = sftp.stat(rdir.r("link"))
        lst = sftp.lstat(rdir.r("link"))
        fst = sftp.stat(rdir.r("file"))
        assert sftp.readlink(rdir.r("link")) == "file"
        with pytest.raises(FileNotFoundError):
            sftp.stat(rdir.r("missing"))
        with sftp.open(rdir.r("file")) as f:
            hst = f.stat()
    assert stat.S_ISREG(st.st_mode) and st.st_size == 1234
    assert stat.S_ISLNK(lst.st_mode)
    assert stat.S_IMODE(fst.st_mode) == 0o604
    assert fst.st_mtime == int(os.stat(rdir.local / "file").st_mtime)
    assert hst.st_size == 1234


def test_setstat_chmod_utime_truncate(shared_server, rdir):
    (rdir.local / "f").write_bytes(b"0123456789")
    with sftp_client(shared_server) as sftp:
        sftp.truncate(rdir.r("f"), 4)
        sftp.chmod(rdir.r("f"), 0o600)
        sftp.utime(rdir.r("f"), (1_234_567_890, 1_234_567_890))
    st = os.stat(rdir.local / "f")
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert int(st.st_mtime) == 1_234_567_890
    assert (rdir.local / "f").read_bytes() == b"0123"


def test_random_access_write_in_place(shared_server, rdir):
    (rdir.local / "f").write_bytes(b"0123456789")
    with sftp_client(shared_server) as sftp:
        with sftp.open(rdir.r("f"), "r+") as f:
            f.seek(3)
            f.write(b"XYZ")
            f.seek(12)
            f.write(b"!")
        with sftp.open(rdir.r("f"), "r") as f:
            f.seek(2)
            assert f.read(3) == b"2XY"
    assert (rdir.local / "f").read_bytes() == b"012XYZ6789\0\0!"


def test_append_mode(shared_server, rdir):
    (rdir.local / "log").write_bytes(b"line1\n")
    with sftp_client(shared_server) as sftp:
        with sftp.open(rdir.r("log"), "a") as f:
            f.write(b"line2\n")
    assert (rdir.local / "log").read_bytes() == b"line1\nline2\n"


def test_exclusive_create(shared_server, rdir):
    (rdir.local / "exists").write_bytes(b"keep")
    with sftp_client(shared_server) as sftp:
        with pytest.raises(IOError):
            sftp.open(rdir.r("exists"), "wx")  # WRITE|CREAT|TRUNC|EXCL
        with sftp.open(rdir.r("new"), "wx") as f:
            f.write(b"fresh")
    assert (rdir.local / "exists").read_bytes() == b"keep"
    assert (rdir.local / "new").read_bytes() == b"fresh"


def test_exclusive_create_without_write_flag(shared_server, rdir):
    """SSH_FXF_EXCL fails on an existing file whatever the access flags (POSIX O_CREAT|O_EXCL)."""
    (rdir.local / "exists").write_bytes(b"keep")
    with sftp_client(shared_server) as sftp:
        attrs = paramiko.SFTPAttributes()
        with pytest.raises(IOError):
            sftp._request(CMD_OPEN, rdir.r("exists"), SFTP_FLAG_READ | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL, attrs)
    assert (rdir.local / "exists").read_bytes() == b"keep"


def test_mkdir_rmdir_remove(shared_server, rdir):
    with sftp_client(shared_server) as sftp:
        sftp.mkdir(rdir.r("d"))
        assert (rdir.local / "d").is_dir()
        with pytest.raises(IOError):
            sftp.mkdir(rdir.r("d"))
        with sftp.open(rdir.r("d/f"), "w") as f:
            f.write(b"x")
        with pytest.raises(IOError):
            sftp.rmdir(rdir.r("d"))
        sftp.remove(rdir.r("d/f"))
        sftp.rmdir(rdir.r("d"))
        with pytest.raises(FileNotFoundError):
            sftp.remove(rdir.r("d/f"))
    assert not (rdir.local / "d").exists()


def test_parallel_sessions(shared_server, rdir):
    """Several connections, and several SFTP channels on one connection, transfer at the same time."""
    payloads = {f"p{i}": os.urandom(700_000 + i) for i in range(4)}
    errors = []

    def worker(name, data):
        try:
            with sftp_client(shared_server) as sftp:
                sftp.putfo(io.BytesIO(data), rdir.r(name))
                buf = io.BytesIO()
                sftp.getfo(rdir.r(name), buf)
                assert buf.getvalue() == data
        except BaseException as e:  # noqa: BLE001
            errors.append((name, repr(e)))

    threads = [threading.Thread(target=worker, args=item) for item in payloads.items()]
    for th in threads:
        th.start()
    # two channels on one transport
    t = connect_transport(shared_server)
    try:
        s1 = paramiko.SFTPClient.from_transport(t)
        s2 = paramiko.SFTPClient.from_transport(t)
        s1.putfo(io.BytesIO(b"one"), rdir.r("c1"))
        s2.putfo(io.BytesIO(b"two"), rdir.r("c2"))
        assert s2.open(rdir.r("c1")).read() == b"one"
        assert s1.open(rdir.r("c2")).read() == b"two"
    finally:
        t.close()
    for th in threads:
        th.join(120)
    assert not errors, errors
    for name, data in payloads.items():
        assert (rdir.local / name).read_bytes() == data


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_100mb_upload_download_sha256(shared_server, rdir, tmp_path):
    size = 100 * 1024 * 1024
    src = tmp_path / "big.bin"
    digest = write_random(src, size)
    with sftp_client(shared_server) as sftp:
        t0 = time.monotonic()
        attrs = sftp.put(str(src), rdir.r("big.bin"), confirm=True)
        t_up = time.monotonic() - t0
        assert attrs.st_size == size
        t0 = time.monotonic()
        sftp.get(rdir.r("big.bin"), str(tmp_path / "back.bin"))
        t_down = time.monotonic() - t0
    print(f"100 MB: upload {t_up:.1f}s, download {t_down:.1f}s")
    assert sha256_file(rdir.local / "big.bin") == digest
    assert sha256_file(tmp_path / "back.bin") == digest
    assert upload_temp_files(rdir.local) == []
    os.remove(src)
    os.remove(tmp_path / "back.bin")


# ------------------------------------------------------------------------------------------------
# what is refused


def _client(server):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        server.host, port=server.port, username=server.user, password=server.password,
        look_for_keys=False, allow_agent=False, timeout=15,
    )
    return client


def _read_all(chan, timeout=10.0) -> bytes:
    chan.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = False
        if chan.recv_ready():
            out += chan.recv(65536)
            got = True
        if chan.recv_stderr_ready():
            out += chan.recv_stderr(65536)
            got = True
        if not got:
            if chan.exit_status_ready() or chan.closed or chan.eof_received:
                break
            time.sleep(0.05)
    return out


def _in_thread(fn, timeout: float):
    """Runs fn() in a thread; returns ("ok", value), ("error", exception) or ("hung", None)."""
    box = {}

    def run():
        try:
            box["r"] = ("ok", fn())
        except BaseException as e:  # noqa: BLE001
            box["r"] = ("error", e)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout)
    return box.get("r", ("hung", None))


def test_exec_refused(shared_server, tmp_path):
    marker = tmp_path / "pwned"
    before = len(shared_server.log())
    t = connect_transport(shared_server)
    try:
        chan = t.open_session()
        chan.settimeout(15)
        status, value = _in_thread(lambda: chan.exec_command(f"touch {marker}; echo EXECUTED"), 15)
        assert status != "hung", "the server never answered the exec request"
        out = _read_all(chan)
        text = out.decode("utf-8", "replace")
        assert b"EXECUTED" not in out
        if status == "ok":  # accepted the channel request: must then refuse with the message and a failure status
            assert chan.recv_exit_status() != 0
        else:
            assert isinstance(value, paramiko.SSHException), f"exec failed with {value!r}, not a refusal"
        assert "This server provides SFTP only" in text, f"exec refused without the message: {text!r}"
    finally:
        t.close()
    assert not marker.exists(), "the command ran"
    assert shared_server.wait_for_log(r"hint:.*SFTP only", since=before), shared_server.log()[before:]
    with sftp_client(shared_server) as sftp:
        sftp.listdir("/")


def test_shell_refused(shared_server):
    t = connect_transport(shared_server)
    try:
        chan = t.open_session()
        chan.settimeout(15)
        status, value = _in_thread(chan.invoke_shell, 15)
        assert status != "hung", "the server never answered the shell request"
        if status == "ok":
            with contextlib.suppress(OSError):
                chan.send(b"echo EXECUTED\n")
        out = _read_all(chan)
        assert b"EXECUTED" not in out
        assert b"SFTP only" in out, f"shell was not refused with the message: {out!r}"
    finally:
        t.close()


def test_pty_request_is_answered(shared_server):
    """Interactive clients ask for a pty before the shell (paramiko's invoke_shell, ssh -t): answer it, yes or no."""
    t = connect_transport(shared_server)
    try:
        chan = t.open_session()
        status, value = _in_thread(chan.get_pty, 10)
        assert status != "hung", "the server never answered the pty-req (want_reply=true): clients hang"
    finally:
        t.close()


def test_port_forwarding_refused(shared_server):
    client = _client(shared_server)
    try:
        with pytest.raises(paramiko.ChannelException):
            client.get_transport().open_channel("direct-tcpip", ("127.0.0.1", shared_server.port), ("127.0.0.1", 1))
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------
# robustness


def _raw(server, payload: bytes, read_banner: bool) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        banner = b""
        if read_banner:
            banner = s.recv(256)
        s.sendall(payload)
        try:
            s.settimeout(5)
            while s.recv(4096):
                pass
        except (socket.timeout, ConnectionError):
            pass
        return banner


def test_garbage_does_not_break_server(shared_server):
    banner = _raw(shared_server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", read_banner=True)
    assert banner.startswith(b"SSH-2.0-"), banner
    _raw(shared_server, os.urandom(70_000), read_banner=False)
    # valid banner, then a nonsense binary packet
    _raw(shared_server, b"SSH-2.0-evil\r\n" + struct.pack(">I", 0x7FFFFFF0) + os.urandom(1000), read_banner=True)
    _raw(shared_server, b"SSH-2.0-evil\r\n" + struct.pack(">IB", 12, 4) + b"\0" * 11, read_banner=True)
    # connect and close at once, several times in parallel (from another loopback address: the server
    # counts each against that address's unauthenticated connections until it sees it closed)
    socks = [
        socket.create_connection((shared_server.host, shared_server.port), timeout=10, source_address=("127.0.0.2", 0))
        for _ in range(20)
    ]
    for s in socks:
        s.close()
    assert shared_server.alive()
    with sftp_client(shared_server) as sftp:
        assert sftp.normalize(".") == "/"


def _sftp_channel(t: paramiko.Transport):
    """A raw `sftp` subsystem channel after INIT/VERSION."""
    chan = t.open_session()
    chan.settimeout(5)
    chan.invoke_subsystem("sftp")
    chan.sendall(struct.pack(">IBI", 5, 1, 3))
    (length,) = struct.unpack(">I", _recv_exact(chan, 4))
    assert _recv_exact(chan, length)[0] == 2, "no SSH_FXP_VERSION"
    return chan


def _recv_exact(chan, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = chan.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"channel closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def _closed_within(chan, seconds: float) -> bool:
    """True when the server ends the channel (EOF) within `seconds` without sending anything more."""
    chan.settimeout(seconds)
    try:
        extra = chan.recv(4096)
    except socket.timeout:
        return False
    assert extra == b"", f"the server answered instead of closing: {extra!r}"
    return True


def test_sftp_malformed_request_with_an_id_gets_bad_message_and_the_session_goes_on(shared_server):
    t = connect_transport(shared_server)
    try:
        chan = _sftp_channel(t)
        chan.sendall(struct.pack(">IBI", 9, 3, 77) + b"\0\0\0\xff")  # OPEN, id 77, a name longer than the packet
        (length,) = struct.unpack(">I", _recv_exact(chan, 4))
        reply = _recv_exact(chan, length)
        kind, rid, code = struct.unpack(">BII", reply[:9])
        assert (kind, rid, code) == (101, 77, 5), f"want STATUS id 77 SSH_FX_BAD_MESSAGE, got {reply!r}"
        chan.sendall(struct.pack(">IBI", 10, 16, 78) + struct.pack(">I", 1) + b"/")  # REALPATH "/"
        (length,) = struct.unpack(">I", _recv_exact(chan, 4))
        assert _recv_exact(chan, length)[:5] == struct.pack(">BI", 104, 78), "the session did not go on"
    finally:
        t.close()


@pytest.mark.parametrize("packet", [
    struct.pack(">I", 3) + b"\x11\x00\x00",  # STAT with half a request id
    struct.pack(">I", 0),  # no type
    struct.pack(">I", 0x7FFFFFFF),  # far over the maximum packet length
], ids=["no-id", "empty", "oversized"])
def test_sftp_malformed_packet_without_an_id_closes_that_session_only(shared_server, packet):
    """A packet the server cannot answer (no request id) ends the SFTP session, as OpenSSH's sftp-server does;
    the connection's other channels and the server go on."""
    before = len(shared_server.log())
    t = connect_transport(shared_server)
    try:
        other = _sftp_channel(t)
        chan = _sftp_channel(t)
        chan.sendall(packet)
        assert _closed_within(chan, 5), "the SFTP session went on after a packet without a request id"
        other.sendall(struct.pack(">IBI", 10, 16, 1) + struct.pack(">I", 1) + b"/")
        (length,) = struct.unpack(">I", _recv_exact(other, 4))
        assert _recv_exact(other, length)[:5] == struct.pack(">BI", 104, 1), "the other channel was hurt"
    finally:
        t.close()
    assert shared_server.wait_for_log(r"closing SFTP session", timeout=5, since=before), shared_server.log()[before:]
    assert shared_server.alive()
    with sftp_client(shared_server) as sftp:
        sftp.listdir("/")


def test_sftp_request_before_init_closes_the_session(shared_server):
    t = connect_transport(shared_server)
    try:
        chan = t.open_session()
        chan.invoke_subsystem("sftp")
        chan.sendall(struct.pack(">IBI", 10, 16, 1) + struct.pack(">I", 1) + b"/")
        assert _closed_within(chan, 5), "a request before INIT was served"
    finally:
        t.close()
