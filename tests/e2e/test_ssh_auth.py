"""SSH authentication as forgiving as OpenSSH's (issue 15).

A refused key is answered at once and the client may try its next one; a wrong password is answered after
the failed-login delay and password stays among the methods, so the user can retype it; keyboard-interactive
is refused cleanly; after 6 failures on one connection (all methods) the server disconnects with "Too many
authentication failures" and logs it once. The delay stalls only the connection that failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import paramiko
import pytest

from conftest import (
    FerryServer,
    connect_transport,
    have,
    make_keypair,
    run_ferry,
    ssh_options,
    wait_until,
)

AUTH_TIMEOUT = 5.0  # paramiko's wait for each answer: a request left unanswered fails the test in seconds
FAILED_LOGIN_DELAY = 1.5  # the server's default delay before refusing a password
QUICK = 1.0  # an answer without the delay comes well within this
MAX_AUTH_ATTEMPTS = 6  # the default `[limits] max_auth_attempts`


# --------------------------------------------------------------------------------------------------
# helpers


@contextlib.contextmanager
def unauthenticated(server: FerryServer) -> Iterator[paramiko.Transport]:
    """A paramiko Transport after key exchange, before any authentication; closed afterwards."""
    sock = socket.create_connection((server.host, server.port), timeout=AUTH_TIMEOUT)
    t = paramiko.Transport(sock)
    t.banner_timeout = AUTH_TIMEOUT
    t.auth_timeout = AUTH_TIMEOUT
    try:
        t.start_client(timeout=AUTH_TIMEOUT)
        yield t
    finally:
        t.close()


def client_tag(t: paramiko.Transport) -> str:
    """How the server's log names this connection's client: `client=127.0.0.1:PORT`."""
    host, port = t.sock.getsockname()[:2]
    return f"client={host}:{port}"


def log_lines(server: FerryServer, pattern: str, client: str, since: int = 0) -> list[str]:
    """The server's log lines (after byte offset `since`) that match `pattern` and name this client."""
    rx = re.compile(pattern, re.I)
    at = re.compile(re.escape(client) + r"(?!\d)")
    return [line for line in server.log()[since:].splitlines() if rx.search(line) and at.search(line)]


def timed(fn, *args):
    """(exception raised or None, seconds taken) for `fn(*args)`."""
    start = time.monotonic()
    try:
        fn(*args)
        return None, time.monotonic() - start
    except Exception as e:  # noqa: BLE001 - the caller asserts on the exception
        return e, time.monotonic() - start


def openssh_options(server: FerryServer, *keys: Path) -> list[str]:
    """conftest's `ssh_options` without the user's key (it adds it by default), then `-i` for each of `keys`,
    in the order OpenSSH will try them."""
    opts = ssh_options(server)
    cut = opts.index("IdentitiesOnly=yes") - 1  # ssh_options ends with `-o IdentitiesOnly=yes -i KEY`
    return [*opts[:cut], "-o", "IdentitiesOnly=yes", *[a for k in keys for a in ("-i", str(k))]]


def stranger_key(tmp_path: Path, name: str = "stranger") -> paramiko.PKey:
    return paramiko.PKey.from_path(str(make_keypair(tmp_path / "keys", name)))


def assert_sftp_works(t: paramiko.Transport) -> None:
    assert t.is_authenticated()
    sftp = paramiko.SFTPClient.from_transport(t)
    assert sftp is not None
    sftp.get_channel().settimeout(15)
    try:
        assert sftp.normalize(".") == "/"
        sftp.listdir("/")
    finally:
        sftp.close()


class Records(logging.Handler):
    """Collects the messages of one paramiko Transport's log channel."""

    def __init__(self, t: paramiko.Transport):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        channel = f"paramiko.transport.ferry-e2e.{uuid.uuid4().hex[:8]}"
        t.set_log_channel(channel)
        self.logger = logging.getLogger(channel)
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def close(self) -> None:
        self.logger.removeHandler(self)
        super().close()


# --------------------------------------------------------------------------------------------------
# paramiko


def test_refused_key_then_right_key_on_one_transport(shared_server, tmp_path):
    """Issue 15: the attempt after a refused key was never answered (paramiko gave up after 30 s)."""
    right = paramiko.PKey.from_path(str(shared_server.key))
    with unauthenticated(shared_server) as t:
        err, took = timed(t.auth_publickey, shared_server.user, stranger_key(tmp_path))
        assert isinstance(err, paramiko.AuthenticationException), f"unknown key: {err!r}"
        assert not isinstance(err, paramiko.BadAuthenticationType), f"publickey dropped from the methods: {err}"
        assert t.is_active(), "the server hung up after one refused key"

        err2, took2 = timed(t.auth_publickey, shared_server.user, right)
        assert err2 is None, f"the right key after a refused one: {err2!r} after {took2:.1f} s"
        assert took < QUICK, f"a refused key was answered after {took:.2f} s (keys must not be delayed)"
        assert took2 < QUICK, f"the right key was answered after {took2:.2f} s"
        assert_sftp_works(t)


def test_sshclient_tries_key_files_in_order(shared_server, tmp_path):
    """paramiko's SSHClient with several keys, the first one not the user's (an admin's ~/.ssh)."""
    wrong = make_keypair(tmp_path / "keys", "id_wrong")
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    start = time.monotonic()
    try:
        client.connect(
            shared_server.host, port=shared_server.port, username=shared_server.user,
            key_filename=[str(wrong), str(shared_server.key)], look_for_keys=False, allow_agent=False,
            timeout=AUTH_TIMEOUT, banner_timeout=AUTH_TIMEOUT, auth_timeout=AUTH_TIMEOUT,
        )
        took = time.monotonic() - start
        assert took < 3, f"login with the second key took {took:.1f} s"
        sftp = client.open_sftp()
        try:
            assert sftp.normalize(".") == "/"
        finally:
            sftp.close()
    finally:
        client.close()


def test_wrong_password_then_right_password(shared_server):
    """A typo is not fatal: the refusal is delayed, keeps password among the methods, and is logged."""
    with unauthenticated(shared_server) as t:
        tag = client_tag(t)
        before = len(shared_server.log())
        wrong = "wrong-" + uuid.uuid4().hex
        err, took = timed(t.auth_password, shared_server.user, wrong)
        assert isinstance(err, paramiko.AuthenticationException), f"wrong password: {err!r}"
        assert not isinstance(err, paramiko.BadAuthenticationType), (
            f"the server dropped password after one typo: allowed types {err.allowed_types}"
        )
        assert took >= FAILED_LOGIN_DELAY - 0.1, f"a wrong password was refused after {took:.2f} s (no delay)"
        assert t.is_active(), "the server hung up after one wrong password"

        err, took = timed(t.auth_password, shared_server.user, shared_server.password)
        assert err is None, f"the right password after a wrong one: {err!r} after {took:.1f} s"
        assert_sftp_works(t)

    assert wait_until(lambda: log_lines(shared_server, r"\blogin user=.*method=\"?password", tag, before), 5), (
        f"no login line for {tag}:\n{shared_server.log()[before:]}"
    )
    failed = log_lines(shared_server, r"login failed", tag, before)
    assert len(failed) == 1, f"expected one `login failed` line for {tag}, got {failed}"
    assert wrong not in shared_server.log(), "the server logged a password"


def test_seven_wrong_keys_end_in_one_clear_disconnect(shared_server, tmp_path):
    """Six failures (OpenSSH's MaxAuthTries) end the connection with a reason, once in the log."""
    keys = [stranger_key(tmp_path, f"stranger{i}") for i in range(7)]
    before = len(shared_server.log())
    with unauthenticated(shared_server) as t:
        tag = client_tag(t)
        records = Records(t)
        try:
            outcomes = []  # (exception, seconds, still connected) per attempt
            for key in keys:
                err, took = timed(t.auth_publickey, shared_server.user, key)
                outcomes.append((err, took, t.is_active()))
                if not t.is_active() or took > AUTH_TIMEOUT - 0.5:
                    break  # disconnected, or an attempt left unanswered: the next ones would wait as long
            seen = [(repr(e), round(s, 2), active) for e, s, active in outcomes]
            assert all(e is not None for e, _, _ in outcomes), f"a stranger key was accepted: {seen}"
            assert all(s < AUTH_TIMEOUT - 0.5 for _, s, _ in outcomes), f"an attempt was never answered: {seen}"
            for i, (err, took, active) in enumerate(outcomes[: MAX_AUTH_ATTEMPTS - 1]):
                assert isinstance(err, paramiko.AuthenticationException), f"key {i + 1}: {seen}"
                assert not isinstance(err, paramiko.BadAuthenticationType), f"key {i + 1}: {seen}"
                assert active, f"disconnected after {i + 1} failures, before the limit: {seen}"
            assert wait_until(lambda: not t.is_active(), 5), f"connected after {len(outcomes)} refused keys: {seen}"
            assert len(outcomes) in (MAX_AUTH_ATTEMPTS, MAX_AUTH_ATTEMPTS + 1), seen
            assert all(s < QUICK for _, s, _ in outcomes), f"refused keys answered slowly (a delay?): {seen}"
            assert any("Too many authentication failures" in m for m in records.messages), (
                f"the client saw no disconnect reason: {records.messages}"
            )
        finally:
            records.close()

        err, _ = timed(t.auth_publickey, shared_server.user, keys[-1])
        assert isinstance(err, (paramiko.SSHException, EOFError)), f"an attempt after the disconnect: {err!r}"

    assert wait_until(lambda: log_lines(shared_server, r"too many authentication failures", tag, before), 5), (
        f"no `too many authentication failures` line for {tag}:\n{shared_server.log()[before:]}"
    )
    time.sleep(0.3)  # a second line would come right after the first
    lines = log_lines(shared_server, r"too many authentication failures", tag, before)
    assert len(lines) == 1, f"expected one line for {tag}, got:\n" + "\n".join(lines)

    t = connect_transport(shared_server, key=shared_server.key, timeout=AUTH_TIMEOUT)
    try:
        assert_sftp_works(t)
    finally:
        t.close()


def test_keyboard_interactive_refused_cleanly_then_password(shared_server):
    """PuTTY-based clients (FileZilla, WinSCP) try keyboard-interactive first: a prompt refusal, then password."""
    with unauthenticated(shared_server) as t:
        err, took = timed(t.auth_interactive, shared_server.user, lambda title, instr, prompts: [""] * len(prompts))
        assert isinstance(err, paramiko.BadAuthenticationType), f"keyboard-interactive: {err!r} after {took:.1f} s"
        assert set(err.allowed_types) == {"publickey", "password"}, err.allowed_types
        err2, took2 = timed(t.auth_password, shared_server.user, shared_server.password)
        assert err2 is None, f"password after keyboard-interactive: {err2!r} after {took2:.1f} s"
        assert_sftp_works(t)
        assert took < QUICK, f"keyboard-interactive was refused after {took:.2f} s"


def test_failed_password_delay_stalls_only_its_connection(shared_server):
    """Another client logging in while one waits out its failed-password delay is not slowed."""
    with unauthenticated(shared_server) as slow:
        result: dict = {}

        def wrong_password() -> None:
            result["err"], result["took"] = timed(slow.auth_password, shared_server.user, "wrong-" + uuid.uuid4().hex)
            result["done"] = time.monotonic()

        waiter = threading.Thread(target=wrong_password, name="wrong-password", daemon=True)
        waiter.start()
        time.sleep(0.2)  # the wrong password is on its way: the server now waits out the delay
        start = time.monotonic()
        t = connect_transport(shared_server, key=shared_server.key, timeout=AUTH_TIMEOUT)
        took = time.monotonic() - start
        try:
            assert_sftp_works(t)
        finally:
            t.close()
        waiter.join(AUTH_TIMEOUT + 2)
        assert not waiter.is_alive(), "the wrong password was never answered"
        assert isinstance(result["err"], paramiko.AuthenticationException), result
        assert result["took"] >= FAILED_LOGIN_DELAY - 0.1, f"wrong password refused after {result['took']:.2f} s"
        assert result["done"] > start + took, "the other login did not overlap the delay: the test proves nothing"
        assert took < QUICK, f"a login during another connection's failed-password delay took {took:.2f} s"


# --------------------------------------------------------------------------------------------------
# OpenSSH


def sftp_with_keys(server: FerryServer, keys: list[Path]) -> tuple[subprocess.CompletedProcess, list[str]]:
    """OpenSSH `sftp -v` offering `keys` in order (public key only), running `ls -a /`: (the process, the key
    files it offered, in order, from its debug output)."""
    cmd = [
        "sftp", "-v", "-b", "-", "-P", str(server.port), *openssh_options(server, *keys),
        "-o", "PreferredAuthentications=publickey", "-o", "BatchMode=yes", f"{server.user}@{server.host}",
    ]
    proc = subprocess.run(cmd, input="ls -a /\n", capture_output=True, text=True, timeout=30)
    offered = re.findall(r"^debug1: Offering public key: (\S+)", proc.stderr, re.M)
    return proc, offered


def test_openssh_two_keys_wrong_one_first(shared_server, tmp_path):
    wrong = make_keypair(tmp_path / "keys", "id_wrong")
    proc, offered = sftp_with_keys(shared_server, [wrong, shared_server.key])
    assert proc.returncode == 0, f"sftp exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "sftp> ls -a /" in proc.stdout, proc.stdout
    assert offered == [str(wrong), str(shared_server.key)], f"the keys offered: {offered}"


@pytest.mark.parametrize("wrong_keys", [MAX_AUTH_ATTEMPTS - 1, MAX_AUTH_ATTEMPTS])
def test_openssh_wrong_keys_count_towards_the_limit(shared_server, tmp_path, wrong_keys):
    """OpenSSH only queries with unknown keys: the refused queries count (the first `none` probe does not).
    Five wrong keys leave room for the right one; six end the connection as OpenSSH's sshd does."""
    wrong = [make_keypair(tmp_path / "keys", f"id_wrong{i}") for i in range(wrong_keys)]
    before = len(shared_server.log())
    proc, offered = sftp_with_keys(shared_server, [*wrong, shared_server.key])
    assert offered[:wrong_keys] == [str(k) for k in wrong], f"the keys offered: {offered}"
    if wrong_keys < MAX_AUTH_ATTEMPTS:
        assert proc.returncode == 0, f"sftp exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
        assert "sftp> ls -a /" in proc.stdout, proc.stdout
    else:
        assert proc.returncode != 0, f"logged in after {wrong_keys} refused keys\n{proc.stdout}"
        assert "Too many authentication failures" in proc.stderr, proc.stderr[-3000:]
        assert shared_server.wait_for_log(r"too many authentication failures", 5, since=before), (
            shared_server.log()[before:]
        )


def test_openssh_password_retyped_through_askpass(shared_server, tmp_path):
    """OpenSSH with a typo first, then the right password (SSH_ASKPASS, as a person retyping it)."""
    (tmp_path / "wrong").write_text("wrong-" + uuid.uuid4().hex + "\n")
    (tmp_path / "right").write_text(shared_server.password + "\n")
    count = tmp_path / "askpass.count"
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{count}" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "{count}"\n'
        f'if [ "$n" -eq 1 ]; then cat "{tmp_path / "wrong"}"; else cat "{tmp_path / "right"}"; fi\n'
    )
    askpass.chmod(0o755)
    (tmp_path / "batch").write_text("ls -a /\n")
    cmd = [
        "sftp", "-o", "BatchMode=no", "-b", str(tmp_path / "batch"), "-P", str(shared_server.port),
        *openssh_options(shared_server),
        "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
        "-o", "NumberOfPasswordPrompts=3",
        f"{shared_server.user}@{shared_server.host}",
    ]
    env = dict(os.environ, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
    before = len(shared_server.log())
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, env=env, start_new_session=True
    )
    asked = int(count.read_text()) if count.exists() else 0
    assert proc.returncode == 0, f"sftp exited {proc.returncode} after {asked} prompts\n{proc.stdout}\n{proc.stderr}"
    assert asked == 2, f"askpass was run {asked} times (expected: the typo, then the right password)"
    assert "sftp> ls -a /" in proc.stdout, proc.stdout
    failed = rf"login failed.*user=\"?{re.escape(shared_server.user)}\b.*method=\"?password"
    assert shared_server.wait_for_log(failed, 5, since=before), shared_server.log()[before:]


# --------------------------------------------------------------------------------------------------
# PuTTY


NEEDS_PSFTP = pytest.mark.skipif(
    not have("psftp") or not have("puttygen"),
    reason="PuTTY's psftp is not installed (scripts/test installs putty-tools)",
)


@NEEDS_PSFTP
@pytest.mark.parametrize("wrong_key_first", [False, True], ids=["password", "refused-key-then-password"])
def test_psftp_password_login(shared_server, rdir, tmp_path, wrong_key_first):
    """PuTTY's psftp (the SSH core of FileZilla and WinSCP) logs in with a password and uploads."""
    fp = dict(shared_server.host_keys)["ssh-ed25519"]
    (tmp_path / "pw").write_text(shared_server.password + "\n")
    (tmp_path / "up.txt").write_text("from psftp\n")
    (tmp_path / "batch").write_text(f"cd {rdir.remote}\nput up.txt\nls\n")
    home = tmp_path / "home"  # PuTTY keeps its settings and host keys under $HOME/.putty
    home.mkdir()
    cmd = [
        "psftp", "-P", str(shared_server.port), "-l", shared_server.user, "-pwfile", str(tmp_path / "pw"),
        "-batch", "-noagent", "-hostkey", fp, "-b", str(tmp_path / "batch"),
    ]
    if wrong_key_first:
        wrong = make_keypair(tmp_path / "keys", "id_wrong")
        ppk = tmp_path / "keys" / "id_wrong.ppk"
        subprocess.run(["puttygen", str(wrong), "-O", "private", "-o", str(ppk)], check=True, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=30, env=dict(os.environ, HOME=str(home)))
        cmd += ["-i", str(ppk), "-v"]
    cmd.append(shared_server.host)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, cwd=tmp_path,
                          env=dict(os.environ, HOME=str(home)))
    assert proc.returncode == 0, f"psftp exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert (rdir.local / "up.txt").read_text() == "from psftp\n"
    assert "up.txt" in proc.stdout, proc.stdout
    if wrong_key_first:
        assert "refused our key" in proc.stderr, f"psftp did not try the key first:\n{proc.stderr}"


# --------------------------------------------------------------------------------------------------
# ssh-rsa (SHA-1) signatures


def test_ssh_rsa_sha1_signatures_are_refused_even_with_the_legacy_set(alice_servers, ferry, tmp_path, monkeypatch):
    """As OpenSSH since 8.8: an RSA key signs in with rsa-sha2-256/512, never with SHA-1. The legacy set makes
    the server list ssh-rsa in server-sig-algs (for its host key), so clients do try it there."""
    from test_keys_algorithms import readme_legacy_set

    srv = alice_servers(listen=("sftp=127.0.0.1:0",), config=readme_legacy_set())
    rsa = make_keypair(tmp_path / "keys", "id_rsa", key_type="rsa")
    run_ferry(ferry, srv.data_dir, "user", "key", "add", "alice", str(rsa) + ".pub")
    before = len(srv.log())

    def openssh(algorithms: str) -> subprocess.CompletedProcess:
        cmd = ["sftp", "-b", "-", "-P", str(srv.port), *openssh_options(srv, rsa), "-o", "BatchMode=yes",
               "-o", f"PubkeyAcceptedAlgorithms={algorithms}", "-o", "PreferredAuthentications=publickey",
               f"alice@{srv.host}"]
        return subprocess.run(cmd, input="ls -a /\n", capture_output=True, text=True, timeout=30)

    sha1 = openssh("ssh-rsa")
    assert sha1.returncode != 0, f"OpenSSH logged in with an ssh-rsa (SHA-1) signature:\n{sha1.stdout}"
    assert "Permission denied" in sha1.stderr, sha1.stderr
    sha2 = openssh("rsa-sha2-512,rsa-sha2-256")
    assert sha2.returncode == 0, f"the same RSA key with rsa-sha2 was refused:\n{sha2.stderr}"

    # paramiko signs without asking first: the server checks the signature's algorithm before the key.
    monkeypatch.setitem(paramiko.RSAKey.HASHES, "ssh-rsa", __import__("cryptography.hazmat.primitives.hashes",
                                                                      fromlist=["SHA1"]).SHA1)
    with unauthenticated(srv) as t:
        tag = client_tag(t)
        t._preferred_pubkeys = ("ssh-rsa",)
        wait_until(lambda: "server-sig-algs" in t.server_extensions, 5)
        assert "ssh-rsa" in t.server_extensions.get("server-sig-algs", b"").decode(), t.server_extensions
        err, _ = timed(t.auth_publickey, "alice", paramiko.PKey.from_path(str(rsa)))
        assert isinstance(err, paramiko.AuthenticationException), f"an ssh-rsa signature: {err!r}"
        assert t.is_active(), "a refused signature algorithm ended the connection: the client may try another key"
    time.sleep(0.2)
    assert not log_lines(srv, r"\blogin user=", tag, before), srv.log()[before:]
    logins = re.findall(r"\bINFO login user=alice .*method=\"?publickey", srv.log()[before:])
    assert len(logins) == 1, f"only the rsa-sha2 login may succeed: {logins}"
