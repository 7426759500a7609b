"""Python's ftplib against Ferry's FTPS: explicit (AUTH TLS) and implicit, file and directory commands,
MLSD facts, REST in both directions, passive ports, the certificate line, logs, and SFTP <-> FTPS."""

from __future__ import annotations

import calendar
import ftplib
import os
import re
import socket
import ssl
import time

import pytest

from conftest import run_ferry, sftp_client, upload_temp_files
from ftps_helpers import (
    ExplicitFTPS,
    ImplicitFTPS,
    client_context,
    close_quietly,
    colon_sha256,
    command_code,
    ftp_addr,
    ftps_session,
    parse_epsv_port,
    parse_pasv_port,
    retr_bytes,
    stor_bytes,
    try_retr,
)

FEATURES = ["AUTH TLS", "PBSZ", "PROT", "EPSV", "MLST", "MLSD", "SIZE", "MDTM", "REST STREAM", "UTF8"]


# ------------------------------------------------------------------------------------------------
# connecting


def test_explicit_greeting_is_plain_then_auth_tls(shared_ftps_server):
    ftps = ExplicitFTPS(context=client_context(), timeout=30)
    try:
        welcome = ftps.connect(*ftp_addr(shared_ftps_server, "ftps"))
        assert welcome.startswith("220"), welcome
        assert not isinstance(ftps.sock, ssl.SSLSocket)
        resp = ftps.auth()
        assert resp.startswith("234"), resp
        assert isinstance(ftps.sock, ssl.SSLSocket)
        assert ftps.sock.version() in ("TLSv1.2", "TLSv1.3"), ftps.sock.version()
        ftps.login(shared_ftps_server.user, shared_ftps_server.password)
        assert ftps.prot_p().startswith("200")
        assert ftps.pwd() == "/"
        ftps.quit()
    finally:
        close_quietly(ftps)


def test_implicit_greeting_arrives_inside_tls(shared_ftps_server):
    ftps = ImplicitFTPS(context=client_context(), timeout=30)
    try:
        welcome = ftps.connect(*ftp_addr(shared_ftps_server, "ftps-implicit"))
        assert isinstance(ftps.sock, ssl.SSLSocket)
        assert welcome.startswith("220"), welcome
        ftps.login(shared_ftps_server.user, shared_ftps_server.password)  # no AUTH TLS: already TLS
        ftps.prot_p()
        assert ftps.pwd() == "/"
        assert "/" not in ftps.nlst("/")
        ftps.quit()
    finally:
        close_quietly(ftps)


def test_implicit_port_never_accepts_clear_text_credentials(shared_ftps_server):
    """A plain TCP client on the implicit port that waits is greeted (issue 5: stock ftplib pointed at an
    implicit port must not hang), but only on the explicit-FTPS path: no login without AUTH TLS."""
    host, port = ftp_addr(shared_ftps_server, "ftps-implicit")
    with socket.create_connection((host, port), timeout=10) as s:
        s.settimeout(10)
        f = s.makefile("rb")
        assert f.readline().startswith(b"220")
        s.sendall(b"USER alice\r\n")
        reply = f.readline()
        assert reply.startswith(b"530") and b"AUTH TLS" in reply, reply
        s.sendall(b"PASS whatever\r\n")
        reply = f.readline()
        assert not reply.startswith(b"230"), reply
    # and it still serves TLS clients afterwards
    with ftps_session(shared_ftps_server, implicit=True) as ftps:
        ftps.voidcmd("NOOP")


def test_feat_lists_extensions(shared_ftps_server):
    with ftps_session(shared_ftps_server) as ftps:
        resp = ftps.sendcmd("FEAT")
    assert resp.startswith("211"), resp
    lines = [line.strip().upper() for line in resp.splitlines()[1:-1]]
    for feat in FEATURES:
        assert any(line == feat or line.startswith(feat + " ") or line.startswith(feat + ";") for line in lines), (
            f"FEAT does not list {feat}:\n{resp}"
        )


def test_fingerprint_line_matches_served_certificate(shared_ftps_server):
    srv = shared_ftps_server
    assert srv.tls_sha256, srv.stdout()
    with ftps_session(srv) as ftps:
        explicit = colon_sha256(ftps.sock.getpeercert(binary_form=True))
    with ftps_session(srv, implicit=True) as ftps:
        implicit = colon_sha256(ftps.sock.getpeercert(binary_form=True))
    assert explicit == implicit == srv.tls_sha256
    # generated on first start under D/tls/
    assert (srv.data_dir / "tls").is_dir(), f"no {srv.data_dir / 'tls'}"
    assert any((srv.data_dir / "tls").iterdir())


def test_self_signed_certificate_survives_restart(ftps_server_factory):
    srv = ftps_server_factory()
    first = srv.tls_sha256
    data_dir = srv.data_dir
    with ftps_session(srv) as ftps:
        assert colon_sha256(ftps.sock.getpeercert(binary_form=True)) == first
    assert srv.stop() == 0
    from conftest import FerryServer, check_ftps_started

    again = FerryServer(srv.ferry, data_dir, srv.log_path.with_name("again.log"), listen=srv.listen,
                        extra_args=srv.extra_args)
    again.user, again.password, again.root = srv.user, srv.password, srv.root
    again.start()
    try:
        check_ftps_started(again)
        assert again.tls_sha256 == first, "a restart generated a new certificate"
        with ftps_session(again) as ftps:
            assert colon_sha256(ftps.sock.getpeercert(binary_form=True)) == first
    finally:
        assert again.stop() == 0


def test_wrong_password_is_530_and_not_logged(shared_ftps_server):
    srv = shared_ftps_server
    before = len(srv.log())
    wrong = "wrong-" + os.urandom(6).hex()
    ftps = ExplicitFTPS(context=client_context(), timeout=30)
    try:
        ftps.connect(*ftp_addr(srv, "ftps"))
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            ftps.login(srv.user, wrong)
    finally:
        close_quietly(ftps)
    line = srv.wait_for_log(
        r"alice.*(fail|denied|reject|invalid|wrong|bad)|(fail|denied|reject|invalid|wrong|bad).*alice", since=before
    )
    assert line, f"no log line about alice's failed login:\n{srv.log()[before:]}"
    assert wrong not in srv.log(), "the server logged a password"
    assert srv.password not in srv.log(), "the server logged a password"


# ------------------------------------------------------------------------------------------------
# files and directories


def test_stor_retr_byte_identical(shared_ftps_server, frdir):
    data = os.urandom(3_000_017)
    with ftps_session(shared_ftps_server) as ftps:
        resp = stor_bytes(ftps, frdir.r("up.bin"), data)
        assert resp.startswith("226") or resp.startswith("250"), resp
        assert (frdir.local / "up.bin").read_bytes() == data
        assert upload_temp_files(frdir.local) == []
        assert retr_bytes(ftps, frdir.r("up.bin")) == data
        # empty file
        stor_bytes(ftps, frdir.r("empty"), b"")
        assert (frdir.local / "empty").read_bytes() == b""
        assert retr_bytes(ftps, frdir.r("empty")) == b""
        # overwrite with shorter content
        stor_bytes(ftps, frdir.r("up.bin"), b"short")
        assert (frdir.local / "up.bin").read_bytes() == b"short"
        assert retr_bytes(ftps, frdir.r("up.bin")) == b"short"


def test_implicit_stor_retr(shared_ftps_server, frdir):
    data = os.urandom(700_001)
    with ftps_session(shared_ftps_server, implicit=True) as ftps:
        stor_bytes(ftps, frdir.r("imp.bin"), data)
        assert retr_bytes(ftps, frdir.r("imp.bin")) == data
    assert (frdir.local / "imp.bin").read_bytes() == data


def test_directory_commands(shared_ftps_server, frdir):
    with ftps_session(shared_ftps_server) as ftps:
        made = ftps.mkd(frdir.r("sub"))
        assert made.rstrip("/").endswith(frdir.r("sub")) or made == "sub", made
        assert (frdir.local / "sub").is_dir()
        ftps.cwd(frdir.r("sub"))
        assert ftps.pwd() == frdir.r("sub")
        stor_bytes(ftps, "rel.txt", b"relative to the cwd\n")
        assert (frdir.local / "sub" / "rel.txt").read_bytes() == b"relative to the cwd\n"
        ftps.cwd("..")
        assert ftps.pwd() == frdir.remote
        ftps.voidcmd("TYPE I")
        assert ftps.size("sub/rel.txt") == len(b"relative to the cwd\n")
        ftps.rename("sub/rel.txt", "sub/renamed.txt")
        assert not (frdir.local / "sub" / "rel.txt").exists()
        assert (frdir.local / "sub" / "renamed.txt").read_bytes() == b"relative to the cwd\n"
        ftps.rename("sub", "sub2")
        assert (frdir.local / "sub2" / "renamed.txt").exists()
        # RMD of a non-empty directory fails and keeps it
        with pytest.raises(ftplib.error_perm, match=r"^5"):
            ftps.rmd("sub2")
        assert (frdir.local / "sub2").is_dir()
        ftps.delete("sub2/renamed.txt")
        assert not (frdir.local / "sub2" / "renamed.txt").exists()
        ftps.rmd("sub2")
        assert not (frdir.local / "sub2").exists()
        # errors: missing file, CWD into a file, DELE of a directory
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            ftps.size("missing")
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            ftps.delete("missing")
        (frdir.local / "f").write_bytes(b"x")
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            ftps.cwd("f")
        (frdir.local / "d").mkdir()
        with pytest.raises(ftplib.error_perm, match=r"^5"):
            ftps.delete("d")
        assert (frdir.local / "d").is_dir()
        with pytest.raises(ftplib.error_perm, match=r"^5"):
            ftps.mkd("d")
        assert ftps.pwd() == frdir.remote


def test_rnto_without_rnfr_is_503(shared_ftps_server, frdir):
    (frdir.local / "a").write_bytes(b"a")
    with ftps_session(shared_ftps_server) as ftps:
        code, resp = command_code(ftps, f"RNTO {frdir.r('b')}")
        assert code == 503, resp
        # RNFR of a missing file fails, and then RNTO is out of sequence too
        code, resp = command_code(ftps, f"RNFR {frdir.r('missing')}")
        assert code == 550, resp
        code, resp = command_code(ftps, f"RNTO {frdir.r('b')}")
        assert code == 503, resp
        # a pending RNFR is used once
        code, resp = command_code(ftps, f"RNFR {frdir.r('a')}")
        assert code == 350, resp
        code, resp = command_code(ftps, f"RNTO {frdir.r('b')}")
        assert code == 250, resp
        code, resp = command_code(ftps, f"RNTO {frdir.r('c')}")
        assert code == 503, resp
    assert not (frdir.local / "a").exists() and (frdir.local / "b").read_bytes() == b"a"
    assert not (frdir.local / "c").exists()


def test_listings_nlst_list_mlsd(shared_ftps_server, frdir):
    (frdir.local / "one.txt").write_bytes(b"1" * 1234)
    (frdir.local / "sub").mkdir()
    (frdir.local / "x y.txt").write_bytes(b"")
    (frdir.local / "ünï.txt").write_bytes(b"u")
    (frdir.local / ".hidden").write_bytes(b"h")
    with ftps_session(shared_ftps_server) as ftps:
        names = sorted(os.path.basename(n.rstrip("/")) for n in ftps.nlst(frdir.remote))
        for want in ("one.txt", "sub", "x y.txt", "ünï.txt"):
            assert want in names, names
        assert "." not in names and ".." not in names

        lines: list[str] = []
        ftps.dir(frdir.remote, lines.append)
        joined = "\n".join(lines)
        sub_line = [line for line in lines if line.endswith(" sub")]
        one_line = [line for line in lines if line.endswith(" one.txt")]
        assert sub_line and sub_line[0].startswith("d"), joined
        assert one_line and one_line[0].startswith("-") and " 1234 " in one_line[0], joined
        assert any(line.endswith(" x y.txt") for line in lines), joined
        assert any(line.endswith(" ünï.txt") for line in lines), joined

        facts = {name: f for name, f in ftps.mlsd(frdir.remote) if f.get("type", "").lower() not in ("cdir", "pdir")}
        assert facts["one.txt"]["type"].lower() == "file", facts
        assert int(facts["one.txt"]["size"]) == 1234, facts
        assert facts["sub"]["type"].lower() == "dir", facts
        assert int(facts["x y.txt"]["size"]) == 0
        assert "ünï.txt" in facts
        modify = facts["one.txt"].get("modify")
        assert modify, f"no modify fact: {facts['one.txt']}"
        mtime = calendar.timegm(time.strptime(modify[:14], "%Y%m%d%H%M%S"))
        assert abs(mtime - (frdir.local / "one.txt").stat().st_mtime) < 2, modify

        # MLST of one file: a 250 reply with the facts on the middle line
        resp = ftps.sendcmd(f"MLST {frdir.r('one.txt')}")
        assert resp.startswith("250"), resp
        assert "size=1234;" in resp.lower() and "type=file;" in resp.lower(), resp

        # listing a missing directory fails
        with pytest.raises((ftplib.error_perm, ftplib.error_temp), match=r"^(550|450)"):
            list(ftps.mlsd(frdir.r("missing")))


def test_size_and_mdtm(shared_ftps_server, frdir):
    path = frdir.local / "m.bin"
    path.write_bytes(b"z" * 4321)
    os.utime(path, (1_600_000_000, 1_600_000_000))
    with ftps_session(shared_ftps_server) as ftps:
        ftps.voidcmd("TYPE I")
        assert ftps.size(frdir.r("m.bin")) == 4321
        resp = ftps.sendcmd(f"MDTM {frdir.r('m.bin')}")
        assert resp.startswith("213 "), resp
        assert resp[4:18] == time.strftime("%Y%m%d%H%M%S", time.gmtime(1_600_000_000)), resp
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            ftps.sendcmd(f"MDTM {frdir.r('nope')}")


def test_rest_download_returns_tail(shared_ftps_server, frdir):
    data = os.urandom(1_000_000)
    (frdir.local / "r.bin").write_bytes(data)
    with ftps_session(shared_ftps_server) as ftps:
        assert retr_bytes(ftps, frdir.r("r.bin"), rest=400_000) == data[400_000:]
        assert retr_bytes(ftps, frdir.r("r.bin"), rest=999_999) == data[999_999:]
        assert retr_bytes(ftps, frdir.r("r.bin"), rest=0) == data
        # REST does not stick to the next transfer
        assert retr_bytes(ftps, frdir.r("r.bin")) == data


def test_rest_upload_appends_at_offset(shared_ftps_server, frdir):
    """A resumed upload (REST N + STOR) keeps the N bytes already there and writes the rest after them."""
    data = os.urandom(1_000_000)
    head = 400_000
    (frdir.local / "u.bin").write_bytes(data[:head])
    with ftps_session(shared_ftps_server) as ftps:
        ftps.voidcmd("TYPE I")
        code, resp = command_code(ftps, f"REST {head}")
        assert code == 350, resp
        conn = ftps.transfercmd(f"STOR {frdir.r('u.bin')}")
        try:
            conn.sendall(data[head:])
            conn.unwrap()
        finally:
            conn.close()
        resp = ftps.voidresp()
        assert resp.startswith("226") or resp.startswith("250"), resp
        got = (frdir.local / "u.bin").read_bytes()
        assert len(got) == len(data), f"resumed upload gave {len(got)} bytes, expected {len(data)}"
        assert got == data
        # the same with ftplib's own `rest=` argument, and a download to check what a client sees
        (frdir.local / "u2.bin").write_bytes(data[:head])
        stor_bytes(ftps, frdir.r("u2.bin"), data[head:], rest=head)
        assert retr_bytes(ftps, frdir.r("u2.bin")) == data
    assert upload_temp_files(frdir.local) == []


def test_passive_ports_in_configured_range(shared_ftps_server, frdir):
    srv = shared_ftps_server
    lo, hi = srv.passive
    (frdir.local / "f").write_bytes(b"data")
    with ftps_session(srv) as ftps:
        ftps.voidcmd("TYPE I")
        for _ in range(3):
            host, port = parse_pasv_port(ftps.sendcmd("PASV"))
            assert host == "127.0.0.1", host
            assert lo <= port <= hi, f"PASV port {port} outside --passive-ports {lo}-{hi}"
        port = parse_epsv_port(ftps.sendcmd("EPSV"))
        assert lo <= port <= hi, f"EPSV port {port} outside --passive-ports {lo}-{hi}"
        # a transfer after several PASV/EPSV still works (the last one counts)
        assert retr_bytes(ftps, frdir.r("f")) == b"data"


def test_many_transfers_in_one_session(shared_ftps_server, frdir):
    """100 small uploads and downloads on one control connection (each a new data connection)."""
    with ftps_session(shared_ftps_server) as ftps:
        for i in range(50):
            stor_bytes(ftps, frdir.r(f"s{i}"), f"file {i}\n".encode())
        for i in range(50):
            assert retr_bytes(ftps, frdir.r(f"s{i}")) == f"file {i}\n".encode()
    assert len(list(frdir.local.iterdir())) == 50


def test_two_sessions_in_parallel(shared_ftps_server, frdir):
    data1, data2 = os.urandom(2_000_000), os.urandom(2_000_000)
    with ftps_session(shared_ftps_server) as a, ftps_session(shared_ftps_server, implicit=True) as b:
        stor_bytes(a, frdir.r("a"), data1)
        stor_bytes(b, frdir.r("b"), data2)
        assert retr_bytes(b, frdir.r("a")) == data1
        assert retr_bytes(a, frdir.r("b")) == data2


# ------------------------------------------------------------------------------------------------
# logs


def test_login_transfer_logout_logged(shared_ftps_server, frdir):
    srv = shared_ftps_server
    before = len(srv.log())
    with ftps_session(srv) as ftps:
        stor_bytes(ftps, frdir.r("logged.bin"), b"x" * 12345)
        assert retr_bytes(ftps, frdir.r("logged.bin")) == b"x" * 12345
    name = re.escape(frdir.r("logged.bin"))
    assert srv.wait_for_log(r"\blogin\b.*user=\"?alice\b.*protocol=\"?ftps", since=before), srv.log()[before:]
    line = srv.wait_for_log(rf"\btransfer\b.*user=\"?alice\b.*protocol=\"?ftps.*path=\"?{name}.*=12345\b", since=before)
    assert line, f"no transfer line for {name} with 12345 bytes:\n{srv.log()[before:]}"
    assert srv.wait_for_log(r"\blogout\b.*user=\"?alice\b.*protocol=\"?ftps", since=before), srv.log()[before:]
    assert srv.password not in srv.log()


# ------------------------------------------------------------------------------------------------
# SFTP <-> FTPS: one user, one set of files


def test_sftp_upload_ftps_download(shared_ftps_server, frdir):
    data = os.urandom(1_500_007)
    with sftp_client(shared_ftps_server) as sftp:
        with sftp.open(frdir.r("via-sftp.bin"), "w") as f:
            f.write(data)
    with ftps_session(shared_ftps_server) as ftps:
        assert retr_bytes(ftps, frdir.r("via-sftp.bin")) == data
        ftps.voidcmd("TYPE I")
        assert ftps.size(frdir.r("via-sftp.bin")) == len(data)
    with ftps_session(shared_ftps_server, implicit=True) as ftps:
        assert retr_bytes(ftps, frdir.r("via-sftp.bin")) == data


def test_ftps_upload_sftp_download(shared_ftps_server, frdir):
    data = os.urandom(1_500_007)
    with ftps_session(shared_ftps_server) as ftps:
        ftps.mkd(frdir.r("d"))
        stor_bytes(ftps, frdir.r("d/via-ftps.bin"), data)
    with sftp_client(shared_ftps_server) as sftp:
        assert sftp.listdir(frdir.r("d")) == ["via-ftps.bin"]
        assert sftp.stat(frdir.r("d/via-ftps.bin")).st_size == len(data)
        assert sftp.open(frdir.r("d/via-ftps.bin")).read() == data
        sftp.rename(frdir.r("d/via-ftps.bin"), frdir.r("d/renamed.bin"))
    with ftps_session(shared_ftps_server) as ftps:
        assert [os.path.basename(n) for n in ftps.nlst(frdir.r("d"))] == ["renamed.bin"]


def test_user_added_while_running_can_log_in(ftps_server):
    """Users are shared with SFTP: one added with `ferry user add` while serving logs in over FTPS."""
    password = "pw-bob-" + os.urandom(6).hex()
    run_ferry(ftps_server.ferry, ftps_server.data_dir, "user", "add", "bob", "--password-stdin", input=password + "\n")
    with ftps_session(ftps_server, user="bob", password=password) as ftps:
        stor_bytes(ftps, "/bob.txt", b"bob")
        assert ftps.pwd() == "/"
    assert (ftps_server.data_dir / "files" / "bob" / "bob.txt").read_bytes() == b"bob"
    assert not (ftps_server.root / "bob.txt").exists()
    # alice cannot reach bob's files
    with ftps_session(ftps_server) as ftps:
        for path in ("/../bob/bob.txt", "../bob/bob.txt", "/../../files/bob/bob.txt"):
            code, data = try_retr(ftps, path)
            assert code == 550 and not data, f"alice RETR {path}: {code} {data!r}"


# ------------------------------------------------------------------------------------------------
# more of what real clients do


def test_abor_during_download_keeps_session(shared_ftps_server, frdir):
    data = os.urandom(30_000_000)
    (frdir.local / "big.bin").write_bytes(data)
    with ftps_session(shared_ftps_server) as ftps:
        ftps.voidcmd("TYPE I")
        conn = ftps.transfercmd(f"RETR {frdir.r('big.bin')}")
        try:
            assert conn.recv(65536), "no data before ABOR"
            resp = ftps.abort()  # FTP_TLS.abort: ABOR in band; 426 (transfer) then 226 (ABOR), or just 225/226
        finally:
            conn.close()
        if resp.startswith("426"):
            resp = ftps.getmultiline()
        assert resp[:3] in ("225", "226"), f"ABOR answered {resp!r}"
        ftps.voidcmd("NOOP")
        assert retr_bytes(ftps, frdir.r("big.bin")) == data


def test_list_accepts_ls_options(shared_ftps_server, frdir):
    """Many clients send `LIST -a` or `LIST -la DIR`: the options are not taken for a path."""
    (frdir.local / "f.txt").write_text("f")
    with ftps_session(shared_ftps_server) as ftps:
        for cmd in (f"LIST -la {frdir.remote}", f"LIST -a {frdir.remote}"):
            lines: list[str] = []
            ftps.retrlines(cmd, lines.append)
            assert any(line.endswith(" f.txt") for line in lines), f"{cmd}: {lines}"
        ftps.cwd(frdir.remote)
        lines = []
        ftps.retrlines("LIST -a", lines.append)
        assert any(line.endswith(" f.txt") for line in lines), lines


def test_large_directory_listing(shared_ftps_server, frdir):
    names = {f"file-{i:05d}-{'x' * (i % 40)}.dat" for i in range(1500)}
    for n in names:
        (frdir.local / n).write_bytes(b"")
    with ftps_session(shared_ftps_server) as ftps:
        assert {os.path.basename(n) for n in ftps.nlst(frdir.remote)} == names
        assert {n for n, f in ftps.mlsd(frdir.remote) if f.get("type", "").lower() == "file"} == names
        lines: list[str] = []
        ftps.dir(frdir.remote, lines.append)
        assert len([line for line in lines if line.startswith("-")]) == 1500, len(lines)


def test_parallel_sessions_transfer_correctly(shared_ftps_server, frdir):
    import concurrent.futures

    def worker(i: int) -> bool:
        data = os.urandom(1_000_000 + i)
        with ftps_session(shared_ftps_server, implicit=bool(i % 2)) as ftps:
            stor_bytes(ftps, frdir.r(f"p{i}.bin"), data)
            return retr_bytes(ftps, frdir.r(f"p{i}.bin")) == data and (frdir.local / f"p{i}.bin").read_bytes() == data

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert all(results), results
    assert upload_temp_files(frdir.local) == []


def test_names_with_spaces_and_unicode(shared_ftps_server, frdir):
    with ftps_session(shared_ftps_server) as ftps:
        ftps.cwd(frdir.remote)
        ftps.mkd("dír with späce")
        ftps.cwd("dír with späce")
        stor_bytes(ftps, "fïle  two  spaces.txt", b"content")
        ftps.rename("fïle  two  spaces.txt", "日本語 名前.txt")
        assert retr_bytes(ftps, "日本語 名前.txt") == b"content"
        assert [os.path.basename(n) for n in ftps.nlst()] == ["日本語 名前.txt"]
        ftps.cwd("..")
        assert ftps.pwd() == frdir.remote
    assert (frdir.local / "dír with späce" / "日本語 名前.txt").read_bytes() == b"content"


def test_stor_into_missing_directory_fails_cleanly(shared_ftps_server, frdir):
    with ftps_session(shared_ftps_server) as ftps:
        with pytest.raises(ftplib.error_perm, match=r"^55\d"):
            stor_bytes(ftps, frdir.r("no/such/dir/f.txt"), b"x")
        ftps.voidcmd("NOOP")
    assert list(frdir.local.iterdir()) == []
