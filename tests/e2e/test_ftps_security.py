"""Ferry's FTPS against bad inputs and hostile clients: TLS before credentials, replies to broken commands,
data connections from elsewhere, PORT bouncing, the jail, cut-off uploads, and the opt-in plain FTP."""

from __future__ import annotations

import ftplib
import os
import select
import socket
import ssl
import struct
import time
import uuid

import pytest

from conftest import upload_temp_files, wait_until
from ftps_helpers import (
    client_context,
    close_quietly,
    command_code,
    ftp_addr,
    ftps_session,
    open_ftps,
    parse_pasv_port,
    reply_code,
    retr_bytes,
    stor_bytes,
    try_retr,
)

OLD = b"the previous, good version of the file\n" * 1000
CLEAR_TEXT_WARNING = r"\bWARN\b.*(clear.?text|plain.?text|unencrypted|not encrypted|without tls|no tls)"


def plain_ftp(srv, proto: str = "ftps") -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=30)
    ftp.connect(*ftp_addr(srv, proto))
    return ftp


def final_reply(ftp: ftplib.FTP) -> str:
    """Reads replies until one that is not 1xx (preliminary); returns it without raising."""
    resp = ftp.getmultiline()
    while resp[:1] == "1":
        resp = ftp.getmultiline()
    return resp


def rst_close(sock: socket.socket) -> None:
    """Closes a socket with a TCP RST (SO_LINGER 0): no TLS close_notify, no FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ------------------------------------------------------------------------------------------------
# TLS first, login first


def test_user_before_auth_tls_is_530(shared_ftps_server):
    srv = shared_ftps_server
    ftp = plain_ftp(srv)
    try:
        assert ftp.getwelcome().startswith("220")
        with pytest.raises(ftplib.error_perm) as e:
            ftp.sendcmd(f"USER {srv.user}")
        assert reply_code(e.value) == 530, e.value
        assert "AUTH TLS" in str(e.value), f"the 530 does not tell the client to use AUTH TLS: {e.value}"
        with pytest.raises(ftplib.error_perm) as e:
            ftp.sendcmd(f"PASS {srv.password}")
        assert reply_code(e.value) in (530, 503), e.value
        # the same connection can still upgrade and log in
        ftp.sendcmd("AUTH TLS")
    finally:
        close_quietly(ftp)


def test_plain_login_on_ftps_listener_fails(shared_ftps_server):
    srv = shared_ftps_server
    ftp = plain_ftp(srv)
    try:
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            ftp.login(srv.user, srv.password)
    finally:
        close_quietly(ftp)
    # and on the implicit port there is no clear-text FTP at all
    ftp = ftplib.FTP(timeout=3)
    try:
        with pytest.raises((OSError, EOFError, ftplib.Error)):
            ftp.connect(*ftp_addr(srv, "ftps-implicit"))
            ftp.login(srv.user, srv.password)
    finally:
        close_quietly(ftp)


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_commands_before_login_are_530(shared_ftps_server, implicit):
    srv = shared_ftps_server
    ftps = open_ftps(srv, implicit=implicit, login=False)
    try:
        if not implicit:
            ftps.auth()
        for cmd in ("LIST", "NLST", "MLSD", "RETR /etc/passwd", "STOR x", "CWD /", "PWD", "PASV", "EPSV",
                    "MKD x", "DELE x", "SIZE x", "RNFR x"):
            code, resp = command_code(ftps, cmd)
            assert code == 530, f"{cmd} before login: {resp}"
        ftps.login(srv.user, srv.password)
        ftps.prot_p()
        ftps.voidcmd("NOOP")
        assert ftps.pwd() == "/"
    finally:
        close_quietly(ftps, quit=True)
    assert not (srv.root / "x").exists()


def test_plain_commands_before_auth_are_refused(shared_ftps_server):
    """On the explicit listener, before AUTH TLS: no file commands (in clear text) either."""
    ftp = plain_ftp(shared_ftps_server)
    try:
        for cmd in ("LIST", "RETR x", "PASV", "CWD /"):
            code, resp = command_code(ftp, cmd)
            assert code == 530, f"{cmd} before AUTH TLS: {resp}"
    finally:
        close_quietly(ftp)


# ------------------------------------------------------------------------------------------------
# replies to broken commands


def test_unknown_command_is_502_and_bad_arguments_501(shared_ftps_server):
    with ftps_session(shared_ftps_server) as ftps:
        code, resp = command_code(ftps, "XYZZY plugh")
        assert code == 502, resp
        code, resp = command_code(ftps, "SITE XYZZY")
        assert 500 <= code < 600, resp
        for cmd in ("REST abc", "REST -5", "PORT 1,2,3", "TYPE"):
            code, resp = command_code(ftps, cmd)
            assert code == 501, f"{cmd}: {resp}"
        # the session is fine afterwards
        ftps.voidcmd("NOOP")
        assert ftps.pwd() == "/"


def test_prot_c_refused_and_no_clear_data(shared_ftps_server, frdir):
    secret = b"SECRET-" + os.urandom(16).hex().encode()
    (frdir.local / "s.txt").write_bytes(secret * 100)
    with ftps_session(shared_ftps_server, prot_p=False) as ftps:
        ftps.voidcmd("PBSZ 0")
        code, resp = command_code(ftps, "PROT C")
        assert code == 534, resp
        # still no PROT P: a transfer must not send the file in clear text
        ftps.voidcmd("TYPE I")
        got = b""
        try:
            conn = ftps.transfercmd(f"RETR {frdir.r('s.txt')}")
        except ftplib.Error as e:
            assert reply_code(e) >= 400, e
        else:
            conn.settimeout(15)
            try:
                while chunk := conn.recv(65536):
                    got += chunk
            except OSError:
                pass
            conn.close()
            resp = final_reply(ftps)
            assert secret not in got, "the file went over the data connection in clear text"
            assert reply_code(resp) >= 400, f"transfer without PROT P: {resp}"
        assert secret not in got
        # CCC (back to clear text on the control connection) is refused too
        code, resp = command_code(ftps, "CCC")
        assert 500 <= code < 600, resp
        ftps.voidcmd("NOOP")  # still TLS, still in sync
        # and with PROT P it works
        ftps.prot_p()
        assert retr_bytes(ftps, frdir.r("s.txt")) == secret * 100


def test_overlong_line(shared_ftps_server):
    """A 5000-byte command line: 500, then either the connection keeps working or it is closed with 421."""
    srv = shared_ftps_server
    with ftps_session(srv) as bystander:
        ftps = open_ftps(srv)
        try:
            ftps.putline("NOOP " + "A" * 4995)
            try:
                resp = ftps.getmultiline()
            except socket.timeout:
                pytest.fail("no reply to a 5000-byte line within 30 s")
            except (EOFError, OSError) as e:
                pytest.fail(f"the connection was dropped without a reply to a 5000-byte line: {e!r}")
            code = reply_code(resp)
            assert code in (500, 421), f"5000-byte line answered {resp!r}"
            if code == 500:
                # the rest of the long line must not be taken as another command
                try:
                    ftps.putcmd("NOOP")
                    nxt = ftps.getmultiline()
                except (EOFError, OSError):
                    nxt = "421 (closed)"
                assert reply_code(nxt) in (200, 421), f"after the 500, NOOP got {nxt!r}"
                if reply_code(nxt) == 200:
                    assert ftps.pwd() == "/"
        finally:
            close_quietly(ftps)
        bystander.voidcmd("NOOP")
    with ftps_session(srv) as ftps:
        ftps.voidcmd("NOOP")


def test_garbage_does_not_hurt_the_server(shared_ftps_server):
    srv = shared_ftps_server
    for proto in ("ftps", "ftps-implicit"):
        for payload in (os.urandom(3000), b"\x16\x03\x01\x00\x05hello" * 50, b"\r\n" * 500, b"\x00" * 9000):
            with socket.create_connection(ftp_addr(srv, proto), timeout=10) as s:
                try:
                    s.sendall(payload)
                    s.settimeout(2)
                    s.recv(4096)
                except OSError:
                    pass
    # a half-finished TLS handshake, dropped
    with socket.create_connection(ftp_addr(srv, "ftps"), timeout=10) as s:
        s.recv(4096)
        s.sendall(b"AUTH TLS\r\n")
        s.recv(4096)
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    assert srv.alive()
    with ftps_session(srv) as ftps:
        assert ftps.pwd() == "/"
    with ftps_session(srv, implicit=True) as ftps:
        assert ftps.pwd() == "/"


def test_idle_unauthenticated_connections_do_not_block_others(shared_ftps_server):
    srv = shared_ftps_server
    socks = []
    try:
        # From another address than the real client's: one address gets only its own share of the
        # unauthenticated connections (the rest are refused), and never anyone else's.
        for i in range(60):
            addr = ftp_addr(srv, "ftps-implicit" if i % 2 else "ftps")
            socks.append(socket.create_connection(addr, timeout=10, source_address=("127.0.0.2", 0)))
        # half-open TLS handshakes on the implicit port, greetings unread on the explicit one
        for s in socks[1::2][:10]:
            s.sendall(b"\x16\x03\x01\x00\x10")
        for implicit in (False, True):
            with ftps_session(srv, implicit=implicit, timeout=10) as ftps:
                ftps.voidcmd("NOOP")
                assert ftps.pwd() == "/"
    finally:
        for s in socks:
            s.close()
    assert srv.alive()


# ------------------------------------------------------------------------------------------------
# data connections: only from the client, only to the client


def test_data_connection_from_other_address_is_refused(shared_ftps_server, frdir):
    srv = shared_ftps_server
    secret = os.urandom(300_000)
    (frdir.local / "secret.bin").write_bytes(secret)
    before = len(srv.log())
    with ftps_session(srv) as ftps:
        ftps.voidcmd("TYPE I")
        host, port = parse_pasv_port(ftps.sendcmd("PASV"))
        thief = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        thief.bind(("127.0.0.2", 0))
        thief.settimeout(15)
        thief.connect((host, port))  # the kernel completes the TCP handshake in any case
        ftps.putcmd(f"RETR {frdir.r('secret.bin')}")
        stolen = b""
        try:
            tls = client_context().wrap_socket(thief, server_hostname=host)
            while chunk := tls.recv(65536):
                stolen += chunk
        except (OSError, ssl.SSLError):
            pass
        finally:
            thief.close()
        assert not stolen, f"a data connection from 127.0.0.2 received {len(stolen)} bytes of the file"
        ftps.sock.settimeout(65)  # in case the server waits for a proper connection before giving up
        try:
            resp = final_reply(ftps)
        except socket.timeout:
            pytest.fail("RETR got no final reply within 65 s after a data connection from 127.0.0.2")
        assert reply_code(resp) in (425, 426), f"RETR with a foreign data connection: {resp!r}"
        # the session goes on: a proper transfer works
        assert retr_bytes(ftps, frdir.r("secret.bin")) == secret
    line = srv.wait_for_log(r"hint:", since=before)
    assert line, f"no `hint:` log line about the foreign data connection:\n{srv.log()[before:]}"


def test_port_to_foreign_address_is_refused(shared_ftps_server, frdir):
    (frdir.local / "f").write_bytes(b"data")
    trap = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    trap.bind(("127.0.0.2", 0))
    trap.listen(5)
    tport = trap.getsockname()[1]
    try:
        with ftps_session(shared_ftps_server) as ftps:
            code, resp = command_code(ftps, f"PORT 127,0,0,2,{tport >> 8},{tport & 255}")
            assert 500 <= code < 600, f"PORT to 127.0.0.2: {resp}"
            code, resp = command_code(ftps, f"EPRT |1|127.0.0.2|{tport}|")
            assert 500 <= code < 600, f"EPRT to 127.0.0.2: {resp}"
            # a transfer now has no data connection to use (and must not use the refused address)
            code, resp = command_code(ftps, f"RETR {frdir.r('f')}")
            assert code >= 400, f"RETR after refused PORT/EPRT: {resp}"
            readable, _, _ = select.select([trap], [], [], 1.0)
            assert not readable, "the server connected to 127.0.0.2 after a refused PORT"
            # never let a transfer follow these: nothing may connect anywhere but loopback
            code, resp = command_code(ftps, "EPRT |1|10.0.0.1|5000|")
            assert 500 <= code < 600, f"EPRT to 10.0.0.1: {resp}"
            code, resp = command_code(ftps, "PORT 10,0,0,1,19,136")
            assert 500 <= code < 600, f"PORT to 10.0.0.1: {resp}"
            ftps.voidcmd("NOOP")
    finally:
        trap.close()


def test_active_mode_to_own_address_works(shared_ftps_server, frdir):
    """PORT/EPRT to the client's own address (127.0.0.1) is allowed: ftplib active mode."""
    data = os.urandom(500_000)
    (frdir.local / "f").write_bytes(data)
    with ftps_session(shared_ftps_server) as ftps:
        ftps.set_pasv(False)
        assert retr_bytes(ftps, frdir.r("f")) == data
        stor_bytes(ftps, frdir.r("g"), data[::-1])
    assert (frdir.local / "g").read_bytes() == data[::-1]


# ------------------------------------------------------------------------------------------------
# the jail


def test_cwd_dotdot_stays_at_root(shared_ftps_server, frdir):
    srv = shared_ftps_server
    with ftps_session(srv) as ftps:
        for path in ("../../..", "/../..", ".."):
            try:
                ftps.cwd(path)
            except ftplib.error_perm:
                pass
            assert ftps.pwd() == "/", f"CWD {path} from / led to {ftps.pwd()}"
        ftps.cwd(frdir.remote)
        ftps.cwd("../../../..")
        assert ftps.pwd() == "/"
        names = sorted(os.path.basename(n) for n in ftps.nlst("../.."))
        assert frdir.name in names, names
        assert set(names) <= set(os.listdir(srv.root)), f"NLST ../.. shows what is not in the root: {names}"


def test_dotdot_paths_cannot_reach_system_files(shared_ftps_server, frdir):
    with ftps_session(shared_ftps_server) as ftps:
        ftps.voidcmd("TYPE I")
        for path in ("/../../etc/passwd", "../../../../etc/passwd", f"{frdir.remote}/../../../etc/passwd"):
            code, data = try_retr(ftps, path)
            assert code == 550 and not data, f"RETR {path}: {code} {data[:60]!r}"
            code, resp = command_code(ftps, f"SIZE {path}")
            assert code == 550, f"SIZE {path}: {resp}"
        code, resp = command_code(ftps, "CWD /../../etc")
        assert code == 550, resp
        assert ftps.pwd() == "/"
        lines: list[str] = []
        try:
            ftps.retrlines("LIST /../../etc", lines.append)
        except ftplib.Error:
            pass
        assert not any("passwd" in line or "hostname" in line for line in lines), lines
        # writes with .. land inside the root, if anywhere
        try:
            stor_bytes(ftps, "/../../escaped-ftps.txt", b"escape?")
        except ftplib.Error:
            pass
    data_dir = shared_ftps_server.data_dir
    for where in (data_dir, data_dir / "files", data_dir.parent):
        assert not (where / "escaped-ftps.txt").exists(), where


def test_symlinks_pointing_outside_are_refused(shared_ftps_server, frdir):
    outside = shared_ftps_server.data_dir.parent / f"outside-{uuid.uuid4().hex[:8]}"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    os.symlink(outside / "secret.txt", frdir.local / "abs-file-link")
    os.symlink(os.path.relpath(outside / "secret.txt", frdir.local), frdir.local / "rel-file-link")
    os.symlink(outside, frdir.local / "abs-dir-link")
    os.symlink(os.path.relpath(outside, frdir.local), frdir.local / "rel-dir-link")
    os.symlink("/etc", frdir.local / "etc-link")
    assert (frdir.local / "rel-dir-link" / "secret.txt").exists()  # the links work on disk
    with ftps_session(shared_ftps_server) as ftps:
        ftps.voidcmd("TYPE I")
        for link in ("abs-file-link", "rel-file-link", "abs-dir-link/secret.txt", "rel-dir-link/secret.txt",
                     "etc-link/passwd"):
            code, data = try_retr(ftps, frdir.r(link))
            assert code == 550 and not data, f"RETR {link}: {code} {data[:60]!r}"
        for link in ("abs-dir-link", "rel-dir-link", "etc-link"):
            code, resp = command_code(ftps, f"CWD {frdir.r(link)}")
            assert code == 550, f"CWD {link}: {resp}"
            assert ftps.pwd() == "/"
            names: list[str] = []
            try:
                names = ftps.nlst(frdir.r(link))
            except ftplib.Error:
                pass
            assert not any("secret" in n or "passwd" in n for n in names), f"NLST {link}: {names}"
        # writes through the links do not land outside
        for target in ("abs-dir-link/planted.txt", "rel-dir-link/planted.txt"):
            try:
                stor_bytes(ftps, frdir.r(target), b"planted")
            except ftplib.Error:
                pass
        for cmd in ("MKD rel-dir-link/newdir", "MKD abs-dir-link/newdir", "DELE rel-dir-link/secret.txt"):
            command_code(ftps, cmd.replace(" ", f" {frdir.remote}/", 1))
        code, resp = command_code(ftps, f"RNFR {frdir.r('rel-dir-link/secret.txt')}")
        if code == 350:
            command_code(ftps, f"RNTO {frdir.r('stolen.txt')}")
        # and overwriting a file link must not write the target
        try:
            stor_bytes(ftps, frdir.r("rel-file-link"), b"overwritten")
        except ftplib.Error:
            pass
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "top secret\n"
    assert not (frdir.local / "stolen.txt").exists()


# ------------------------------------------------------------------------------------------------
# uploads cut off half-way


def test_cut_off_stor_keeps_previous_file(shared_ftps_server, frdir):
    srv = shared_ftps_server
    target = frdir.local / "data.bin"
    target.write_bytes(OLD)
    block = os.urandom(65536)
    with ftps_session(srv) as ftps, ftps_session(srv) as reader:
        ftps.voidcmd("TYPE I")
        conn = ftps.transfercmd(f"STOR {frdir.r('data.bin')}")
        try:
            for _ in range(128):  # 8 MB of a bigger upload
                conn.sendall(block)
            time.sleep(0.3)
            # half-way: the upload shows under its own name only (no temporary name in the listing)
            assert [os.path.basename(n) for n in reader.nlst(frdir.remote)] == ["data.bin"]
        finally:
            rst_close(conn)
        try:
            resp = final_reply(ftps)
        except socket.timeout:
            pytest.fail("no reply on the control connection within 30 s after the data connection was reset")
        assert reply_code(resp) >= 400, f"a STOR cut off by a TCP reset was answered {resp!r}"
        assert wait_until(lambda: upload_temp_files(frdir.local) == [], timeout=15), upload_temp_files(frdir.local)
        assert target.read_bytes() == OLD
        assert retr_bytes(reader, frdir.r("data.bin")) == OLD
        # the control connection is still good for a complete upload
        stor_bytes(ftps, frdir.r("data.bin"), b"complete")
    assert target.read_bytes() == b"complete"
    assert upload_temp_files(frdir.local) == []
    assert srv.alive()


def test_vanished_client_mid_upload_keeps_previous_file(shared_ftps_server, frdir):
    """Control and data connections both reset half-way (a killed client)."""
    srv = shared_ftps_server
    target = frdir.local / "data.bin"
    target.write_bytes(OLD)
    ftps = open_ftps(srv)
    ftps.voidcmd("TYPE I")
    conn = ftps.transfercmd(f"STOR {frdir.r('data.bin')}")
    for _ in range(64):
        conn.sendall(os.urandom(65536))
    time.sleep(0.3)
    rst_close(conn)
    rst_close(ftps.sock)
    close_quietly(ftps)
    assert wait_until(lambda: upload_temp_files(frdir.local) == [], timeout=15), upload_temp_files(frdir.local)
    assert target.read_bytes() == OLD
    with ftps_session(srv) as again:
        assert retr_bytes(again, frdir.r("data.bin")) == OLD
        assert [os.path.basename(n) for n in again.nlst(frdir.remote)] == ["data.bin"]


def test_complete_upload_replaces_the_file(shared_ftps_server, frdir):
    target = frdir.local / "data.bin"
    target.write_bytes(OLD)
    new = os.urandom(2_000_000)
    with ftps_session(shared_ftps_server) as ftps:
        stor_bytes(ftps, frdir.r("data.bin"), new)
    assert target.read_bytes() == new
    assert upload_temp_files(frdir.local) == []


# ------------------------------------------------------------------------------------------------
# plain FTP: only when asked for


def test_plain_ftp_listener_is_opt_in_with_warning(ftps_server_factory, shared_ftps_server):
    srv = ftps_server_factory(listen=("ftp=127.0.0.1:0", "ftps=127.0.0.1:0"))
    assert srv.wait_for_log(CLEAR_TEXT_WARNING, timeout=5), (
        f"no warning about clear-text credentials at start:\n{srv.log()}"
    )
    ftp = plain_ftp(srv, "ftp")
    try:
        assert ftp.getwelcome().startswith("220")
        ftp.login(srv.user, srv.password)
        assert ftp.pwd() == "/"
        data = os.urandom(100_000)
        stor_bytes(ftp, "/plain.bin", data)
        assert (srv.root / "plain.bin").read_bytes() == data
        assert retr_bytes(ftp, "/plain.bin") == data
        assert "plain.bin" in ftp.nlst("/")
        ftp.quit()
    finally:
        close_quietly(ftp)
    # its ftps listener still refuses clear-text logins
    ftp = plain_ftp(srv, "ftps")
    try:
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            ftp.login(srv.user, srv.password)
    finally:
        close_quietly(ftp)
    # a server without a plain ftp listener does not warn
    assert not shared_ftps_server.wait_for_log(CLEAR_TEXT_WARNING, timeout=0), shared_ftps_server.log()
