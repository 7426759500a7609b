"""sshfs (FUSE over SFTP) against Ferry (issue 10): everyday shell commands in the mount give byte-identical
files, seen through the mount and on the server's disk.

sshfs creates a file with OPEN(CREAT|TRUNC) and then stats and re-opens the path it has just created, as any
POSIX-style client does; the file must exist under its name from that OPEN on.
Every command runs in its own process group with a timeout, so a stuck FUSE request cannot hang the suite;
the mount is always taken down (fusermount3 -u, lazily if busy, then the sshfs process is killed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (
    assert_same_tree,
    die_with_parent,
    disk_entries,
    kill_process_group,
    make_tree,
    sha256_file,
    upload_temp_files,
    wait_until,
    write_random,
)

pytestmark = [
    pytest.mark.skipif(not shutil.which("sshfs") or not shutil.which("fusermount3"),
                       reason="sshfs/fusermount3 not installed (scripts/test installs sshfs and fuse3)"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse on this machine"),
]

MOUNT_TIMEOUT = 30.0  # seconds for sshfs to connect and mount
CMD_TIMEOUT = 60.0  # seconds for one shell command in the mount


def mounted(mnt: Path) -> bool:
    """Whether `mnt` is a mount point, from /proc/self/mountinfo (never touches the FUSE file system)."""
    target = str(mnt)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            if point == target:
                return True
    return False


class SshfsMount:
    """`sshfs -f` of a directory of the user's root, with the user's key, until `unmount()`."""

    def __init__(self, server, remote: str, mnt: Path, log: Path):
        self.mnt, self.log_path = mnt.resolve(), log
        mnt.mkdir(parents=True, exist_ok=True)
        ssh_opts = ",".join([
            f"IdentityFile={server.key}", "IdentitiesOnly=yes", "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null", "GlobalKnownHostsFile=/dev/null", "BatchMode=yes", "LogLevel=ERROR",
            "ConnectTimeout=15", "ServerAliveInterval=5", "ServerAliveCountMax=3",
            "dir_cache=no",  # every lookup and listing goes to the server
        ])
        cmd = ["sshfs", "-f", f"{server.user}@{server.host}:{remote}", str(self.mnt), "-p", str(server.port),
               "-F", "/dev/null", "-o", ssh_opts]
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent)
        ok = wait_until(lambda: mounted(self.mnt) or self.proc.poll() is not None, timeout=MOUNT_TIMEOUT)
        if not (ok and mounted(self.mnt) and self.proc.poll() is None):
            self.unmount()
            if re.search(r"fuse: device not found|fusermount3?: .*(Operation not permitted|Permission denied)",
                         self.log()):
                pytest.skip(f"FUSE mounts are not allowed here: {self.log().strip()}")
            raise AssertionError(f"sshfs did not mount within {MOUNT_TIMEOUT:.0f}s (exit {self.proc.poll()}): "
                                 f"{' '.join(cmd)}\n{self.log()}")
        self.sh("ls -a >/dev/null", timeout=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sh(self, script: str, timeout: float = CMD_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
        """Runs `sh -ec SCRIPT` in the mount; the whole process group is killed on timeout."""
        proc = subprocess.Popen(["sh", "-ec", script], cwd=self.mnt, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process_group(proc)
            raise AssertionError(f"`{script}` in the sshfs mount did not finish within {timeout:.0f}s")
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"`{script}` in the sshfs mount exited {proc.returncode}\n--- stdout ---\n"
                f"{out.decode(errors='replace')}\n--- stderr ---\n{err.decode(errors='replace')}"
            )
        return done

    def unmount(self) -> None:
        if mounted(self.mnt):
            r = subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True, timeout=15)
            if r.returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True, timeout=15)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            kill_process_group(self.proc)
        self._log.close()


@pytest.fixture
def mount(shared_server, rdir, tmp_path):
    """The test's directory of alice's root, mounted with sshfs at tmp_path/mnt."""
    m = SshfsMount(shared_server, rdir.remote, tmp_path / "mnt", tmp_path / "sshfs.log")
    try:
        yield m
    finally:
        m.unmount()
    assert not mounted(m.mnt)


def settled(check, timeout: float = 10.0) -> None:
    """Runs `check` (it asserts) until it passes or `timeout` ends, then once more to raise its error.

    sshfs sends CLOSE when the kernel releases the file, which may come just after the command returned, so
    what is on the server's disk is checked with a little patience.
    """

    def passes() -> bool:
        try:
            check()
            return True
        except (AssertionError, FileNotFoundError):
            return False

    wait_until(passes, timeout)
    check()


def disk_is(path: Path, expected: bytes) -> None:
    def check():
        got = path.read_bytes()
        assert got == expected, f"{path.name} on the server's disk: {got[:60]!r}... ({len(got)} bytes), " \
                                f"expected {expected[:60]!r}... ({len(expected)} bytes)"

    settled(check)


def disk_digest_is(path: Path, digest: str) -> None:
    def check():
        assert sha256_file(path) == digest, f"{path.name} on the server's disk differs ({path.stat().st_size} bytes)"

    settled(check)


def disk_entries_are(directory: Path, expected: list[str]) -> None:
    got = disk_entries(directory)
    assert got == expected, f"on the server's disk: {got}"


def no_temp_files_left(rdir) -> None:
    assert wait_until(lambda: upload_temp_files(rdir.local) == [], timeout=10), (
        f"temporary upload files left on disk: {upload_temp_files(rdir.local)}"
    )


def test_cp_and_cat(mount, rdir, tmp_path):
    src = tmp_path / "src.bin"
    digest = write_random(src, 3 * 1024 * 1024 + 17)
    mount.sh(f"cp '{src}' copy.bin")
    disk_digest_is(rdir.local / "copy.bin", digest)
    mount.sh(f"cat copy.bin > '{tmp_path / 'back.bin'}'")
    assert sha256_file(tmp_path / "back.bin") == digest
    mount.sh(f"cmp copy.bin '{src}'")
    # cp over an existing, longer file, then over it again with a longer one
    (rdir.local / "old.bin").write_bytes(b"previous content\n" * 400_000)
    small = os.urandom(100_001)
    (tmp_path / "small.bin").write_bytes(small)
    mount.sh(f"cp '{tmp_path / 'small.bin'}' old.bin")
    disk_is(rdir.local / "old.bin", small)
    mount.sh(f"cp '{src}' old.bin && cmp old.bin '{src}'")
    disk_digest_is(rdir.local / "old.bin", digest)
    no_temp_files_left(rdir)


def test_echo_redirect_and_append(mount, rdir):
    mount.sh("echo hello > b.txt; echo world >> b.txt; printf 'no newline' >> b.txt")
    expected = b"hello\nworld\nno newline"
    disk_is(rdir.local / "b.txt", expected)
    assert mount.sh("cat b.txt").stdout == expected
    # `>` onto an existing file truncates it
    (rdir.local / "long.txt").write_bytes(b"a much longer previous version\n" * 100)
    mount.sh("echo short > long.txt")
    disk_is(rdir.local / "long.txt", b"short\n")
    assert mount.sh("cat long.txt").stdout == b"short\n"
    assert mount.sh("ls").stdout.split() == [b"b.txt", b"long.txt"]
    no_temp_files_left(rdir)


def test_mkdir_touch_truncate_mv_rm(mount, rdir):
    mount.sh(
        "mkdir -p a/b/c\n"
        "touch a/b/c/empty\n"
        "truncate -s 12345 a/b/c/sparse\n"
        "printf 0123456789 > a/b/c/cut && truncate -s 4 a/b/c/cut\n"
        "mv a/b/c/cut a/moved\n"
        "touch -d '2001-02-03 04:05:06 UTC' a/moved\n"
        "rm a/b/c/empty\n"
        "mkdir -p a/b/c/d/e && mv a/b/c/d x\n"
    )
    local = rdir.local
    assert (local / "a" / "b" / "c").is_dir() and (local / "x" / "e").is_dir()
    disk_is(local / "a" / "b" / "c" / "sparse", b"\0" * 12345)
    disk_is(local / "a" / "moved", b"0123")
    assert not (local / "a" / "b" / "c" / "cut").exists() and not (local / "a" / "b" / "c" / "empty").exists()
    assert int((local / "a" / "moved").stat().st_mtime) == 981173106  # 2001-02-03T04:05:06Z
    assert mount.sh("stat -c %s a/b/c/sparse a/moved").stdout.split() == [b"12345", b"4"]
    # a directory tree made in the mount is removed by rm -r, down to the last directory
    mount.sh("touch x/e/f && echo data > x/g && rm -r x a")
    settled(lambda: disk_entries_are(local, []))
    no_temp_files_left(rdir)


def test_symlinks(mount, rdir):
    (rdir.local / "sub").mkdir()
    (rdir.local / "sub" / "target.txt").write_bytes(b"link target\n")
    mount.sh("ln -s sub/target.txt link && ln -s target.txt sub/link2")
    assert os.readlink(rdir.local / "link") == "sub/target.txt"
    assert os.readlink(rdir.local / "sub" / "link2") == "target.txt"
    assert mount.sh("readlink link").stdout == b"sub/target.txt\n"
    assert mount.sh("cat link sub/link2").stdout == b"link target\n" * 2
    # writing through a link writes the target
    mount.sh("echo changed > link")
    disk_is(rdir.local / "sub" / "target.txt", b"changed\n")
    assert os.path.islink(rdir.local / "link")
    no_temp_files_left(rdir)


def test_rsync_archive_into_the_mount(mount, rdir, tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    # rsync creates the link before top.txt and then sets the link's times, which sshfs sends as a SETSTAT
    # that follows the link. An old mtime makes rsync always do that (a link made in the same second as
    # the source's has equal times, and rsync skipped it: the test failed only when a second ticked over).
    os.symlink("top.txt", src / "top-link")
    os.utime(src / "top-link", (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    mount.sh(f"rsync -a '{src}/' dst/", timeout=120)
    dst = rdir.local / "dst"
    settled(lambda: assert_same_tree(src, dst))
    assert os.readlink(dst / "top-link") == "top.txt"
    assert os.lstat(dst / "top-link").st_mtime == 1_600_000_000, "rsync -a did not keep the link's own mtime"
    for p in src.rglob("*"):
        if p.is_file() and not p.is_symlink():
            q = dst / p.relative_to(src)
            assert abs(q.stat().st_mtime - p.stat().st_mtime) < 1.01, f"rsync -a did not keep the mtime of {p}"
            assert (q.stat().st_mode & 0o777) == (p.stat().st_mode & 0o777), f"rsync -a did not keep the mode of {p}"
    mount.sh(f"diff -r '{src}' dst")
    # again after changes: rsync writes each changed file to a temporary name and renames it over the old one
    (src / "n05.dat").unlink()
    (src / "docs" / "readme.md").write_text("changed, and longer than before\n" * 3)
    (src / "docs" / "new.txt").write_text("new\n")
    time.sleep(1.1)  # a different mtime second, so rsync's quick check sees the change
    (src / "n03.dat").write_bytes(os.urandom(5000))
    mount.sh(f"rsync -a --delete '{src}/' dst/", timeout=120)
    settled(lambda: assert_same_tree(src, dst))
    mount.sh(f"diff -r '{src}' dst")
    no_temp_files_left(rdir)
