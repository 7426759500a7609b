"""README promises that no other file guarded (issue 14): each test fails when the promise breaks.

Shutdown (SIGTERM and Ctrl-C wait for running transfers, for `shutdown_grace_secs`), one `ferry serve` per data
dir, what `ferry user add` does without options, argon2id hashes on disk, the defaults the README's tables
state, `max_connections`' refusal, single-protocol listeners that never wait while multi-protocol ones wait
`detection_wait_ms`, RSA host key sizes, `config check`'s exit codes and the README's own error example,
colour only on a terminal and never with NO_COLOR, and RUST_LOG.
"""

from __future__ import annotations

import datetime
import os
import pty
import re
import select
import signal
import socket
import sqlite3
import subprocess
import time
import tomllib
from pathlib import Path

import paramiko
import pytest

from conftest import (
    REPO_ROOT,
    FerryServer,
    add_user,
    clean_env,
    connect_transport,
    disk_entries,
    list_users,
    new_password,
    run_ferry,
    sftp_client,
    wait_until,
)
from ftps_helpers import client_context, close_quietly, ftps_session, open_ftps

pytestmark = pytest.mark.timeout(90)

TIMEOUT = 10.0  # one client operation
EXIT_BOUND = 10.0  # seconds for a server with nothing left to wait for to exit
DEFAULT_GRACE = 30  # README: "lets running transfers finish (30 s by default)"


def readme() -> str:
    return (REPO_ROOT / "README.md").read_text()


def sftp_refused(srv: FerryServer) -> bool:
    """True when nothing accepts connections on the server's SFTP port any more."""
    try:
        socket.create_connection(srv.listeners["sftp"], timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# --------------------------------------------------------------------------------------------------
# Shutdown: "SIGTERM or Ctrl-C stops accepting connections, lets running transfers finish (30 s by default)
# and exits 0."


def test_sigterm_lets_running_sftp_and_ftps_uploads_finish_then_exits_zero(alice_servers):
    srv = alice_servers(listen=("sftp=127.0.0.1:0", "ftps=127.0.0.1:0"))
    first, second = os.urandom(600_000), os.urandom(600_000)  # FTPS writes 256 KiB chunks
    # Not context managers: once the last transfer is over the server exits and closes both sessions, so a
    # goodbye (SFTP close, QUIT) afterwards meets a closed connection, as it should.
    t = connect_transport(srv, timeout=TIMEOUT)
    ftp = open_ftps(srv, timeout=TIMEOUT)
    try:
        sftp = paramiko.SFTPClient.from_transport(t)
        sftp.get_channel().settimeout(TIMEOUT)
        up = sftp.open("/sftp.bin", "w")
        up.write(first)
        sftp.stat("/sftp.bin")  # a round trip: the WRITE before it has been answered
        ftp.voidcmd("TYPE I")
        data = ftp.transfercmd("STOR /ftps.bin")
        data.sendall(first)
        # The server is in the transfer once bytes are on disk (standard mode shows them at once).
        assert wait_until(lambda: (srv.root / "ftps.bin").exists()
                          and (srv.root / "ftps.bin").stat().st_size >= 256 * 1024, timeout=5)
        since = len(srv.log())
        srv.proc.send_signal(signal.SIGTERM)
        line = srv.wait_for_log(r"shutting down: no new connections; waiting up to (\d+)s for 2 open transfer",
                                timeout=5, since=since)
        assert line is not None, f"no shutdown line naming the 2 running transfers:\n{srv.log()[since:]}"
        assert f"waiting up to {DEFAULT_GRACE}s" in line, f"the default grace is {DEFAULT_GRACE}s: {line}"
        assert wait_until(lambda: sftp_refused(srv), timeout=5), "still accepting connections after SIGTERM"
        time.sleep(1.0)
        assert srv.alive(), f"exited with two uploads running (exit {srv.proc.poll()})"
        # Both uploads go on and complete.
        up.write(second)
        up.close()
        data.sendall(second)
        data.unwrap()  # TLS close_notify: the upload is complete
        data.close()
        assert ftp.voidresp().startswith("226")
    finally:
        t.close()
        close_quietly(ftp)
    assert (srv.root / "sftp.bin").read_bytes() == first + second
    assert (srv.root / "ftps.bin").read_bytes() == first + second
    try:
        code = srv.proc.wait(EXIT_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ferry serve still runs {EXIT_BOUND:.0f}s after its last transfer ended\n{srv.log()[-3000:]}")
    assert code == 0, f"exit {code} after SIGTERM\n{srv.log()[-3000:]}"
    assert srv.stop() == 0


GRACE = 1


def test_ctrl_c_closes_transfers_still_running_after_the_grace_period(alice_servers):
    """SIGINT (Ctrl-C) with `shutdown_grace_secs = 1`: a replacing upload still open after the grace is cut off,
    the server exits 0, and the previous file is what is on disk, with no hidden file left."""
    srv = alice_servers(listen=("sftp=127.0.0.1:0",), config=f"[server]\nshutdown_grace_secs = {GRACE}\n")
    old = b"the previous, good version\n" * 1000
    (srv.root / "report.txt").write_bytes(old)
    t = connect_transport(srv, timeout=TIMEOUT)
    try:
        sftp = paramiko.SFTPClient.from_transport(t)
        sftp.get_channel().settimeout(TIMEOUT)
        up = sftp.open("/report.txt", "w")
        up.write(b"half of a new version")
        sftp.stat("/report.txt")
        since = len(srv.log())
        signalled = time.monotonic()
        srv.proc.send_signal(signal.SIGINT)
        try:
            code = srv.proc.wait(GRACE + EXIT_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {GRACE + EXIT_BOUND:.0f}s after SIGINT with shutdown_grace_secs = {GRACE}")
        took = time.monotonic() - signalled
    finally:
        t.close()
    assert code == 0, f"exit {code} after SIGINT\n{srv.log()[-3000:]}"
    assert took >= GRACE - 0.2, f"exited {took:.2f}s after SIGINT, before the {GRACE}s grace was over"
    log = srv.log()[since:]
    assert f"waiting up to {GRACE}s for 1 open transfer" in log, log
    assert re.search(r"grace period over: closing 1 transfer", log), log
    srv.stop()
    assert (srv.root / "report.txt").read_bytes() == old, "a cut-off upload took the place of the previous file"
    assert disk_entries(srv.root) == ["report.txt"], "a hidden file was left behind"


# --------------------------------------------------------------------------------------------------
# One server per data dir


def test_a_second_serve_on_the_same_data_dir_is_refused(alice_servers):
    srv = alice_servers(listen=("sftp=127.0.0.1:0",))
    proc = subprocess.run(
        [str(srv.ferry), "--data-dir", str(srv.data_dir), "serve", "--listen", "sftp=127.0.0.1:0"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, env=clean_env(),
    )
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "ready" not in proc.stdout.split(), proc.stdout
    assert "another `ferry serve` is already using the data dir" in proc.stderr, proc.stderr
    assert re.search(r"^hint: ", proc.stderr, re.M), proc.stderr
    with sftp_client(srv, timeout=TIMEOUT) as sftp:  # the first one is unharmed
        sftp.listdir("/")


# --------------------------------------------------------------------------------------------------
# Users


def test_user_add_without_options_generates_a_password_and_with_a_key_none(ferry, tmp_path, alice_servers):
    srv = alice_servers(listen=("sftp=127.0.0.1:0",))
    out = run_ferry(ferry, srv.data_dir, "user", "add", "erin").stdout
    m = re.search(r"^password: (\S+)$", out, re.M)
    assert m, f"`user add` with no password option and no key printed no password:\n{out}"
    with sftp_client(srv, user="erin", password=m.group(1), timeout=TIMEOUT) as sftp:
        sftp.listdir("/")
    keyed = run_ferry(ferry, srv.data_dir, "user", "add", "frank", "--public-key", str(srv.key) + ".pub").stdout
    assert "password" not in keyed, f"a user with a key got a password:\n{keyed}"
    listed = {line.split("\t")[0]: line.split("\t")[1] for line in run_ferry(ferry, srv.data_dir, "user", "list")
              .stdout.splitlines()}
    assert listed["erin"] == "password" and listed["frank"] == "1 key(s)", listed


def test_passwords_are_stored_as_argon2id(ferry, tmp_path):
    data = tmp_path / "data"
    password = new_password()
    add_user(ferry, data, "alice", password=password)
    run_ferry(ferry, data, "user", "passwd", "alice", "--password-stdin", input=password + "x\n")
    with sqlite3.connect(data / "users.db") as db:
        (stored,) = db.execute("SELECT password_hash FROM users WHERE name = 'alice'").fetchone()
    db.close()
    assert stored.startswith("$argon2id$"), f"not an argon2id hash: {stored[:20]}..."
    assert password not in stored
    on_disk = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert password.encode() not in on_disk, "the password is on disk in clear"


def test_default_data_dir_is_ferry_data_in_the_working_directory(ferry, tmp_path):
    env = clean_env()
    proc = subprocess.run([str(ferry), "user", "add", "alice", "--password-stdin"], input=new_password() + "\n",
                          capture_output=True, text=True, timeout=30, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ferry-data" / "users.db").is_file(), disk_entries(tmp_path)
    assert (tmp_path / "ferry-data" / "files" / "alice").is_dir(), disk_entries(tmp_path)


# --------------------------------------------------------------------------------------------------
# Defaults as the README states them


def readme_table_defaults() -> dict[str, str]:
    """`| `setting` | default | ...` rows of the README's tables ([limits], [sftp] algorithms): setting -> text."""
    return {name: value.strip("`") for name, value in
            re.findall(r"^\| `(\w+)` \| (`?\"?[^|`]+\"?`?) \|", readme(), re.M)}


def readme_limits() -> dict[str, object]:
    """The `[limits]` table of the README: setting -> default (TOML value)."""
    table = {name: tomllib.loads(f"v = {value}")["v"] for name, value in readme_table_defaults().items()
             if name in ("login_grace_secs", "per_source_max_startups", "max_startups", "max_connections")}
    assert len(table) == 4, readme_table_defaults()
    return table


def test_config_init_shows_the_defaults_the_readme_states(ferry, tmp_path):
    template = run_ferry(ferry, None, "config", "init").stdout
    # `config init FILE` writes the same annotated file, and it is a configuration `config check` accepts.
    written = tmp_path / "ferry.toml"
    run_ferry(ferry, None, "config", "init", written)
    assert written.read_text() == template
    again = run_ferry(ferry, None, "config", "init", written, check=False)
    assert again.returncode == 2 and "--force" in again.stderr, again
    check = run_ferry(ferry, tmp_path / "data", "--config", written, "config", "check")
    assert check.stdout.rstrip().endswith("configuration OK"), check.stdout
    conf = tomllib.loads(template)
    limits = readme_limits()
    for name in ("login_grace_secs", "per_source_max_startups", "max_startups", "max_connections"):
        assert conf["limits"][name] == limits[name], f"[limits] {name}: README {limits[name]!r}, config init {conf['limits'][name]!r}"
    text = readme()
    # "--passive-ports (default `50000-51000`)", "(30 s by default)", "for 150 ms (`server.detection_wait_ms`)"
    assert "`--passive-ports`\n(default `50000-51000`)" in text or "(default `50000-51000`)" in text
    assert conf["server"]["passive_ports"] == "50000-51000"
    assert conf["server"]["shutdown_grace_secs"] == DEFAULT_GRACE and "(30 s by default)" in text
    assert conf["server"]["detection_wait_ms"] == 150 and "for 150 ms\n(`server.detection_wait_ms`)" in text
    # "[uploads] umask (default "022")", mode "standard" (the default), keep_partial = false
    assert conf["uploads"] == {"mode": "standard", "keep_partial": False, "umask": "022"}, conf["uploads"]
    assert '(default `"022"`' in text
    # The quickstart's listeners: 2222, 2121 and 9990, each serving all three protocols.
    assert conf["server"]["listeners"] == [{"protocols": "any", "address": f"0.0.0.0:{p}"} for p in (2222, 2121, 9990)]
    assert conf["ftps"]["require_session_reuse"] is False


def test_config_check_prints_the_algorithm_lists_the_readme_states(ferry, tmp_path):
    """README "SSH algorithms": the default lists, in order; `ferry config check` prints the lists in effect."""
    table = readme_table_defaults()
    out = run_ferry(ferry, tmp_path / "data", "config", "check").stdout
    template = run_ferry(ferry, None, "config", "init").stdout
    for key in ("kex", "ciphers", "macs"):
        want = ",".join(n.strip() for n in table[key].split(","))
        assert f"ssh {key}: {want}\n" in out, f"README [sftp] {key} = {want}; config check says:\n{out}"
        assert f'# {key} = "{want}"\n' in template, f"config init does not show {key} = {want}"


def test_limits_readme_table_matches_the_refusal_texts(ferry):
    """The "what the client sees" column is what the server sends (the strings are checked live elsewhere)."""
    text = readme()
    for said in ("Too many connections from your address that have not logged in; try again later",
                 "Too many connections are logging in; try again later", "Too many connections; try again later",
                 "421 No login within 60s", "login timed out"):
        assert said in text, said


def test_max_connections_refuses_with_the_documented_words(alice_servers):
    srv = alice_servers(listen=("sftp=127.0.0.1:0", "ftps=127.0.0.1:0"), config="[limits]\nmax_connections = 2\n")
    held = [connect_transport(srv, timeout=TIMEOUT) for _ in range(2)]
    try:
        for proto, want in (("ftps", b"421 Too many connections; try again later\r\n"),
                            ("sftp", b"Too many connections; try again later\r\n")):
            with socket.create_connection(srv.listeners[proto], timeout=TIMEOUT) as s:
                got = b""
                while chunk := s.recv(4096):
                    got += chunk
            assert got == want, f"{proto}: {got!r}"
        line = srv.wait_for_log(r"hint: refusing connections: the server holds its maximum of connections "
                                r"\(\[limits\] max_connections\)", timeout=5)
        assert line is not None and "127.0.0.1" in line, srv.log()[-2000:]
        assert all(t.is_active() for t in held), "the logged-in sessions were hurt"
    finally:
        for t in held:
            t.close()
    assert wait_until(lambda: _logs_in(srv), timeout=5), "closed sessions did not give their places back"


def _logs_in(srv: FerryServer) -> bool:
    try:
        connect_transport(srv, timeout=TIMEOUT).close()
        return True
    except (paramiko.SSHException, EOFError, OSError):
        return False


# --------------------------------------------------------------------------------------------------
# Detection: "A single-protocol listener behaves exactly as the standard says and adds no delay"; a
# multi-protocol one greets a silent client after `server.detection_wait_ms`.

WAIT_MS = 1500


def first_line_after(addr: tuple[str, int], limit: float = 8.0) -> tuple[float, bytes]:
    start = time.monotonic()
    with socket.create_connection(addr, timeout=limit) as s:
        data = b""
        while b"\n" not in data:
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
    return time.monotonic() - start, data


def test_single_protocol_listeners_never_wait_and_multi_protocol_ones_wait_detection_wait_ms(alice_servers):
    srv = alice_servers(
        listen=("sftp=127.0.0.1:0", "ftps=127.0.0.1:0", "ftps-implicit=127.0.0.1:0", "any=127.0.0.2:0"),
        config=f"[server]\ndetection_wait_ms = {WAIT_MS}\n",
    )
    # Two listeners serve SFTP (and two FTPS): read which is which from the `listening` lines.
    lines = re.findall(r"^listening (\S+) on (127\.0\.0\.[12]):(\d+)$", srv.stdout(), re.M)
    single = {p: (h, int(port)) for p, h, port in lines if h == "127.0.0.1"}
    multi = {(h, int(port)) for p, h, port in lines if h == "127.0.0.2"}
    assert len(multi) == 1 and set(single) == {"sftp", "ftps", "ftps-implicit"}, lines
    (multi_addr,) = multi
    took, line = first_line_after(single["sftp"])
    assert line.startswith(b"SSH-2.0-") and took < 1.0, (took, line)
    took, line = first_line_after(single["ftps"])
    assert line.startswith(b"220") and took < 1.0, (took, line)
    # The one exception: an implicit-FTPS port greets a client that sends nothing, after the wait.
    took, line = first_line_after(single["ftps-implicit"])
    assert line.startswith(b"220") and took >= WAIT_MS / 1000 - 0.1, (took, line)
    took, line = first_line_after(multi_addr)
    assert line.startswith(b"220") and WAIT_MS / 1000 - 0.1 <= took < WAIT_MS / 1000 + 3, (took, line)


# --------------------------------------------------------------------------------------------------
# Host keys: "an RSA host key under 2048 bits is refused, under 3072 warned about"


def rsa_key(directory: Path, bits: int) -> Path:
    path = directory / f"rsa{bits}"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", str(bits), "-N", "", "-f", str(path)], check=True,
                   capture_output=True, timeout=60)
    return path


def test_short_rsa_host_keys_are_refused_or_warned_about(ferry, tmp_path, alice_servers):
    short, fair = rsa_key(tmp_path, 1024), rsa_key(tmp_path, 2048)
    conf = tmp_path / "short.toml"
    conf.write_text(f'[sftp]\nhost_keys = ["{short}"]\n')
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.run([str(ferry), "--data-dir", str(data), "--config", str(conf), "serve", "--listen",
                           "sftp=127.0.0.1:0"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                          env=clean_env())
    assert proc.returncode != 0 and "ready" not in proc.stdout.split(), proc.stdout + proc.stderr
    assert f"host key {short} is RSA 1024: too short" in proc.stderr and "hint:" in proc.stderr, proc.stderr
    check = run_ferry(ferry, data, "--config", conf, "config", "check", check=False)
    assert check.returncode == 1 and "RSA 1024" in check.stdout, check

    srv = alice_servers(listen=("sftp=127.0.0.1:0",), config=f'[sftp]\nhost_keys = ["{fair}"]\n')
    line = srv.wait_for_log(r"hint: host key is RSA 2048; ssh-audit warns below 3072 bits", timeout=5)
    assert line is not None, srv.log()
    assert [a for a, _ in srv.host_keys] == ["ssh-rsa"], srv.stdout()


# --------------------------------------------------------------------------------------------------
# `ferry config check` exits 1 on a problem, and a configuration mistake is refused with file, line, key, hint


def test_readme_example_of_a_refused_configuration(ferry, tmp_path):
    conf = tmp_path / "ferry.toml"
    conf.write_text('[server]\nlisteners = [\n  { protocols = "sftp", address = "nowhere" },\n]\n')
    want = f'{conf}:3: server.listeners[0].address: "nowhere" is not an address with a port'
    assert 'ferry.toml:3: server.listeners[0].address: "nowhere" is not an address with a port' in readme()
    for args in (("config", "check"), ("serve",)):
        proc = run_ferry(ferry, tmp_path / "data", "--config", conf, *args, check=False, timeout=30)
        assert proc.returncode == 2, f"{args}: exit {proc.returncode}\n{proc.stderr}"
        assert want in proc.stderr and re.search(r"^hint: ", proc.stderr, re.M), proc.stderr


def test_config_check_exits_1_when_no_host_key_can_be_offered(ferry, tmp_path, alice_servers):
    srv = alice_servers(listen=("sftp=127.0.0.1:0",))
    srv.stop()
    conf = tmp_path / "ecdsa-only.toml"
    conf.write_text('[sftp]\nhost_key_algorithms = "ecdsa-sha2-nistp256"\n')
    check = run_ferry(ferry, srv.data_dir, "--config", conf, "config", "check", check=False)
    assert check.returncode == 1, check
    assert "problem: no host key can be offered" in check.stdout, check.stdout
    ok = run_ferry(ferry, srv.data_dir, "config", "check", check=False)
    assert ok.returncode == 0 and ok.stdout.rstrip().endswith("configuration OK"), ok


def ec_cert(directory: Path, name: str, not_before: datetime.datetime, not_after: datetime.datetime) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for localhost valid between the two dates, and its key (0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_config_check_exits_1_on_an_expired_certificate_or_a_key_that_does_not_fit(ferry, tmp_path):
    listeners = '[server]\nlisteners = [{ protocols = "ftps", address = "127.0.0.1:0" }]\n'
    now = datetime.datetime.now(datetime.timezone.utc)
    good_cert, good_key = ec_cert(tmp_path, "good", now - datetime.timedelta(days=1), now + datetime.timedelta(days=90))
    _, other_key = ec_cert(tmp_path, "other", now - datetime.timedelta(days=1), now + datetime.timedelta(days=90))
    expired_cert, expired_key = ec_cert(tmp_path, "expired", now - datetime.timedelta(days=60),
                                        now - datetime.timedelta(days=30))
    data = tmp_path / "data"
    data.mkdir()
    results = {}
    for name, cert, key in (("good", good_cert, good_key), ("mismatch", good_cert, other_key),
                            ("expired", expired_cert, expired_key)):
        conf = tmp_path / f"{name}.toml"
        conf.write_text(listeners + f'[ftps]\ncert = "{cert}"\nkey = "{key}"\n')
        results[name] = run_ferry(ferry, data, "--config", conf, "config", "check", check=False)
    assert results["good"].returncode == 0, results["good"]
    for name in ("mismatch", "expired"):
        proc = results[name]
        assert proc.returncode == 1, f"{name}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert re.search(r"^problem: ", proc.stdout, re.M) and re.search(r"^  hint: ", proc.stdout, re.M), proc.stdout
    assert "expired" in results["expired"].stdout, results["expired"].stdout


# --------------------------------------------------------------------------------------------------
# Logs: "set RUST_LOG=debug for more, NO_COLOR=1 for no colour"


def serve_on_a_terminal(ferry: Path, data: Path, password: str, env_extra: dict) -> bytes:
    """Runs `serve` with stderr on a pseudo-terminal until `ready`, fails a login, logs in and lists /, stops it;
    returns what it wrote to stderr."""
    master, slave = pty.openpty()
    env = clean_env()
    env.pop("NO_COLOR", None)
    env.pop("RUST_LOG", None)
    env.update(env_extra)
    proc = subprocess.Popen([str(ferry), "--data-dir", str(data), "serve", "--listen", "sftp=127.0.0.1:0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 30
        port = None
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if m := re.match(r"^listening sftp on 127\.0\.0\.1:(\d+)", line):
                port = int(m.group(1))
            if line.strip() == "ready" or not line:
                break
        assert port is not None, "serve did not print its port"
        srv = FerryServer(ferry, data, data / "unused.log")
        srv.listeners["sftp"] = ("127.0.0.1", port)
        srv.user = "alice"
        with pytest.raises(paramiko.AuthenticationException):
            connect_transport(srv, password="wrong", timeout=TIMEOUT)
        with sftp_client(srv, password=password, timeout=TIMEOUT) as sftp:
            sftp.listdir("/")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(EXIT_BOUND) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
    return out


def test_colour_only_on_a_terminal_and_never_with_no_color_and_rust_log_debug_says_more(ferry, tmp_path):
    data = tmp_path / "data"
    password = new_password()
    add_user(ferry, data, "alice", password=password)
    coloured = serve_on_a_terminal(ferry, data, password, {})
    assert b"login failed" in coloured, coloured[-2000:]
    assert b"\x1b[" in coloured, "no colour on a terminal"
    assert not re.search(rb"\bDEBUG\b", coloured), "debug lines without RUST_LOG"
    plain = serve_on_a_terminal(ferry, data, password, {"NO_COLOR": "1", "RUST_LOG": "debug"})
    assert b"login failed" in plain, plain[-2000:]
    assert b"\x1b" not in plain, f"colour despite NO_COLOR=1: {plain[:300]!r}"
    assert re.search(rb"\bDEBUG\b", plain), f"RUST_LOG=debug added no debug line: {plain[-2000:]!r}"
