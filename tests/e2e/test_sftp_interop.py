"""SFTP clients that work on OpenSSH's sftp-server work on Ferry (issue 10): lftp over sftp://, rclone after an
abandoned upload, a client that pipelines dependent requests, and the symlink round trip."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import struct
import subprocess
from pathlib import Path
from typing import Optional

import paramiko
import pytest

from conftest import (
    assert_same_tree,
    connect_transport,
    die_with_parent,
    disk_entries,
    free_port,
    have,
    kill_process_group,
    make_tree,
    rclone,
    recv_exact,
    sftp_client,
    upload_temp_files,
    wait_until,
    write_random,
)

NEEDS_LFTP = pytest.mark.skipif(not have("lftp"), reason="lftp is not installed (scripts/test --deps-only installs it)")
NEEDS_RCLONE = pytest.mark.skipif(not have("rclone"), reason="rclone is not installed (scripts/test installs it)")


# ------------------------------------------------------------------------------------------------
# lftp over sftp:// (it pipelines requests: `mkdir -p a/b` sends MKDIR a and MKDIR a/b back to back)


def lftp_sftp(server, script: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`lftp -c` over sftp:// as alice with her key (lftp runs `ssh` for the connection), then SCRIPT."""
    home.mkdir(parents=True, exist_ok=True)
    ssh = (
        f"ssh -a -x -F /dev/null -i {server.key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null -o BatchMode=yes "
        "-o LogLevel=ERROR -o ConnectTimeout=15 -o ServerAliveInterval=10"
    )
    full = (
        "set cmd:fail-exit true; set net:max-retries 2; set net:timeout 20; set net:reconnect-interval-base 1; "
        f'set net:reconnect-interval-max 2; set sftp:connect-program "{ssh}"; '
        f"open -u {server.user}, sftp://{server.host}:{server.port}; {script}"
    )
    env = dict(os.environ, HOME=str(home))
    proc = subprocess.run(["lftp", "--norc", "-c", full], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(
            f"lftp (sftp://) exited {proc.returncode} for: {script}\n--- stdout ---\n{proc.stdout}\n"
            f"--- stderr ---\n{proc.stderr}"
        )
    return proc


@NEEDS_LFTP
def test_lftp_sftp_mkdir_p(shared_server, rdir, tmp_path):
    lftp_sftp(shared_server, f"mkdir -p '{rdir.r('a/b/c')}'; mkdir -p '{rdir.r('x/y')}'", tmp_path / "home")
    assert (rdir.local / "a" / "b" / "c").is_dir()
    assert (rdir.local / "x" / "y").is_dir()


@NEEDS_LFTP
def test_lftp_sftp_mirror_both_ways(shared_server, rdir, tmp_path):
    src, back = tmp_path / "src", tmp_path / "back"
    make_tree(src)
    lftp_sftp(shared_server, f"mkdir -p '{rdir.r('up/load')}'; mirror -R '{src}' '{rdir.r('up/load/tree')}'",
              tmp_path / "home")
    assert_same_tree(src, rdir.local / "up" / "load" / "tree")
    assert upload_temp_files(rdir.local) == []
    lftp_sftp(shared_server, f"mirror '{rdir.r('up/load/tree')}' '{back}'", tmp_path / "home")
    assert_same_tree(src, back)
    # changes propagate: delete, modify, add, then mirror -R --delete
    (src / "top.txt").unlink()
    (src / "docs" / "readme.md").write_text("changed, and longer than before\n" * 3)
    (src / "docs" / "new.txt").write_text("new\n")
    lftp_sftp(shared_server, f"mirror -R --delete '{src}' '{rdir.r('up/load/tree')}'", tmp_path / "home")
    assert_same_tree(src, rdir.local / "up" / "load" / "tree")
    assert upload_temp_files(rdir.local) == []


# ------------------------------------------------------------------------------------------------
# rclone: an upload cut at --max-transfer, then the directories it made are removed


def rclone_sftp_conf(server, path: Path) -> Path:
    obscured = subprocess.run(
        ["rclone", "obscure", server.password], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    path.write_text(
        f"[ferry]\ntype = sftp\nhost = {server.host}\nport = {server.port}\nuser = {server.user}\n"
        f"pass = {obscured}\nshell_type = none\nmd5sum_command = none\nsha1sum_command = none\n"
    )
    return path


def cut_tree(base: Path) -> None:
    """Small files (the tests copy them first), and one file far bigger than the --max-transfer limit, alone
    in its own directories."""
    (base / "small").mkdir(parents=True)
    for i in range(3):
        (base / "small" / f"f{i}").write_bytes(os.urandom(10_000 + i))
    (base / "big" / "deep").mkdir(parents=True)
    write_random(base / "big" / "deep" / "huge.bin", 16 * 1024 * 1024)


def assert_cut_tree_cleaned(rdir) -> None:
    dst = rdir.local / "dst"
    assert not (dst / "big").exists(), (
        f"rmdirs left the directories of the cut-off upload: on disk {disk_entries(dst / 'big')}"
    )
    assert upload_temp_files(rdir.local) == []
    assert sorted(p.name for p in (dst / "small").iterdir()) == ["f0", "f1", "f2"]


@NEEDS_RCLONE
def test_rclone_max_transfer_then_rmdirs(shared_server, rdir, tmp_path):
    conf = rclone_sftp_conf(shared_server, tmp_path / "rclone.conf")
    cut_tree(tmp_path / "src")
    remote = f"ferry:{rdir.r('dst')}"
    rclone(conf, "copy", str(tmp_path / "src" / "small"), f"{remote}/small")
    proc = rclone(conf, "copy", "--max-transfer", "4M", "--transfers", "1", str(tmp_path / "src"), remote,
                  check=False)
    assert proc.returncode != 0, "rclone copy was not cut by --max-transfer"
    assert not (rdir.local / "dst" / "big" / "deep" / "huge.bin").exists(), "the cut-off upload was kept"
    rclone(conf, "rmdirs", remote)
    assert_cut_tree_cleaned(rdir)


class RcloneDaemon:
    """`rclone rcd`: one rclone process whose SFTP connections outlive each command (as in rclone mount/serve)."""

    def __init__(self, conf: Path, log: Path):
        self.conf, self.log_path = conf, log
        last = ""
        for _ in range(3):
            self.port = free_port()
            log_file = open(log, "wb")
            self.proc = subprocess.Popen(
                ["rclone", "--config", str(conf), "rcd", "--rc-no-auth", "--rc-addr", f"127.0.0.1:{self.port}",
                 "--retries", "1", "--low-level-retries", "2", "--contimeout", "15s", "--timeout", "60s"],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent,
            )
            log_file.close()  # the child has its own copy
            if wait_until(self._answers, timeout=15, interval=0.2):
                return
            kill_process_group(self.proc)
            last = log.read_text(errors="replace")
        raise AssertionError(f"rclone rcd did not start (3 attempts):\n{last[-3000:]}")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            return False
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        return False

    def rc(self, command: str, timeout: float = 120, **params: str) -> subprocess.CompletedProcess:
        args = [f"{k}={v}" for k, v in params.items()]
        return subprocess.run(
            ["rclone", "rc", "--url", f"http://127.0.0.1:{self.port}/", command, *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )

    def stop(self) -> None:
        kill_process_group(self.proc)


@NEEDS_RCLONE
def test_rclone_abandoned_upload_then_rmdirs_in_the_same_session(shared_server, rdir, tmp_path):
    """rclone stops reading its source at --max-transfer without closing the SFTP handle, removes the file
    by name, and keeps its connection for the next command: the directories must then be removable."""
    conf = rclone_sftp_conf(shared_server, tmp_path / "rclone.conf")
    cut_tree(tmp_path / "src")
    rclone(conf, "copy", str(tmp_path / "src" / "small"), f"ferry:{rdir.r('dst/small')}")
    daemon = RcloneDaemon(conf, tmp_path / "rcd.log")
    try:
        proc = daemon.rc("sync/copy", srcFs=str(tmp_path / "src"), dstFs=f"ferry:{rdir.r('dst')}",
                         _config=json.dumps({"MaxTransfer": 4 * 1024 * 1024, "Transfers": 1}))
        assert proc.returncode != 0 and "max transfer" in (proc.stdout + proc.stderr).lower(), (
            f"rclone copy was not cut by --max-transfer:\n{proc.stdout}\n{proc.stderr}"
        )
        assert not (rdir.local / "dst" / "big" / "deep" / "huge.bin").exists(), "the cut-off upload was kept"
        proc = daemon.rc("operations/rmdirs", fs=f"ferry:{rdir.remote}", remote="dst")
        assert proc.returncode == 0, (
            f"rclone rmdirs failed in the session that abandoned the upload:\n{proc.stdout}\n{proc.stderr}\n"
            f"on disk: {disk_entries(rdir.local)}"
        )
        assert_cut_tree_cleaned(rdir)
    finally:
        daemon.stop()


# ------------------------------------------------------------------------------------------------
# Requests take effect in the order sent: a raw SFTP client that pipelines dependent requests

FXP_INIT, FXP_VERSION, FXP_OPEN, FXP_CLOSE, FXP_WRITE = 1, 2, 3, 4, 6
FXP_MKDIR, FXP_STAT, FXP_RENAME = 14, 17, 18
FXP_STATUS, FXP_HANDLE, FXP_ATTRS = 101, 102, 105
FXF_WRITE, FXF_CREAT, FXF_TRUNC = 0x02, 0x08, 0x10
FX_OK = 0
FX_NAMES = {0: "OK", 1: "EOF", 2: "NO_SUCH_FILE", 3: "PERMISSION_DENIED", 4: "FAILURE", 5: "BAD_MESSAGE",
            8: "OP_UNSUPPORTED"}


def sstr(b: bytes | str) -> bytes:
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def packet(kind: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


class RawSftp:
    """SFTP v3 spoken by hand on an SSH channel, so requests can be sent without waiting for replies."""

    def __init__(self, transport: paramiko.Transport, timeout: float = 30):
        self.chan = transport.open_session()
        self.chan.settimeout(timeout)
        self.chan.invoke_subsystem("sftp")
        self.chan.sendall(packet(FXP_INIT, struct.pack(">I", 3)))
        kind, _ = self.read()
        assert kind == FXP_VERSION, f"expected VERSION, got packet type {kind}"
        self.next_id = 1

    def read(self) -> tuple[int, bytes]:
        (length,) = struct.unpack(">I", recv_exact(self.chan, 4))
        body = recv_exact(self.chan, length)
        return body[0], body[1:]

    def request(self, kind: int, body: bytes) -> tuple[int, bytes]:
        """(id, packet) of one request; the caller sends many at once."""
        rid = self.next_id
        self.next_id += 1
        return rid, packet(kind, struct.pack(">I", rid) + body)

    def replies(self, n: int) -> list[tuple[int, int, bytes]]:
        """The next `n` replies as (kind, id, rest)."""
        out = []
        for _ in range(n):
            kind, body = self.read()
            (rid,) = struct.unpack(">I", body[:4])
            out.append((kind, rid, body[4:]))
        return out

    def close(self) -> None:
        self.chan.close()


def status_text(kind: int, rest: bytes) -> str:
    if kind != FXP_STATUS:
        return f"packet type {kind}"
    (code,) = struct.unpack(">I", rest[:4])
    (mlen,) = struct.unpack(">I", rest[4:8])
    return f"{FX_NAMES.get(code, code)} {rest[8:8 + mlen].decode(errors='replace')!r}"


def is_ok(kind: int, rest: bytes) -> bool:
    return kind == FXP_STATUS and struct.unpack(">I", rest[:4])[0] == FX_OK


def attrs_size(rest: bytes) -> Optional[int]:
    (flags,) = struct.unpack(">I", rest[:4])
    return struct.unpack(">Q", rest[4:12])[0] if flags & 1 else None


NO_ATTRS = struct.pack(">I", 0)


def pipelined_sequence(raw: RawSftp, base: str, data: bytes) -> list[str]:
    """MKDIR base, MKDIR base/b, OPEN base/b/f sent at once; then WRITE, CLOSE, RENAME f -> g, STAT g sent at
    once (the WRITE needs the handle the OPEN returns). Returns what went wrong (empty: all as OpenSSH)."""
    problems: list[str] = []
    first = [
        ("MKDIR a", raw.request(FXP_MKDIR, sstr(base) + NO_ATTRS)),
        ("MKDIR a/b", raw.request(FXP_MKDIR, sstr(f"{base}/b") + NO_ATTRS)),
        ("OPEN a/b/f", raw.request(FXP_OPEN, sstr(f"{base}/b/f") + struct.pack(">I", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
                                   + NO_ATTRS)),
    ]
    raw.chan.sendall(b"".join(p for _, (_, p) in first))
    got = raw.replies(len(first))
    ids = [rid for _, (rid, _) in first]
    if [r[1] for r in got] != ids:
        problems.append(f"replies came in the order {[r[1] for r in got]}, requests were sent as {ids}")
    by_id = {rid: (kind, rest) for kind, rid, rest in got}
    for name, (rid, _) in first[:2]:
        kind, rest = by_id[rid]
        if not is_ok(kind, rest):
            problems.append(f"{name}: {status_text(kind, rest)}")
    kind, rest = by_id[first[2][1][0]]
    if kind != FXP_HANDLE:
        problems.append(f"OPEN a/b/f: {status_text(kind, rest)}")
        return problems
    (hlen,) = struct.unpack(">I", rest[:4])
    handle = rest[4 : 4 + hlen]

    second = [
        ("WRITE", raw.request(FXP_WRITE, sstr(handle) + struct.pack(">Q", 0) + sstr(data))),
        ("CLOSE", raw.request(FXP_CLOSE, sstr(handle))),
        ("RENAME a/b/f a/b/g", raw.request(FXP_RENAME, sstr(f"{base}/b/f") + sstr(f"{base}/b/g"))),
        ("STAT a/b/g", raw.request(FXP_STAT, sstr(f"{base}/b/g"))),
    ]
    raw.chan.sendall(b"".join(p for _, (_, p) in second))
    got = raw.replies(len(second))
    ids = [rid for _, (rid, _) in second]
    if [r[1] for r in got] != ids:
        problems.append(f"replies came in the order {[r[1] for r in got]}, requests were sent as {ids}")
    by_id = {rid: (kind, rest) for kind, rid, rest in got}
    for name, (rid, _) in second[:3]:
        kind, rest = by_id[rid]
        if not is_ok(kind, rest):
            problems.append(f"{name}: {status_text(kind, rest)}")
    kind, rest = by_id[second[3][1][0]]
    if kind != FXP_ATTRS:
        problems.append(f"STAT a/b/g: {status_text(kind, rest)}")
    elif attrs_size(rest) != len(data):
        problems.append(f"STAT a/b/g: size {attrs_size(rest)}, {len(data)} bytes were written")
    return problems


def test_pipelined_dependent_requests_take_effect_in_order(shared_server, rdir):
    rounds = 40
    data = os.urandom(96 * 1024)
    failed: dict[int, list[str]] = {}
    t = connect_transport(shared_server)
    try:
        raw = RawSftp(t)
        for i in range(rounds):
            problems = pipelined_sequence(raw, rdir.r(f"p{i:02}"), data)
            if problems:
                failed[i] = problems
        raw.close()
    finally:
        t.close()
    assert not failed, (
        f"{len(failed)} of {rounds} pipelined sequences did not behave as if run one after the other; "
        f"first ones: {dict(list(failed.items())[:3])}"
    )
    for i in range(rounds):
        d = rdir.local / f"p{i:02}" / "b"
        assert sorted(os.listdir(d)) == ["g"], f"p{i:02}/b holds {os.listdir(d)}"
        assert (d / "g").read_bytes() == data


# ------------------------------------------------------------------------------------------------
# Symlinks: READLINK returns the target as given; following it stays inside the user's root


def test_symlink_readlink_round_trip(shared_server, rdir):
    content = b"the original\n" * 7
    (rdir.local / "abs" / "dir").mkdir(parents=True)
    (rdir.local / "abs" / "dir" / "original.txt").write_bytes(content)
    (rdir.local / "sub").mkdir()
    absolute = rdir.r("abs/dir/original.txt")  # e.g. /test_x-1a2b3c/abs/dir/original.txt
    targets = {
        "link-abs": absolute,
        "link-rel": "abs/dir/original.txt",
        "sub/link-up": "../abs/dir/original.txt",
        "link-dir-abs": rdir.r("abs/dir"),
        "link-dangling-abs": "/no/such/place.txt",
        "link-dot": "./abs/dir/original.txt",
    }
    with sftp_client(shared_server) as sftp:
        for link, target in targets.items():
            sftp.symlink(target, rdir.r(link))
        got = {link: sftp.readlink(rdir.r(link)) for link in targets}
        assert got == targets, "READLINK did not return the targets as SYMLINK was given them"
        for link in ("link-abs", "link-rel", "sub/link-up", "link-dot"):
            assert stat.S_ISLNK(sftp.lstat(rdir.r(link)).st_mode), link
            assert sftp.stat(rdir.r(link)).st_size == len(content), link
            with sftp.open(rdir.r(link)) as f:
                assert f.read() == content, link
        assert sftp.listdir(rdir.r("link-dir-abs")) == ["original.txt"]
        with pytest.raises(FileNotFoundError):
            sftp.stat(rdir.r("link-dangling-abs"))


def test_absolute_symlink_is_followed_inside_the_root(server):
    """The user's root is `/` for an absolute target, as in a chroot: /etc/passwd is the user's, not the host's."""
    (server.root / "abs" / "dir").mkdir(parents=True)
    (server.root / "abs" / "dir" / "original.txt").write_bytes(b"inside the root\n")
    with sftp_client(server) as sftp:
        sftp.symlink("/abs/dir/original.txt", "link")
        sftp.symlink("/etc/passwd", "passwd-link")
        assert sftp.readlink("link") == "/abs/dir/original.txt"
        assert sftp.readlink("passwd-link") == "/etc/passwd"
        assert sftp.open("link").read() == b"inside the root\n"
        assert sftp.stat("link").st_size == len(b"inside the root\n")
        with pytest.raises(FileNotFoundError):
            sftp.open("passwd-link").read()
