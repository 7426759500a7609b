"""Fixtures and helpers for Ferry's end-to-end tests.

Every test talks to a real `ferry serve` process over loopback, with real clients: OpenSSH's `sftp`,
paramiko, curl (libssh2) and rclone (Go's x/crypto/ssh).

The binary is `target/release/ferry` at the repository root, or `$FERRY_BIN`.
"""

from __future__ import annotations

import base64
import contextlib
import filecmp
import hashlib
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import paramiko
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0  # seconds for `serve` to print `ready`
STOP_TIMEOUT = 15.0  # seconds for `serve` to exit after SIGTERM
CLI_TIMEOUT = 60.0  # seconds for one `ferry user ...` command

LISTENING_RE = re.compile(r"^listening (\S+) on (\S+):(\d+)\s*$")
HOST_KEY_RE = re.compile(r"^host key (\S+) (SHA256:[A-Za-z0-9+/=]+)\s*$")
DEMO_PASSWORD_RE = re.compile(r"^demo password: (\S+)\s*$")

# Servers that are running in this worker, so a failing test can show their logs.
_LIVE_SERVERS: list["FerryServer"] = []


# --------------------------------------------------------------------------------------------------
# The binary and its CLI


def ferry_path() -> Path:
    return Path(os.environ.get("FERRY_BIN") or REPO_ROOT / "target" / "release" / "ferry")


@pytest.fixture(scope="session")
def ferry() -> Path:
    """Path to the ferry binary; fails every test that needs it when it is missing."""
    path = ferry_path()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"ferry binary not found or not executable at {path}: build it with "
            "`cargo build --release` at the repository root (or set FERRY_BIN)",
            pytrace=False,
        )
    return path


def run_ferry(
    ferry: Path,
    data_dir: Optional[Path],
    *args: str,
    input: Optional[str] = None,
    check: bool = True,
    timeout: float = CLI_TIMEOUT,
    env: Optional[dict] = None,
) -> subprocess.CompletedProcess:
    """Runs `ferry [--data-dir D] ARGS...` and returns the completed process (text mode)."""
    cmd = [str(ferry)]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    cmd += [str(a) for a in args]
    full_env = clean_env()
    if env:
        full_env.update(env)
    proc = subprocess.run(
        cmd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`{' '.join(cmd)}` exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


def clean_env() -> dict:
    """The environment for ferry processes: without FERRY_DATA_DIR or FERRY_CONFIG, so the arguments are what count."""
    env = dict(os.environ)
    env.pop("FERRY_DATA_DIR", None)
    env.pop("FERRY_CONFIG", None)
    env.setdefault("RUST_BACKTRACE", "1")
    return env


def add_user(
    ferry: Path,
    data_dir: Path,
    name: str,
    password: Optional[str] = None,
    public_keys: Sequence[Path] = (),
    home: Optional[Path] = None,
) -> subprocess.CompletedProcess:
    args = ["user", "add", name]
    if password is not None:
        args.append("--password-stdin")
    for key in public_keys:
        args += ["--public-key", str(key)]
    if home is not None:
        args += ["--home", str(home)]
    return run_ferry(ferry, data_dir, *args, input=(password + "\n") if password is not None else None)


def list_users(ferry: Path, data_dir: Path) -> list[str]:
    out = run_ferry(ferry, data_dir, "user", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def new_password() -> str:
    return "pw-" + secrets.token_urlsafe(18)


def make_keypair(directory: Path, name: str = "id_ed25519", key_type: str = "ed25519") -> Path:
    """Generates an unencrypted OpenSSH key pair; returns the private key path (public is `<path>.pub`)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    cmd = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", f"{name}@ferry-e2e", "-f", str(path)]
    if key_type == "rsa":
        cmd[4:4] = ["-b", "2048"]
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    return path


def pub(key: Path) -> Path:
    return Path(str(key) + ".pub")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# --------------------------------------------------------------------------------------------------
# The server process


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies (even a crashed xdist worker)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, Linux only
        pass


class FerryServer:
    """One `ferry serve` process. Stdout is read by a thread; stderr goes to a log file."""

    def __init__(
        self,
        ferry: Path,
        data_dir: Path,
        log_path: Path,
        listen: Sequence[str] = ("sftp=127.0.0.1:0",),
        extra_args: Sequence[str] = (),
        env: Optional[dict] = None,
    ):
        self.ferry = ferry
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.listen = list(listen)
        self.extra_args = list(extra_args)
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self._stdout: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._eof = threading.Event()
        self.listeners: dict[str, tuple[str, int]] = {}
        self.host_keys: list[tuple[str, str]] = []  # (algorithm, SHA256:...)
        self.demo_password: Optional[str] = None
        # Filled in by the fixtures that create a user.
        self.user: str = ""
        self.password: str = ""
        self.key: Optional[Path] = None
        self.root: Optional[Path] = None

    # -- lifecycle

    def start(self, ready_timeout: float = READY_TIMEOUT) -> "FerryServer":
        cmd = [str(self.ferry), "--data-dir", str(self.data_dir), "serve"]
        for spec in self.listen:
            cmd += ["--listen", spec]
        cmd += self.extra_args
        env = clean_env()
        if self.env:
            env.update(self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.cmd = cmd
        threading.Thread(target=self._read_stdout, name="ferry-stdout", daemon=True).start()
        _LIVE_SERVERS.append(self)
        ok = self._ready.wait(ready_timeout) and not self._eof.is_set()
        if not ok:
            code = self.proc.poll()
            if code is None:
                self._kill()
            raise AssertionError(
                f"`{' '.join(cmd)}` did not print `ready` within {ready_timeout:.0f}s "
                f"(exit code {self.proc.returncode})\n--- stdout ---\n{self.stdout()}\n"
                f"--- stderr ---\n{self.log()}"
            )
        if "sftp" in [s.split("=", 1)[0] for s in self.listen] and "sftp" not in self.listeners:
            raise AssertionError(
                f"serve printed `ready` but no `listening sftp on HOST:PORT` line\n"
                f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.log()}"
            )
        return self

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._lock:
                self._stdout.append(line)
            if m := LISTENING_RE.match(line):
                self.listeners[m.group(1)] = (m.group(2), int(m.group(3)))
            elif m := HOST_KEY_RE.match(line):
                self.host_keys.append((m.group(1), m.group(2)))
            elif m := DEMO_PASSWORD_RE.match(line):
                self.demo_password = m.group(1)
            elif line.strip() == "ready":
                self._ready.set()
        self._eof.set()
        self._ready.set()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait; returns the exit code. Kills it (and raises) when it does not exit in time."""
        if self in _LIVE_SERVERS:
            _LIVE_SERVERS.remove(self)
        assert self.proc is not None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._kill()
                    raise AssertionError(
                        f"ferry serve did not exit within {timeout:.0f}s of SIGTERM\n"
                        f"--- stderr ---\n{self.log()[-8000:]}"
                    )
            return self.proc.returncode
        finally:
            self._eof.wait(5)
            with contextlib.suppress(Exception):
                self._log_file.close()

    def _kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(10)

    # -- observation

    def stdout(self) -> str:
        with self._lock:
            return "\n".join(self._stdout)

    def log(self) -> str:
        """Everything the server wrote to stderr so far."""
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text("utf-8", "replace")
        return ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0, since: int = 0, flags=re.I) -> Optional[str]:
        """Waits until a log line (after byte offset `since`) matches `pattern`; returns it or None."""
        rx = re.compile(pattern, flags)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log()[since:].splitlines():
                if rx.search(line):
                    return line
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def host(self) -> str:
        return self.listeners["sftp"][0]

    @property
    def port(self) -> int:
        return self.listeners["sftp"][1]

    def __repr__(self) -> str:
        return f"<FerryServer {self.data_dir} {self.listeners}>"


def start_alice_server(ferry: Path, base: Path, **server_kw) -> FerryServer:
    """Data dir with user alice (random password + ed25519 key), then `serve` on an ephemeral port."""
    data_dir = base / "data"
    keys = base / "keys"
    key = make_keypair(keys)
    password = new_password()
    data_dir.mkdir(parents=True)
    add_user(ferry, data_dir, "alice", password=password, public_keys=[pub(key)])
    srv = FerryServer(ferry, data_dir, base / "serve.stderr.log", **server_kw)
    srv.user, srv.password, srv.key = "alice", password, key
    srv.root = data_dir / "files" / "alice"
    srv.start()
    return srv


def stop_and_check(srv: FerryServer) -> None:
    code = srv.stop()
    assert code == 0, f"ferry serve exited {code} after SIGTERM\n--- stderr ---\n{srv.log()[-8000:]}"


@pytest.fixture
def server(ferry: Path, tmp_path: Path) -> Iterator[FerryServer]:
    """A fresh server with user alice, for this test alone."""
    srv = start_alice_server(ferry, tmp_path / "srv")
    yield srv
    stop_and_check(srv)


@pytest.fixture(scope="module")
def shared_server(ferry: Path, tmp_path_factory) -> Iterator[FerryServer]:
    """One server with user alice for a whole module; tests use their own subdirectory (`rdir`)."""
    srv = start_alice_server(ferry, tmp_path_factory.mktemp("shared"))
    yield srv
    stop_and_check(srv)


class RemoteDir:
    """A directory of the user's root reserved for one test: `remote` is its SFTP path, `local` the disk path."""

    def __init__(self, server: FerryServer, name: str):
        assert server.root is not None
        self.server = server
        self.name = name
        self.remote = "/" + name
        self.local = server.root / name
        self.local.mkdir(parents=True)

    def r(self, *parts: str) -> str:
        return "/".join([self.remote, *parts])


@pytest.fixture
def rdir(shared_server: FerryServer, request) -> RemoteDir:
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:40]
    return RemoteDir(shared_server, f"{safe}-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def server_factory(ferry: Path, tmp_path: Path):
    """Starts extra servers on demand (`factory(data_dir, **kw)`); all are stopped (exit 0 checked) at the end."""
    started: list[FerryServer] = []

    def factory(data_dir: Path, listen: Sequence[str] = ("sftp=127.0.0.1:0",), **kw) -> FerryServer:
        n = len(started)
        srv = FerryServer(ferry, data_dir, tmp_path / f"serve-{n}.stderr.log", listen=listen, **kw)
        started.append(srv)
        return srv.start()

    yield factory
    errors = []
    for srv in started:
        if srv.proc is None:
            continue
        if srv.proc.poll() is not None and srv not in _LIVE_SERVERS:
            continue  # already stopped and checked by the test
        try:
            code = srv.stop()
            if code != 0:
                errors.append(f"server {srv.data_dir} exited {code} after SIGTERM\n{srv.log()[-4000:]}")
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in list(_LIVE_SERVERS):
            log = srv.log()
            if len(log) > 12000:
                log = "[...]\n" + log[-12000:]
            rep.sections.append((f"ferry serve stderr ({srv.data_dir})", log))


# --------------------------------------------------------------------------------------------------
# OpenSSH sftp


def ssh_options(server: FerryServer, key: Optional[Path] = None) -> list[str]:
    opts = [
        "-F", "/dev/null",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
        "-o", "ConnectTimeout=15",
        "-o", "ServerAliveInterval=10",
    ]
    key = key or server.key
    if key is not None:
        opts += ["-o", "IdentitiesOnly=yes", "-i", str(key)]
    return opts


def run_sftp(
    server: FerryServer,
    commands: Iterable[str] | str,
    *,
    extra: Sequence[str] = (),
    cwd: Optional[Path] = None,
    check: bool = True,
    timeout: float = 120,
    user: Optional[str] = None,
    key: Optional[Path] = None,
) -> subprocess.CompletedProcess:
    """Runs OpenSSH `sftp -b BATCH` with key auth. `sftp -b` stops at the first failing command."""
    if isinstance(commands, str):
        commands = [commands]
    batch = "\n".join(commands) + "\n"
    cmd = [
        "sftp", *extra, "-b", "-", "-P", str(server.port),
        *ssh_options(server, key),
        "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
        f"{user or server.user}@{server.host}",
    ]
    proc = subprocess.run(cmd, input=batch, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"sftp exited {proc.returncode} for batch:\n{batch}--- stdout ---\n{proc.stdout}\n"
            f"--- stderr ---\n{proc.stderr}"
        )
    return proc


# --------------------------------------------------------------------------------------------------
# paramiko


def connect_transport(
    server: FerryServer,
    *,
    user: Optional[str] = None,
    password: Optional[str] = None,
    key: Optional[Path] = None,
    timeout: float = 15,
    port: Optional[int] = None,
) -> paramiko.Transport:
    """An authenticated paramiko Transport. Password auth unless `key` is given."""
    sock = socket.create_connection((server.host, port or server.port), timeout=timeout)
    t = paramiko.Transport(sock)
    t.banner_timeout = timeout
    t.auth_timeout = timeout
    try:
        if key is not None:
            t.connect(username=user or server.user, pkey=paramiko.PKey.from_path(str(key)))
        else:
            t.connect(username=user or server.user, password=password if password is not None else server.password)
    except BaseException:
        t.close()
        raise
    return t


@contextlib.contextmanager
def sftp_client(server: FerryServer, **kw) -> Iterator[paramiko.SFTPClient]:
    t = connect_transport(server, **kw)
    try:
        sftp = paramiko.SFTPClient.from_transport(t)
        assert sftp is not None
        sftp.get_channel().settimeout(120)
        try:
            yield sftp
        finally:
            sftp.close()
    finally:
        t.close()


def can_login(server: FerryServer, user: str, password: Optional[str] = None, key: Optional[Path] = None) -> bool:
    """True when the login succeeds and an SFTP session works; False on an authentication failure."""
    try:
        with sftp_client(server, user=user, password=password, key=key) as sftp:
            sftp.listdir("/")
        return True
    except paramiko.AuthenticationException:
        return False


def recv_exact(chan, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = chan.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"channel closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def sftp_version_extensions(transport: paramiko.Transport) -> tuple[int, dict[str, bytes]]:
    """Opens a raw `sftp` subsystem channel, sends INIT v3 and parses the server's VERSION extensions."""
    chan = transport.open_session()
    chan.settimeout(15)
    try:
        chan.invoke_subsystem("sftp")
        chan.sendall(struct.pack(">IBI", 5, 1, 3))  # SSH_FXP_INIT, version 3
        (length,) = struct.unpack(">I", recv_exact(chan, 4))
        body = recv_exact(chan, length)
        assert body[0] == 2, f"expected SSH_FXP_VERSION, got packet type {body[0]}"
        (version,) = struct.unpack(">I", body[1:5])
        exts: dict[str, bytes] = {}
        pos = 5
        while pos < len(body):
            (nlen,) = struct.unpack(">I", body[pos : pos + 4])
            name = body[pos + 4 : pos + 4 + nlen].decode()
            pos += 4 + nlen
            (dlen,) = struct.unpack(">I", body[pos : pos + 4])
            exts[name] = body[pos + 4 : pos + 4 + dlen]
            pos += 4 + dlen
        return version, exts
    finally:
        chan.close()


# --------------------------------------------------------------------------------------------------
# files


def write_random(path: Path, size: int, chunk: int = 1 << 20) -> str:
    """Writes `size` random bytes to `path`; returns their SHA-256 hex digest."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            data = os.urandom(min(chunk, left))
            h.update(data)
            f.write(data)
            left -= len(data)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def upload_temp_files(directory: Path) -> list[str]:
    """Names of Ferry's temporary upload files under `directory` (recursively)."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob(".ferry-upload*"))


def rclone(conf: Path, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    """rclone with this suite's retry and timeout settings; raises with its output when it fails and `check`."""
    cmd = ["rclone", "--config", str(conf), "--retries", "1", "--low-level-retries", "2",
           "--contimeout", "15s", "--timeout", "60s", *args]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"`{' '.join(cmd)}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_tree(base: Path) -> None:
    """A small tree with nesting, an empty file, spaces and non-ASCII in names, and a 2 MB file."""
    (base / "docs" / "deep" / "er").mkdir(parents=True)
    (base / "with space").mkdir()
    (base / "top.txt").write_text("top level\n")
    (base / "docs" / "readme.md").write_text("# readme\n" * 50)
    (base / "docs" / "deep" / "data.bin").write_bytes(os.urandom(2_000_003))
    (base / "docs" / "deep" / "er" / "tiny").write_bytes(b"t")
    (base / "docs" / "deep" / "er" / "zero").write_bytes(b"")
    (base / "with space" / "x y z.txt").write_text("spaces in the name\n")
    (base / "ünïcødé.txt").write_text("utf-8 name\n")
    for i in range(15):
        (base / f"n{i:02}.dat").write_bytes(os.urandom(1000 * i + 1))


def tree_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def assert_same_tree(a: Path, b: Path) -> None:
    assert tree_files(a) == tree_files(b), f"{a} and {b} hold different files"
    for rel in tree_files(a):
        assert filecmp.cmp(a / rel, b / rel, shallow=False), f"{rel} differs"


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None


# --------------------------------------------------------------------------------------------------
# FTPS servers (explicit `ftps`, implicit `ftps-implicit`, plain `ftp`); client helpers are in ftps_helpers.py

TLS_FINGERPRINT_RE = re.compile(r"^tls certificate SHA256 ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31})(?:\s.*)?$", re.M)
FTPS_LISTEN = ("ftps=127.0.0.1:0", "ftps-implicit=127.0.0.1:0", "sftp=127.0.0.1:0")
PASSIVE_BLOCK = 50  # ports per server
_passive_counter = itertools.count()


def passive_ports(slot: Optional[int] = None) -> tuple[int, int]:
    """A passive port range of 50 ports that no other xdist worker uses: 40000 + 200*worker + 50*slot.

    Slot 0 is the module-wide shared FTPS server's; servers of single tests rotate over slots 1-3.
    `FERRY_E2E_PASSIVE_BASE` moves the whole block (default 40000).
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    m = re.search(r"(\d+)$", worker)
    w = int(m.group(1)) if m else 0
    base = int(os.environ.get("FERRY_E2E_PASSIVE_BASE", "40000")) + 200 * w
    if slot is None:
        slot = 1 + next(_passive_counter) % 3
    lo = base + PASSIVE_BLOCK * slot
    return lo, lo + PASSIVE_BLOCK - 1


def check_ftps_started(
    srv: FerryServer, passive: Optional[tuple[int, int]] = None, expect: Sequence[str] = ()
) -> FerryServer:
    """After `ready`: every listener asked for (in --listen, or `expect`) printed its port, and the certificate line."""
    wanted = list(expect) or [s.split("=", 1)[0] for s in srv.listen]
    for proto in ("ftps", "ftps-implicit", "ftp", "sftp"):
        if any(proto in w.split(",") for w in wanted) and proto not in srv.listeners:
            raise AssertionError(
                f"serve printed `ready` but no `listening {proto} on HOST:PORT` line\n"
                f"--- stdout ---\n{srv.stdout()}\n--- stderr ---\n{srv.log()}"
            )
    m = TLS_FINGERPRINT_RE.search(srv.stdout())
    srv.tls_sha256 = m.group(1).upper() if m else None
    if any(p in ("ftps", "ftps-implicit") for w in wanted for p in w.split(",")) and not srv.tls_sha256:
        raise AssertionError(
            f"serve printed `ready` but no `tls certificate SHA256 AB:CD:...` line\n--- stdout ---\n{srv.stdout()}"
        )
    srv.passive = passive
    return srv


def start_ftps_server(
    ferry: Path,
    base: Path,
    listen: Sequence[str] = FTPS_LISTEN,
    slot: Optional[int] = None,
    extra_args: Sequence[str] = (),
) -> FerryServer:
    """User alice, then `serve --listen ... --passive-ports LO-HI` (ftps, ftps-implicit and sftp by default)."""
    passive = passive_ports(slot)
    srv = start_alice_server(
        ferry, base, listen=listen, extra_args=["--passive-ports", f"{passive[0]}-{passive[1]}", *extra_args]
    )
    return check_ftps_started(srv, passive)


@pytest.fixture
def ftps_server(ferry: Path, tmp_path: Path) -> Iterator[FerryServer]:
    """A fresh FTPS (explicit + implicit) + SFTP server with user alice, for this test alone."""
    srv = start_ftps_server(ferry, tmp_path / "ftps-srv")
    yield srv
    stop_and_check(srv)


@pytest.fixture(scope="module")
def shared_ftps_server(ferry: Path, tmp_path_factory) -> Iterator[FerryServer]:
    """One FTPS + SFTP server with user alice for a whole module; tests use their own directory (`frdir`)."""
    srv = start_ftps_server(ferry, tmp_path_factory.mktemp("shared-ftps"), slot=0)
    yield srv
    stop_and_check(srv)


@pytest.fixture
def frdir(shared_ftps_server: FerryServer, request) -> RemoteDir:
    """A directory of alice's root on the shared FTPS server, for this test alone."""
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:40]
    return RemoteDir(shared_ftps_server, f"{safe}-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def ftps_server_factory(ferry: Path, tmp_path: Path):
    """Starts servers with user alice on demand: `factory(listen=..., extra_args=..., config=TEXT, expect=...)`.

    `config` is TOML written to a file and passed with `--config`; `{passive_ports}` in it is replaced by
    this server's range (then no --passive-ports is given); with listeners from the config, pass listen=()
    and the protocols to expect on stdout in `expect`. All servers are stopped (exit 0 checked) at the end.
    """
    started: list[FerryServer] = []

    def factory(
        listen: Sequence[str] = FTPS_LISTEN,
        extra_args: Sequence[str] = (),
        config: Optional[str] = None,
        expect: Sequence[str] = (),
    ) -> FerryServer:
        base = tmp_path / f"ftps-srv-{len(started)}"
        passive = passive_ports()
        args = list(extra_args)
        if config is not None:
            base.mkdir(parents=True)
            conf = base / "ferry.toml"
            conf.write_text(config.replace("{passive_ports}", f"{passive[0]}-{passive[1]}"))
            args = ["--config", str(conf), *args]
        else:
            args = ["--passive-ports", f"{passive[0]}-{passive[1]}", *args]
        data_dir = base / "data"
        key = make_keypair(base / "keys")
        password = new_password()
        data_dir.mkdir(parents=True)
        add_user(ferry, data_dir, "alice", password=password, public_keys=[pub(key)])
        srv = FerryServer(ferry, data_dir, base / "serve.stderr.log", listen=listen, extra_args=args)
        srv.user, srv.password, srv.key = "alice", password, key
        srv.root = data_dir / "files" / "alice"
        started.append(srv)
        srv.start()
        return check_ftps_started(srv, passive, expect)

    yield factory
    errors = []
    for srv in started:
        if srv.proc is None or (srv.proc.poll() is not None and srv not in _LIVE_SERVERS):
            continue
        try:
            code = srv.stop()
            if code != 0:
                errors.append(f"server {srv.data_dir} exited {code} after SIGTERM\n{srv.log()[-4000:]}")
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------------------------------
# `ferry probe` and the foreign servers it is tested against (OpenSSH sshd, vsftpd, Linux users)

FOREIGN_READY_TIMEOUT = 15.0  # seconds for sshd / vsftpd to accept connections


@pytest.fixture(scope="session")
def probe_cmd(ferry: Path) -> list[str]:
    """The command that runs the probe: `ferry probe`, or `$FERRY_PROBE_CMD` (split on spaces)."""
    if os.environ.get("FERRY_PROBE_CMD"):
        return os.environ["FERRY_PROBE_CMD"].split()
    proc = subprocess.run([str(ferry), "probe", "--help"], capture_output=True, text=True, timeout=30, env=clean_env())
    if proc.returncode != 0:
        pytest.fail(f"`{ferry} probe --help` failed: is the binary older than the probe?\n{proc.stderr}", pytrace=False)
    return [str(ferry), "probe"]


def run_probe(probe_cmd: Sequence[str], *args: str, input: Optional[str] = None, timeout: float = 120.0):
    """Runs the probe; returns the completed process (text mode), whatever its exit status."""
    return subprocess.run(
        [*probe_cmd, *[str(a) for a in args]],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
    )


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick); a server started on it may still lose a race."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_greeting(port: int, prefix: bytes, timeout: float = FOREIGN_READY_TIMEOUT) -> bool:
    """Polls 127.0.0.1:port until a connection's first bytes start with `prefix`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(64).startswith(prefix):
                    return True
        time.sleep(0.1)
    return False


class ForeignServer:
    """A server process that is not Ferry (sshd, vsftpd): its port, files, and its log for failures."""

    def __init__(self, name: str, cmd: list[str], port: int, log_path: Path):
        self.name, self.cmd, self.port, self.log_path = name, cmd, port, log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        self.host_key_fingerprints: dict[str, str] = {}  # ssh-keygen type (ED25519, ...) -> SHA256:...
        self.cert: Optional[Path] = None

    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text("utf-8", "replace")
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(Exception):
            self._log.close()


def _start_foreign(name: str, make_cmd, greeting: bytes, base: Path) -> ForeignServer:
    """Starts a server on a free port (`make_cmd(port)` writes its config, returns argv); retries a lost race."""
    last = ""
    for attempt in range(3):
        port = free_port()
        srv = ForeignServer(name, make_cmd(port), port, base / f"{name}-{attempt}.log")
        if wait_for_greeting(port, greeting):
            return srv
        srv.stop()
        last = srv.log()
    raise AssertionError(f"{name} did not start (3 attempts); last log:\n{last[-4000:]}")


@pytest.fixture
def openssh_factory(tmp_path: Path):
    """Starts OpenSSH sshd processes on free ports: `factory(extra_config="")`; each has `host_key_fingerprints`."""
    sshd = Path("/usr/sbin/sshd")
    if not sshd.is_file() or not have("ssh-keygen"):
        pytest.skip("OpenSSH server not installed (scripts/test installs openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root here (privilege separation)")
    # sshd refuses to start without its privilege-separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    started: list[ForeignServer] = []

    def factory(extra_config: str = "") -> ForeignServer:
        base = tmp_path / f"sshd-{len(started)}"
        base.mkdir()
        keys = {}
        for kind, bits in (("ed25519", None), ("ecdsa", None), ("rsa", "2048")):
            path = base / f"ssh_host_{kind}_key"
            cmd = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)]
            if bits:
                cmd[4:4] = ["-b", bits]
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
            out = subprocess.run(["ssh-keygen", "-lf", str(path) + ".pub"], check=True, capture_output=True,
                                 text=True, timeout=30).stdout.split()
            keys[out[-1].strip("()")] = out[1]  # e.g. ED25519 -> SHA256:...

        def make_cmd(port: int) -> list[str]:
            conf = base / "sshd_config"
            conf.write_text(
                f"Port {port}\nListenAddress 127.0.0.1\n"
                + "".join(f"HostKey {base}/ssh_host_{k}_key\n" for k in ("ed25519", "ecdsa", "rsa"))
                + "PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication yes\n"
                + "Subsystem sftp internal-sftp\n" + extra_config
            )
            return [str(sshd), "-D", "-e", "-f", str(conf)]

        srv = _start_foreign("sshd", make_cmd, b"SSH-", base)
        srv.host_key_fingerprints = keys
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


VSFTPD_PASSIVE_BASE = 46000  # + 100 per xdist worker: 50 ports no Ferry test uses


def self_signed_rsa(directory: Path, cn: str = "localhost", sans: str = "DNS:localhost,IP:127.0.0.1") -> tuple[Path, Path]:
    """An RSA self-signed certificate made by `openssl req -x509` (as admins make them); returns (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", f"/CN={cn}",
         "-addext", f"subjectAltName={sans}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.fixture
def vsftpd_factory(tmp_path: Path):
    """Starts vsftpd processes on free ports: `factory(ssl=True, extra_config="")`; `.cert` is the PEM certificate."""
    vsftpd = shutil.which("vsftpd") or ("/usr/sbin/vsftpd" if Path("/usr/sbin/vsftpd").is_file() else None)
    if vsftpd is None or not have("openssl"):
        pytest.skip("vsftpd or openssl not installed (scripts/test installs vsftpd)")
    if os.geteuid() != 0:
        pytest.skip("vsftpd in listen mode needs root here")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    m = re.search(r"(\d+)$", worker)
    pasv_lo = VSFTPD_PASSIVE_BASE + 100 * (int(m.group(1)) if m else 0)
    started: list[ForeignServer] = []

    def factory(ssl: bool = True, extra_config: str = "") -> ForeignServer:
        base = tmp_path / f"vsftpd-{len(started)}"
        empty = base / "empty"
        empty.mkdir(parents=True)
        cert, key = self_signed_rsa(base)

        def make_cmd(port: int) -> list[str]:
            conf = base / "vsftpd.conf"
            conf.write_text(
                "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\n"
                f"listen_port={port}\nbackground=NO\n"
                "anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\n"
                f"ssl_enable={'YES' if ssl else 'NO'}\nrsa_cert_file={cert}\nrsa_private_key_file={key}\n"
                f"pasv_min_port={pasv_lo}\npasv_max_port={pasv_lo + 49}\n"
                f"secure_chroot_dir={empty}\nseccomp_sandbox=NO\n"
                # Containers often forbid the namespaces vsftpd isolates its processes with.
                "isolate=NO\nisolate_network=NO\nxferlog_enable=NO\n" + extra_config
            )
            return [vsftpd, str(conf)]

        srv = _start_foreign("vsftpd", make_cmd, b"220", base)
        srv.cert = cert
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture
def linux_user():
    """A Linux user with a random name and password (bash shell, home dir), removed afterwards: (name, password, home)."""
    if os.geteuid() != 0 or not have("useradd") or not have("chpasswd"):
        pytest.skip("creating a Linux user needs root and useradd/chpasswd")
    name = "fp" + secrets.token_hex(6)
    password = new_password()
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True, capture_output=True, timeout=60)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True,
                       timeout=60)
        import pwd

        yield name, password, Path(pwd.getpwnam(name).pw_dir)
    finally:
        subprocess.run(["userdel", "-r", "-f", name], capture_output=True, timeout=60)


# --------------------------------------------------------------------------------------------------
# Uploads that are cut off, crashes and interop (issue 10): servers with their own data dir, config or
# home; what is on disk; the transfer log lines

import stat as _stat  # noqa: E402


def disk_entries(directory: Path) -> list[str]:
    """Every name under `directory` on disk (files, directories, links; hidden ones too), recursively, sorted."""
    return sorted(str(p.relative_to(directory)) for p in Path(directory).rglob("*"))


def disk_bytes(directory: Path) -> int:
    """Sum of the sizes of the regular files under `directory` on disk, hidden ones included."""
    total = 0
    for p in Path(directory).rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            st = p.lstat()
            if _stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def file_bytes(path: Path) -> Optional[bytes]:
    """The bytes of a file on disk, or None while it does not exist (for polling a file that is being restored)."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def die_with_parent() -> None:
    """`preexec_fn` for helper processes (sshfs, rclone rcd, clients): SIGKILL them when the test process dies."""
    _die_with_parent()


def kill_process_group(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGKILL a process started with start_new_session=True, and everything it started; waits for it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


def crash_server(srv: FerryServer) -> None:
    """`kill -9` of a running `ferry serve`: no shutdown, no cleanup; the server is forgotten by the teardown."""
    assert srv.proc is not None and srv.alive(), "the server is not running"
    if srv in _LIVE_SERVERS:
        _LIVE_SERVERS.remove(srv)
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(10)
    srv._eof.wait(5)
    with contextlib.suppress(Exception):
        srv._log_file.close()


# `INFO transfer user=... path=...`: the word `transfer` then the fields (not `transfer interrupted: ...`,
# `transfer failed ...`)
_COMPLETED_TRANSFER_RE = re.compile(r"\btransfer\s+(?=\w+=)")
_INTERRUPTED_TRANSFER_RE = re.compile(r"\btransfer interrupted\b")


def transfer_log_lines(srv: FerryServer, path: str, since: int = 0) -> tuple[list[str], list[str]]:
    """The server's log lines about uploads to virtual `path` after log offset `since`:
    (completed uploads: `transfer` lines with bytes_written > 0, `transfer interrupted` lines).

    SFTP logs `path=/a/b`, FTPS `path="/a/b"`; both are matched. Downloads (bytes_written=0 or absent) are not
    completed uploads.
    """
    at_path = re.compile(r'\bpath="?' + re.escape(path) + r'"?(?:\s|$)')
    done, cut = [], []
    for line in srv.log()[since:].splitlines():
        if not at_path.search(line):
            continue
        if _INTERRUPTED_TRANSFER_RE.search(line):
            cut.append(line)
        elif _COMPLETED_TRANSFER_RE.search(line):
            m = re.search(r"\bbytes_written=(\d+)", line)
            if m and int(m.group(1)) > 0:
                done.append(line)
    return done, cut


class AliceServers:
    """Servers with user alice (password and ed25519 key), each with its own data dir, made on demand.

    `servers(listen=..., config=TOML, home=DIR)` starts one: `config` is written to a file passed with
    `--config` (listeners and passive ports still come from the command line); `home` is alice's `--home`.
    With an FTPS listener the server gets its own passive port range. `servers.restart(srv)` starts a new
    server on the same data dir and config (after `crash_server(srv)` or `srv.stop()`).
    """

    def __init__(self, ferry: Path, tmp_path: Path):
        self.ferry, self.tmp_path = ferry, tmp_path
        self.started: list[FerryServer] = []
        self._made = itertools.count()

    def __call__(
        self,
        listen: Sequence[str] = FTPS_LISTEN,
        config: Optional[str] = None,
        home: Optional[Path] = None,
    ) -> FerryServer:
        base = self.tmp_path / f"alice-srv-{next(self._made)}"
        base.mkdir(parents=True)
        data_dir = base / "data"
        data_dir.mkdir()
        key = make_keypair(base / "keys")
        password = new_password()
        add_user(self.ferry, data_dir, "alice", password=password, public_keys=[pub(key)], home=home)
        extra: list[str] = []
        if config is not None:
            (base / "ferry.toml").write_text(config)
            extra += ["--config", str(base / "ferry.toml")]
        srv = self._start(base, data_dir, list(listen), extra)
        srv.user, srv.password, srv.key = "alice", password, key
        srv.root = home if home is not None else data_dir / "files" / "alice"
        return srv

    def restart(self, old: FerryServer) -> FerryServer:
        assert not old.alive(), "stop or crash the server first"
        base = old.log_path.parent
        extra = [a for a in old.extra_args]
        if "--passive-ports" in extra:
            i = extra.index("--passive-ports")
            del extra[i : i + 2]
        srv = self._start(base, old.data_dir, old.listen, extra)
        srv.user, srv.password, srv.key, srv.root = old.user, old.password, old.key, old.root
        return srv

    def _start(self, base: Path, data_dir: Path, listen: list[str], extra: list[str]) -> FerryServer:
        ftps = any(p in ("ftps", "ftps-implicit", "any") for s in listen for p in s.split("=", 1)[0].split(","))
        passive = passive_ports() if ftps else None
        if passive is not None:
            extra = [*extra, "--passive-ports", f"{passive[0]}-{passive[1]}"]
        log = base / f"serve-{len(list(base.glob('serve-*.stderr.log')))}.stderr.log"
        srv = FerryServer(self.ferry, data_dir, log, listen=listen, extra_args=extra)
        try:
            srv.start()
        except AssertionError:
            if srv in _LIVE_SERVERS:  # it did not start: its output is in the error already
                _LIVE_SERVERS.remove(srv)
            raise
        self.started.append(srv)
        return check_ftps_started(srv, passive) if ftps else srv

    def stop_all(self) -> None:
        errors = []
        for srv in self.started:
            if srv.proc is None or (srv.proc.poll() is not None and srv not in _LIVE_SERVERS):
                continue
            try:
                code = srv.stop()
                if code != 0:
                    errors.append(f"server {srv.data_dir} exited {code} after SIGTERM\n{srv.log()[-4000:]}")
            except AssertionError as e:
                errors.append(str(e))
        assert not errors, "\n".join(errors)


@pytest.fixture
def alice_servers(ferry: Path, tmp_path: Path) -> Iterator[AliceServers]:
    """`AliceServers` for this test; every server still running is stopped (exit 0 checked) at the end."""
    servers = AliceServers(ferry, tmp_path)
    yield servers
    servers.stop_all()


# --------------------------------------------------------------------------------------------------
# PostgreSQL (issue 13): the user store several nodes share

@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory) -> Iterator[str]:
    """A PostgreSQL server: `$FERRY_TEST_POSTGRES` (scripts/test starts one), else one started here with
    scripts/postgres on a free port and stopped at the end."""
    url = os.environ.get("FERRY_TEST_POSTGRES", "")
    if url:
        yield url
        return
    port = free_port()
    # Not under pytest's 0700 temp dir: as root, the server runs as the `postgres` user.
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="ferry-e2e-pg-"))
    os.chmod(d, 0o755)
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "postgres"), "start", str(d / "pg"), str(port)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"scripts/postgres could not start PostgreSQL:\n{proc.stderr}", pytrace=False)
    yield proc.stdout.strip()
    subprocess.run([str(REPO_ROOT / "scripts" / "postgres"), "stop", str(d / "pg")], timeout=60)
    shutil.rmtree(d, ignore_errors=True)


def with_database(url: str, db: str) -> str:
    base, _, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/{db}" + (f"?{query}" if query else "")


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> str:
    """A fresh, empty database on the test PostgreSQL server, for this test alone."""
    db = f"ferry_e2e_{uuid.uuid4().hex[:10]}"
    subprocess.run(["psql", postgres_admin_url, "-qAtc", f"CREATE DATABASE {db}"], check=True,
                   capture_output=True, timeout=30)
    return with_database(postgres_admin_url, db)


# --------------------------------------------------------------------------------------------------
# S3 (issue 13): a Garage bucket users' files can live in

class S3Bucket:
    def __init__(self, line: str):
        self.endpoint, self.region, self.bucket, self.key_id, self.secret = line.split()

    def storage_toml(self, prefix: str) -> str:
        return (
            f'[storage]\nbackend = "s3"\nendpoint = "{self.endpoint}"\nregion = "{self.region}"\n'
            f'bucket = "{self.bucket}"\nprefix = "{prefix}"\naccess_key_id = "{self.key_id}"\n'
            f'secret_access_key = "{self.secret}"\n'
        )

    def rclone_cmd(self, *args: str) -> list[str]:
        return ["rclone", "--s3-provider", "Other", "--s3-endpoint", self.endpoint, "--s3-region", self.region,
                "--s3-access-key-id", self.key_id, "--s3-secret-access-key", self.secret,
                "--s3-force-path-style=true", *args]

    @staticmethod
    def env() -> dict:
        # rclone's AWS SDK fails on an AWS_CA_BUNDLE (some CI images set one) with its own transport.
        return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}

    def rclone(self, *args: str, check: bool = True, text: bool = True) -> subprocess.CompletedProcess:
        """rclone against the bucket itself (`:s3:BUCKET/...`), to see what Ferry stored."""
        cmd = self.rclone_cmd(*args)
        proc = subprocess.run(cmd, capture_output=True, text=text, timeout=120, stdin=subprocess.DEVNULL,
                              env=self.env())
        if check and proc.returncode != 0:
            raise AssertionError(f"`{' '.join(args)}` exited {proc.returncode}\n{proc.stderr}")
        return proc

    def keys(self, prefix: str) -> list[str]:
        out = self.rclone("lsf", "-R", "--files-only", f":s3:{self.bucket}/{prefix}").stdout
        return sorted(line for line in out.splitlines() if line)

    def cat(self, key: str) -> bytes:
        return self.rclone("cat", f":s3:{self.bucket}/{key}", text=False).stdout


@pytest.fixture(scope="session")
def s3_bucket(tmp_path_factory) -> Iterator[S3Bucket]:
    """A Garage bucket: `$FERRY_TEST_S3` ("ENDPOINT REGION BUCKET KEY SECRET", scripts/test starts one), else
    one started here with scripts/garage (garage must be installed: `scripts/garage install`)."""
    line = os.environ.get("FERRY_TEST_S3", "")
    if line:
        yield S3Bucket(line)
        return
    d = tmp_path_factory.mktemp("garage")
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "garage"), "start", str(d)], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"scripts/garage could not start Garage:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    yield S3Bucket(proc.stdout.strip().splitlines()[-1])
    subprocess.run([str(REPO_ROOT / "scripts" / "garage"), "stop", str(d)], timeout=60)


# --------------------------------------------------------------------------------------------------
# HAProxy in front of Ferry nodes (issue 13)

def balancer_ports() -> tuple[int, int]:
    """A passive range for a balancer to bind whole: `passive_ports()` moved 10000 down, below the kernel's
    ephemeral range (32768 and up), where a client socket of a test running in parallel could hold one of
    the ports (the range's own servers bind one port at a time and skip a taken one; HAProxy binds all)."""
    lo, hi = passive_ports()
    return lo - 10000, hi - 10000


@pytest.fixture
def haproxy(tmp_path):
    """`start(routes)`: HAProxy (mode tcp, `send-proxy-v2` to every server) with one `listen` section per
    route `(bind, [servers])`, round robin; a server that refuses is retried on another (redispatch)."""
    exe = shutil.which("haproxy")
    assert exe, "haproxy is not installed (scripts/test installs the Debian package)"
    procs: list[subprocess.Popen] = []

    def start(routes) -> None:
        cfg = ["global", "  maxconn 500", "defaults", "  mode tcp", "  timeout connect 2s",
               "  timeout client 120s", "  timeout server 120s", "  retries 3", "  option redispatch"]
        for i, (bind, servers) in enumerate(routes):
            cfg += [f"listen r{i}", f"  bind {bind}", "  balance roundrobin"]
            cfg += [f"  server s{j} {srv} send-proxy-v2" for j, srv in enumerate(servers)]
        path = tmp_path / "haproxy.cfg"
        path.write_text("\n".join(cfg) + "\n")
        log = open(tmp_path / "haproxy.log", "wb")
        procs.append(subprocess.Popen([exe, "-db", "-f", str(path)], stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL))
        host, port = routes[0][0].rsplit(":", 1)

        def up() -> bool:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_until(up, timeout=10), (tmp_path / "haproxy.log").read_text()

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def proxy_v2(src: str, sport: int, dst: str, dport: int) -> bytes:
    """A PROXY protocol v2 header (TCP over IPv4) naming client src:sport, as a load balancer sends it."""
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def read_line(sock, timeout: float = 10.0) -> bytes:
    """Reads from `sock` up to and including its first newline, a byte at a time so nothing after it is
    taken (or up to the close)."""
    sock.settimeout(timeout)
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        line += chunk
    return line


def first_line(addr, source: str = "127.0.0.1", send: bytes = b"", timeout: float = 10) -> bytes:
    """Connects from `source`, sends `send`, and reads what the server says first, up to its first newline."""
    with socket.create_connection(addr, timeout=timeout, source_address=(source, 0)) as s:
        if send:
            s.sendall(send)
        return read_line(s, timeout)


def words_until_closed(addr, source: str = "127.0.0.1", send: bytes = b"", timeout: float = 10) -> bytes:
    """Connects from `source`, sends `send`, and reads everything the server says until it closes."""
    with socket.create_connection(addr, timeout=timeout, source_address=(source, 0)) as s:
        if send:
            s.sendall(send)
        got = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        return got
