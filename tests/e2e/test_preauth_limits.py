"""Before login, one address must not hurt anyone else (issue 11, "Pre-authentication").

Unauthenticated connections are capped per source address (`[limits] per_source_max_startups`) and in
total (`max_startups`, OpenSSH's random early drop); every connection must log in within
`login_grace_secs` of accept, whatever stage it is stuck in (SSH version line, key exchange, TLS handshake,
FTP login); Ferry raises its open-file limit and keeps its connection caps under it, so a flood of idle
sockets never gives a logged-in user "Too many open files"; a flood of wrong passwords neither stalls
transfers nor grows memory; an FTPS passive port nobody connects to goes back to the pool.

Loopback has a whole /8: client sockets bound to 127.0.0.2, 127.0.0.3, ... play different addresses
against servers listening on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import io
import logging
import re
import selectors
import shlex
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Optional, Sequence

import paramiko
import pytest

from conftest import (
    FTPS_LISTEN,
    AliceServers,
    FerryServer,
    connect_transport,
    sftp_client,
    wait_until,
    write_random,
)
from ftps_helpers import (
    ExplicitFTPS,
    ImplicitFTPS,
    client_context,
    close_quietly,
    ftp_addr,
    open_ftps,
    parse_epsv_port,
    parse_pasv_port,
    send_raw,
)

pytestmark = pytest.mark.timeout(120)

CONNECT_TIMEOUT = 5.0  # one TCP connect, or one read of a client socket
QUICK_LOGIN = 2.0  # a login from an address that is not flooding, while another one floods
PER_SOURCE_DEFAULT = 10  # `[limits] per_source_max_startups` default
PER_SOURCE_LOG = "too many unauthenticated connections from one address ([limits] per_source_max_startups)"
STARTUPS_LOG = "too many unauthenticated connections in total ([limits] max_startups)"
PER_SOURCE_TEXT = b"Too many connections from your address that have not logged in; try again later\r\n"
STARTUPS_TEXT = b"Too many connections are logging in; try again later\r\n"
FULL_TEXT = b"Too many connections; try again later\r\n"


# --------------------------------------------------------------------------------------------------
# helpers


def sources(first: int, last: int) -> list[str]:
    """Loopback addresses 127.0.0.first ... 127.0.0.last."""
    return [f"127.0.0.{i}" for i in range(first, last + 1)]


@contextlib.contextmanager
def idle_connections(addr: tuple[str, int], from_ips: Sequence[str], each: int) -> Iterator[list[socket.socket]]:
    """`each` TCP connections from every address of `from_ips` to `addr` that send nothing; all closed at exit."""
    socks: list[socket.socket] = []
    try:
        for ip in from_ips:
            for _ in range(each):
                socks.append(socket.create_connection(addr, timeout=CONNECT_TIMEOUT, source_address=(ip, 0)))
        yield socks
    finally:
        for s in socks:
            s.close()


def observe(socks: Sequence[socket.socket], window: float) -> dict[socket.socket, tuple[bytes, bool]]:
    """What each socket receives within `window` seconds, and whether the server closed it: {sock: (bytes, closed)}.

    Reads without blocking; the sockets are left open (and blocking, with their timeout) afterwards.
    """
    got = {s: b"" for s in socks}
    closed: set[socket.socket] = set()
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + window
    try:
        while len(closed) < len(socks):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(left):
                s = key.fileobj
                try:
                    chunk = s.recv(4096)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    got[s] += chunk
                else:
                    closed.add(s)
                    sel.unregister(s)
    finally:
        sel.close()
        for s in socks:
            s.settimeout(CONNECT_TIMEOUT)
    return {s: (got[s], s in closed) for s in socks}


def read_until_closed(sock: socket.socket, limit: float) -> tuple[Optional[float], bytes]:
    """Reads until the server closes `sock` or `limit` seconds pass: (seconds until closed or None, bytes)."""
    start = time.monotonic()
    data = b""
    while True:
        left = limit - (time.monotonic() - start)
        if left <= 0:
            return None, data
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            return None, data
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return time.monotonic() - start, data
        data += chunk


def refusal_lines(srv: FerryServer, reason: str) -> list[str]:
    return [line for line in srv.log().splitlines() if "hint: refusing connections" in line and reason in line]


def sftp_login_seconds(srv: FerryServer, **kw) -> float:
    """Seconds for a paramiko login and a listing of / (raises when either fails)."""
    start = time.monotonic()
    with sftp_client(srv, timeout=CONNECT_TIMEOUT, **kw) as sftp:
        sftp.get_channel().settimeout(CONNECT_TIMEOUT)
        sftp.listdir("/")
    return time.monotonic() - start


def ftps_login_seconds(srv: FerryServer, proto: str = "ftps") -> float:
    """Seconds for an ftplib FTPS login and an NLST on listener `proto` (raises when either fails)."""
    start = time.monotonic()
    cls = ImplicitFTPS if proto == "ftps-implicit" else ExplicitFTPS
    ftps = cls(context=client_context(), timeout=CONNECT_TIMEOUT)
    try:
        ftps.connect(*ftp_addr(srv, proto))
        ftps.login(srv.user, srv.password)
        ftps.prot_p()
        ftps.nlst()
    finally:
        close_quietly(ftps, quit=True)
    return time.monotonic() - start


class Collect(logging.Handler):
    """Keeps the messages of the log records it handles (paramiko's transport log, for the disconnect reason)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def client_hello() -> bytes:
    """The bytes of a real TLS ClientHello (what an implicit-FTPS client sends first)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:16]
    return hello


def max_open_files(pid: int) -> tuple[int, int]:
    """(soft, hard) "Max open files" of a process, from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no Max open files line in /proc/{pid}/limits")


def rss_mib(pid: int) -> float:
    m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert m, f"no VmRSS in /proc/{pid}/status"
    return int(m.group(1)) / 1024


def nofile_wrapper(ferry: Path, directory: Path, soft: int, hard: int) -> Path:
    """A script that runs ferry under an open-file limit of soft:hard (as `ulimit -n` or LimitNOFILE= would).

    It execs ferry, so the server's pid is the script's.
    """
    path = directory / f"ferry-nofile-{soft}-{hard}"
    path.write_text(
        "#!/bin/bash\n"
        f"ulimit -Sn {soft} && ulimit -Hn {hard} || exit 97\n"
        f'exec {shlex.quote(str(ferry))} "$@"\n'
    )
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------------------------------
# Per-source cap


# listeners; the one the idle connections go to; what a refused client receives there
PER_SOURCE_CASES = {
    "any": (("any=127.0.0.1:0",), "sftp", b"421 " + PER_SOURCE_TEXT),
    "ftps": (("ftps=127.0.0.1:0", "sftp=127.0.0.1:0"), "ftps", b"421 " + PER_SOURCE_TEXT),
    "sftp": (("sftp=127.0.0.1:0", "ftps=127.0.0.1:0"), "sftp", PER_SOURCE_TEXT),
    "ftps-implicit": (("ftps-implicit=127.0.0.1:0", "sftp=127.0.0.1:0"), "ftps-implicit", b""),
}


@pytest.mark.parametrize("case", list(PER_SOURCE_CASES))
def test_one_address_gets_ten_unauthenticated_connections_and_others_log_in_quickly(alice_servers, case):
    listen, flooded, refused_with = PER_SOURCE_CASES[case]
    srv = alice_servers(listen=listen)
    addr = srv.listeners[flooded]
    with idle_connections(addr, ["127.0.0.2"], 40) as socks:
        seen = observe(socks, 1.5)
        still_open = [s for s, (_, closed) in seen.items() if not closed]
        refused = [data for data, closed in seen.values() if closed]
        assert len(still_open) == PER_SOURCE_DEFAULT, (
            f"{len(still_open)} of 40 idle connections from one address stay open on the {case} listener; "
            f"per_source_max_startups is {PER_SOURCE_DEFAULT}"
        )
        assert refused and all(data == refused_with for data in refused), (
            f"a refused client on the {case} listener must get {refused_with!r}; got {set(refused)}"
        )

        # Others are not affected: logins from 127.0.0.1 are as quick as ever.
        took = sftp_login_seconds(srv)
        assert took < QUICK_LOGIN, f"SFTP login took {took:.1f}s while one address held its share"
        took = ftps_login_seconds(srv, "ftps-implicit" if case == "ftps-implicit" else "ftps")
        assert took < QUICK_LOGIN, f"FTPS login took {took:.1f}s while one address held its share"

        # Logged-in connections do not count, and those left waiting are not closed before their time.
        assert not any(closed for _, closed in observe(still_open, 0.3).values())

    # One log line for the 30 refusals (at most one per 10 s), naming the address.
    line = srv.wait_for_log(re.escape(PER_SOURCE_LOG), timeout=5)
    assert line is not None, "no log line about the refused connections"
    assert "127.0.0.2" in line, line
    assert len(refusal_lines(srv, PER_SOURCE_LOG)) == 1, "\n".join(refusal_lines(srv, PER_SOURCE_LOG))

    # Closed connections give their places back.
    def admitted_again() -> bool:
        with idle_connections(addr, ["127.0.0.2"], PER_SOURCE_DEFAULT) as again:
            return not any(closed for _, closed in observe(again, 0.3).values())

    assert wait_until(admitted_again, timeout=5, interval=0.2), "127.0.0.2 is still refused after closing"


def test_logged_in_connections_do_not_count_against_their_address(alice_servers):
    srv = alice_servers(listen=("sftp=127.0.0.1:0",))
    addr = srv.listeners["sftp"]
    key = paramiko.PKey.from_path(str(srv.key))
    transports: list[paramiko.Transport] = []
    try:
        for _ in range(PER_SOURCE_DEFAULT + 5):
            sock = socket.create_connection(addr, timeout=CONNECT_TIMEOUT, source_address=("127.0.0.3", 0))
            t = paramiko.Transport(sock)
            transports.append(t)
            t.banner_timeout = t.auth_timeout = CONNECT_TIMEOUT
            t.connect(username=srv.user, pkey=key)
        with idle_connections(addr, ["127.0.0.3"], PER_SOURCE_DEFAULT) as socks:
            assert not any(closed for _, closed in observe(socks, 1.0).values()), (
                f"{PER_SOURCE_DEFAULT + 5} logged-in sessions from 127.0.0.3 took its unauthenticated places"
            )
        assert all(t.is_active() for t in transports)
    finally:
        for t in transports:
            t.close()


# --------------------------------------------------------------------------------------------------
# MaxStartups in total

MAX_STARTUPS_CONFIG = '[limits]\nmax_startups = "5:30:10"\nper_source_max_startups = 100\n'


def test_unauthenticated_connections_in_total_follow_max_startups(alice_servers):
    srv = alice_servers(listen=("ftps=127.0.0.1:0", "sftp=127.0.0.1:0"), config=MAX_STARTUPS_CONFIG)
    addr = ftp_addr(srv, "ftps")
    with idle_connections(addr, sources(2, 40), 3) as socks:
        seen = observe(socks, 1.5)
        still_open = [s for s, (_, closed) in seen.items() if not closed]
        refused = [data for data, closed in seen.values() if closed]
        assert 5 <= len(still_open) <= 10, (
            f"{len(still_open)} of {len(socks)} unauthenticated connections from 39 addresses stay open; "
            'max_startups = "5:30:10" allows 5 to 10'
        )
        assert refused and all(data == b"421 " + STARTUPS_TEXT for data in refused), set(refused)

        # Full is full for every address, 127.0.0.1 too.
        with socket.create_connection(addr, timeout=CONNECT_TIMEOUT) as s:
            took, data = read_until_closed(s, CONNECT_TIMEOUT)
            assert took is not None and data == b"421 " + STARTUPS_TEXT, data

    assert len(refusal_lines(srv, STARTUPS_LOG)) == 1, srv.log()[-4000:]

    # Once they are gone, logins work again.
    def logs_in() -> bool:
        try:
            sftp_login_seconds(srv)
            ftps_login_seconds(srv)
            return True
        except (paramiko.SSHException, EOFError, OSError, ftplib.Error):
            return False

    assert wait_until(logs_in, timeout=10, interval=0.3), "no login within 10s of the idle connections closing"


# --------------------------------------------------------------------------------------------------
# Login grace

GRACE = 2
GRACE_CONFIG = f"[limits]\nlogin_grace_secs = {GRACE}\n"
CLOSED_BY = GRACE + 6.0  # the deadline, plus the listener's 5 s backstop, plus scheduling
NOT_BEFORE = GRACE - 0.5


def test_login_grace_closes_every_kind_of_stalled_client(alice_servers):
    srv = alice_servers(listen=FTPS_LISTEN, config=GRACE_CONFIG)
    sftp_addr = srv.listeners["sftp"]
    hello = client_hello()

    def raw(addr, send: bytes = b"") -> tuple[Optional[float], bytes]:
        with socket.create_connection(addr, timeout=CONNECT_TIMEOUT) as s:
            if send:
                s.sendall(send)
            return read_until_closed(s, CLOSED_BY + 4)

    def ssh_kex_then_nothing() -> tuple[Optional[float], bytes]:
        """Key exchange, then no authentication; returns what paramiko logged about the disconnect."""
        start = time.monotonic()
        sock = socket.create_connection(sftp_addr, timeout=CONNECT_TIMEOUT)
        t = paramiko.Transport(sock)
        channel = f"ferry.e2e.grace.{id(t)}"
        t.set_log_channel(channel)
        said = Collect()
        logging.getLogger(channel).setLevel(logging.INFO)
        logging.getLogger(channel).addHandler(said)
        try:
            t.start_client(timeout=CONNECT_TIMEOUT)
            gone = wait_until(lambda: not t.is_active(), timeout=CLOSED_BY + 4, interval=0.05)
            took = time.monotonic() - start if gone else None
            return took, " ".join(m for m in said.messages if "isconnect" in m).encode()
        finally:
            t.close()
            logging.getLogger(channel).removeHandler(said)

    def ftps_auth_tls_then_nothing() -> tuple[Optional[float], bytes]:
        start = time.monotonic()
        ftps = open_ftps(srv, login=False, timeout=CLOSED_BY + 4)
        try:
            ftps.auth()
            try:
                resp = ftps.getline()
            except (EOFError, OSError) as e:
                resp = f"closed: {e!r}"
            return time.monotonic() - start, resp.encode()
        finally:
            close_quietly(ftps)

    def ftp_auth_tls_then_half_a_hello() -> tuple[Optional[float], bytes]:
        with socket.create_connection(srv.listeners["ftps"], timeout=CONNECT_TIMEOUT) as s:
            s.sendall(b"AUTH TLS\r\n")
            s.sendall(hello[: len(hello) // 2])
            return read_until_closed(s, CLOSED_BY + 4)

    def logged_in_sftp() -> str:
        start = time.monotonic()
        with sftp_client(srv, timeout=CONNECT_TIMEOUT) as sftp:
            time.sleep(max(0.0, GRACE + 2 - (time.monotonic() - start)))
            sftp.putfo(io.BytesIO(b"after the grace\n"), "/late.txt")
            return sftp.open("/late.txt").read().decode()

    def logged_in_ftps() -> list[str]:
        start = time.monotonic()
        ftps = open_ftps(srv, timeout=CONNECT_TIMEOUT)
        try:
            time.sleep(max(0.0, GRACE + 2 - (time.monotonic() - start)))
            # Its own file: the SFTP client's upload runs at the same moment, so its name may not be there yet.
            ftps.storbinary("STOR /late-ftps.txt", io.BytesIO(b"after the grace\n"))
            return ftps.nlst()
        finally:
            close_quietly(ftps, quit=True)

    with ThreadPoolExecutor(max_workers=9) as pool:
        stalled = {
            "SSH, nothing sent": pool.submit(raw, sftp_addr),
            "SSH, half a version line": pool.submit(raw, sftp_addr, b"SSH-2.0-"),
            "SSH, key exchange done, no authentication": pool.submit(ssh_kex_then_nothing),
            "implicit FTPS, half a ClientHello": pool.submit(
                raw, srv.listeners["ftps-implicit"], hello[: len(hello) // 2]
            ),
            "FTP, greeted, never logs in": pool.submit(raw, srv.listeners["ftps"]),
            "explicit FTPS, AUTH TLS, never logs in": pool.submit(ftps_auth_tls_then_nothing),
            "explicit FTPS, AUTH TLS, half a ClientHello": pool.submit(ftp_auth_tls_then_half_a_hello),
        }
        sftp_ok = pool.submit(logged_in_sftp)
        ftps_ok = pool.submit(logged_in_ftps)
        results = {name: f.result(timeout=CLOSED_BY + 15) for name, f in stalled.items()}
        assert sftp_ok.result(timeout=30) == "after the grace\n"
        names = ftps_ok.result(timeout=30)
        assert any(n.rsplit("/", 1)[-1] == "late-ftps.txt" for n in names), names

    for name, (took, data) in results.items():
        assert took is not None, f"{name}: still open {CLOSED_BY + 4:.0f}s after connecting (grace {GRACE}s)"
        assert NOT_BEFORE <= took <= CLOSED_BY, f"{name}: closed after {took:.1f}s; login_grace_secs = {GRACE}"
    ftp_data = results["FTP, greeted, never logs in"][1]
    assert ftp_data.startswith(b"220") and f"421 No login within {GRACE}s".encode() in ftp_data, ftp_data
    ssh_said = results["SSH, key exchange done, no authentication"][1]
    assert b"login timed out" in ssh_said, f"the SSH client was not told why: {ssh_said!r}"
    tls_data = results["explicit FTPS, AUTH TLS, never logs in"][1]
    assert tls_data.startswith(f"421 No login within {GRACE}s".encode()), tls_data
    closings = re.findall(rf"closing connection: no login within {GRACE}s", srv.log())
    assert len(closings) >= len(results), srv.log()[-4000:]


# --------------------------------------------------------------------------------------------------
# Open files


def test_open_file_limit_is_raised_to_the_hard_limit(ferry, tmp_path):
    servers = AliceServers(nofile_wrapper(ferry, tmp_path, 1024, 4096), tmp_path)
    try:
        srv = servers(listen=("sftp=127.0.0.1:0",))
        pid = srv.proc.pid
        assert Path(f"/proc/{pid}/exe").resolve() == Path(ferry).resolve()
        # Ferry raises the limit as it starts serving, just after printing `ready`.
        wait_until(lambda: max_open_files(pid) == (4096, 4096), timeout=5)
        assert max_open_files(pid) == (4096, 4096)
        line = srv.wait_for_log(r"hint: .*max_connections lowered from 10000 to \d+", timeout=5)
        assert line is not None, srv.log()
        lowered = int(re.search(r"lowered from 10000 to (\d+)", line).group(1))
        assert 0 < lowered < 4096, line
    finally:
        servers.stop_all()


@pytest.mark.parametrize("nofile", [256, 512])
def test_idle_connection_flood_never_costs_a_logged_in_user_a_file_descriptor(ferry, tmp_path, nofile):
    servers = AliceServers(nofile_wrapper(ferry, tmp_path, nofile, nofile), tmp_path)
    try:
        srv = servers(listen=("sftp=127.0.0.1:0",))
        pid = srv.proc.pid
        assert max_open_files(pid) == (nofile, nofile)
        line = srv.wait_for_log(r"hint: .*max_connections lowered from 10000 to \d+", timeout=5)
        assert line is not None, f"no hint about max_connections:\n{srv.log()}"
        lowered = int(re.search(r"lowered from 10000 to (\d+)", line).group(1))
        assert 0 < lowered and lowered * 2 < nofile, line

        payload = bytes(range(256)) * 1024  # 256 KiB
        ops: list[str] = []
        errors: list[str] = []
        stop = threading.Event()
        with sftp_client(srv, timeout=CONNECT_TIMEOUT) as sftp:
            sftp.get_channel().settimeout(30)

            def work() -> None:
                i = 0
                while not stop.is_set():
                    name = f"/f{i % 5}.bin"
                    try:
                        sftp.putfo(io.BytesIO(payload), name)
                        ops.append("put")
                        assert f"f{i % 5}.bin" in sftp.listdir("/")
                        ops.append("list")
                        back = io.BytesIO()
                        sftp.getfo(name, back)
                        assert back.getvalue() == payload, f"{name} came back different"
                        ops.append("get")
                    except (OSError, EOFError, paramiko.SSHException, AssertionError) as e:
                        errors.append(f"{name}: {e!r}")
                    i += 1

            worker = threading.Thread(target=work, name="sftp-work", daemon=True)
            worker.start()
            try:
                time.sleep(0.5)
                with idle_connections(srv.listeners["sftp"], sources(2, 31), 10) as socks:
                    seen = observe(socks, 1.0)
                    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
                    time.sleep(1.5)
                before = len(ops)
                time.sleep(0.5)
            finally:
                stop.set()
                worker.join(30)
            assert not worker.is_alive(), "the SFTP session's operations hang"
        assert not errors, f"{len(errors)} of {len(ops) + len(errors)} operations failed under the flood: {errors[:5]}"
        refused = {data for data, closed in seen.values() if closed}
        assert refused and refused <= {FULL_TEXT, PER_SOURCE_TEXT, STARTUPS_TEXT}, refused
        assert len(ops) >= 30 and len(ops) > before, f"only {len(ops)} operations completed"
        assert fds < nofile - 16, f"the server held {fds} of its {nofile} file descriptors during the flood"
        assert "Too many open files" not in srv.log() and "os error 24" not in srv.log(), srv.log()[-4000:]
    finally:
        servers.stop_all()


# --------------------------------------------------------------------------------------------------
# Password flood

FLOOD_SECONDS = 10.0
FLOODERS = [(ip, n) for ip in sources(2, 16) for n in range(10)]  # 150 connections, 10 per address
FLOOD_CONFIG = '[limits]\nmax_startups = "200:30:300"\n'  # let every flooder in: the password queue is under test
BIG = 20 * 1024 * 1024
TRANSFER_BOUND = 20.0  # seconds for 20 MB over loopback while the flood runs (about 1 s without it)
RSS_BOUND_MIB = 200


def test_password_flood_stalls_no_transfer_and_grows_no_memory(alice_servers, tmp_path):
    """150 FTPS connections send wrong passwords as fast as the server answers them (each after 1.5 s, 6 per
    connection, then a new connection) for 10 s: up to 150 checks at once, more than the queue of 128 holds."""
    srv = alice_servers(listen=("ftps=127.0.0.1:0", "sftp=127.0.0.1:0"), config=FLOOD_CONFIG)
    pid = srv.proc.pid
    host, port = ftp_addr(srv, "ftps")
    src = tmp_path / "big.bin"
    digest = write_random(src, BIG)
    stop = threading.Event()
    attempts = [0]
    rss: list[float] = []
    lock = threading.Lock()

    def flood(ip: str, n: int) -> None:
        while not stop.is_set():
            ftp = ExplicitFTPS(context=client_context(), timeout=CONNECT_TIMEOUT)
            try:
                ftp.connect(host, port, source_address=(ip, 0))
                ftp.auth()
                while not stop.is_set():
                    try:
                        ftp.login(srv.user, f"wrong-{ip}-{n}")
                    except ftplib.error_perm:
                        with lock:
                            attempts[0] += 1
            except (ftplib.Error, EOFError, OSError):
                time.sleep(0.05)  # refused, or closed after 6 failures: connect again
            finally:
                close_quietly(ftp)

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                rss.append(rss_mib(pid))
            time.sleep(0.2)

    with sftp_client(srv, timeout=CONNECT_TIMEOUT) as sftp:
        sftp.get_channel().settimeout(TRANSFER_BOUND)
        threads = [threading.Thread(target=sample, daemon=True)]
        threads += [threading.Thread(target=flood, args=(ip, n), daemon=True) for ip, n in FLOODERS]
        started = time.monotonic()
        for t in threads:
            t.start()
        try:
            time.sleep(2)
            t0 = time.monotonic()
            sftp.put(str(src), "/big.bin")
            up = time.monotonic() - t0
            t0 = time.monotonic()
            h = hashlib.sha256()
            with sftp.open("/big.bin", "rb") as f:
                f.prefetch()
                while block := f.read(1 << 20):
                    h.update(block)
            down = time.monotonic() - t0
            assert h.hexdigest() == digest, "the download differs from the upload"

            # The right password still logs in, over both protocols (a retry allowed: a refusal unchecked
            # is what a full queue gives).
            def ftps_right() -> bool:
                try:
                    ftps_login_seconds(srv)
                    return True
                except ftplib.error_perm:
                    return False

            def sftp_right() -> bool:
                try:
                    connect_transport(srv, timeout=CONNECT_TIMEOUT).close()
                    return True
                except paramiko.AuthenticationException:
                    return False

            assert wait_until(ftps_right, timeout=15, interval=0.2), "the right password never logged in over FTPS"
            assert wait_until(sftp_right, timeout=15, interval=0.2), "the right password never logged in over SFTP"
            time.sleep(max(0.0, FLOOD_SECONDS - (time.monotonic() - started)))
        finally:
            stop.set()
            for t in threads:
                t.join(CONNECT_TIMEOUT * 3)
    assert not any(t.is_alive() for t in threads), "a flood thread hangs"
    assert attempts[0] >= 100, f"only {attempts[0]} wrong passwords were answered: the flood did not flood"
    assert up < TRANSFER_BOUND and down < TRANSFER_BOUND, f"20 MB took {up:.1f}s up, {down:.1f}s down under the flood"
    assert rss and max(rss) < RSS_BOUND_MIB, f"server RSS reached {max(rss):.0f} MiB under the flood"
    assert srv.alive()


FAILED_LOGIN_DELAY = 1.5  # seconds before each wrong password is answered
MAX_LOGIN_ATTEMPTS = 6


def test_ftp_closes_the_connection_after_six_failed_logins(alice_servers):
    srv = alice_servers(listen=("ftps=127.0.0.1:0",))
    ftp = open_ftps(srv, login=False, timeout=CONNECT_TIMEOUT)
    try:
        ftp.auth()
        replies, took = [], []
        for i in range(MAX_LOGIN_ATTEMPTS):
            ftp.sendcmd("USER alice")
            start = time.monotonic()
            replies.append(send_raw(ftp, f"PASS wrong-{i}"))
            took.append(time.monotonic() - start)
        assert [r[:3] for r in replies] == ["530"] * (MAX_LOGIN_ATTEMPTS - 1) + ["421"], replies
        assert all(t >= FAILED_LOGIN_DELAY - 0.1 for t in took), (
            f"wrong passwords answered after {[round(t, 2) for t in took]} s; the delay is {FAILED_LOGIN_DELAY} s"
        )
        with pytest.raises((EOFError, OSError, ftplib.Error)):
            ftp.sendcmd("USER alice")
            ftp.sendcmd("PASS " + srv.password)
    finally:
        close_quietly(ftp)
    assert srv.wait_for_log(r"closing connection: too many failed logins", timeout=5), srv.log()[-3000:]


# --------------------------------------------------------------------------------------------------
# FTPS passive ports

PASSIVE_RELEASE = 10.0  # seconds a passive port waits for its data connection


def port_busy(port: int) -> bool:
    """True while something listens on 127.0.0.1:port: a bind with SO_REUSEADDR fails only then (connections
    of earlier transfers, here or in other test runs, may sit in TIME_WAIT on any port of the range)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_passive_port_nobody_connects_to_is_released(alice_servers):
    srv = alice_servers(listen=("ftps=127.0.0.1:0",))
    ftp = open_ftps(srv, timeout=CONNECT_TIMEOUT)
    try:
        # A new PASV (or EPSV) releases the previous port at once.
        for verb, parse in (("PASV", lambda r: parse_pasv_port(r)[1]), ("EPSV", parse_epsv_port)):
            first = parse(send_raw(ftp, verb))
            assert port_busy(first), f"{verb} announced port {first}, but nothing listens there"
            for _ in range(5):
                second = parse(send_raw(ftp, verb))
                if second != first:
                    break
            assert second != first
            assert not port_busy(first), f"port {first} is still held after a second {verb}"
            assert port_busy(second)

        # A port nobody connects to goes back to the pool after 10 s.
        resp = send_raw(ftp, "PASV")
        opened = time.monotonic()
        port = parse_pasv_port(resp)[1]
        assert wait_until(lambda: not port_busy(port), timeout=PASSIVE_RELEASE + 2.5, interval=0.25), (
            f"passive port {port} is still held {PASSIVE_RELEASE + 2.5:.0f}s after PASV with no data connection"
        )
        took = time.monotonic() - opened
        assert took >= PASSIVE_RELEASE - 1.5, f"passive port released after {took:.1f}s: too soon for a slow client"

        # A transfer on the released port fails at once, and the session goes on.
        assert send_raw(ftp, "LIST").startswith("425"), "LIST on a released passive port"
        assert ftp.nlst() == []
    finally:
        close_quietly(ftp, quit=True)
