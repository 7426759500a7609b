"""Files and homes (issue 11): no setuid/setgid/sticky bit from a client, `[uploads] umask` on everything a
client creates, homes opened without following symlinks and kept away from the data dir, log lines that a
client-chosen name cannot split, and FTP listings that leave out names with line breaks.
"""

from __future__ import annotations

import ftplib
import io
import os
import re
import sqlite3
import stat
import subprocess
from pathlib import Path

import paramiko
import pytest
from paramiko.sftp import CMD_CLOSE, CMD_OPEN, SFTP_FLAG_CREATE, SFTP_FLAG_TRUNC, SFTP_FLAG_WRITE

from conftest import (
    FTPS_LISTEN,
    FerryServer,
    add_user,
    clean_env,
    connect_transport,
    list_users,
    new_password,
    run_ferry,
    run_sftp,
    sftp_client,
)
from ftps_helpers import command_code, open_ftps, ftps_session, stor_bytes

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 10.0  # one client operation
SFTP_AND_FTPS = ("sftp=127.0.0.1:0", "ftps=127.0.0.1:0")


def mode(path: Path) -> int:
    """The permission bits (with setuid, setgid and sticky) of a path on disk, without following a symlink."""
    return stat.S_IMODE(os.lstat(path).st_mode)


# --------------------------------------------------------------------------------------------------
# chmod and umask


def create_with_mode(sftp: paramiko.SFTPClient, path: str, perm: int) -> None:
    """SFTP OPEN (create) with a mode in its attributes, which paramiko's `open` never sends."""
    attrs = paramiko.SFTPAttributes()
    attrs.st_mode = perm
    flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC
    _, msg = sftp._request(CMD_OPEN, path, flags, attrs)
    sftp._request(CMD_CLOSE, msg.get_binary())


def test_sftp_chmod_never_sets_setuid_setgid_or_sticky(shared_ftps_server, frdir):
    with sftp_client(shared_ftps_server, timeout=TIMEOUT) as sftp:
        sftp.putfo(io.BytesIO(b"#!/bin/sh\nid\n"), frdir.r("tool"))
        tool = frdir.local / "tool"
        for asked, want in ((0o4755, 0o755), (0o2775, 0o775), (0o6777, 0o777), (0o7700, 0o700), (0o640, 0o640)):
            sftp.chmod(frdir.r("tool"), asked)
            assert mode(tool) == want, f"SFTP chmod {asked:o} left {mode(tool):o} on disk, want {want:o}"
            assert stat.S_IMODE(sftp.stat(frdir.r("tool")).st_mode) == want
        # FSETSTAT, on an open handle.
        with sftp.open(frdir.r("tool"), "r+") as f:
            f.chmod(0o4711)
        assert mode(tool) == 0o711, f"SFTP fchmod 4711 left {mode(tool):o}"
        # Asked for at creation: OPEN and MKDIR with a mode.
        create_with_mode(sftp, frdir.r("born-setuid"), 0o6777)
        got = mode(frdir.local / "born-setuid")
        assert got == 0o755, f"OPEN with mode 6777 made {got:o}"
        sftp.mkdir(frdir.r("born-sticky"), 0o7777)
        assert mode(frdir.local / "born-sticky") == 0o755, f"MKDIR 7777 made {mode(frdir.local / 'born-sticky'):o}"
        sftp.mkdir(frdir.r("drop"))
        sftp.chmod(frdir.r("drop"), 0o1777)
        got = mode(frdir.local / "drop")
        assert got == 0o777, f"SFTP chmod 1777 of a directory left {got:o}"
        sftp.chmod(frdir.r("drop"), 0o3755)
        assert mode(frdir.local / "drop") == 0o755


def test_ftp_site_chmod_never_sets_setuid_setgid_or_sticky(shared_ftps_server, frdir):
    (frdir.local / "tool").write_bytes(b"#!/bin/sh\nid\n")
    (frdir.local / "drop").mkdir()
    with ftps_session(shared_ftps_server, timeout=TIMEOUT) as ftp:
        for asked, want in (("4755", 0o755), ("2755", 0o755), ("6777", 0o777), ("0640", 0o640)):
            code, resp = command_code(ftp, f"SITE CHMOD {asked} {frdir.r('tool')}")
            assert code == 200, resp
            got = mode(frdir.local / "tool")
            assert got == want, f"SITE CHMOD {asked} left {got:o} on disk, want {want:o}"
        code, resp = command_code(ftp, f"SITE CHMOD 1777 {frdir.r('drop')}")
        assert code == 200, resp
        got = mode(frdir.local / "drop")
        assert got == 0o777, f"SITE CHMOD 1777 of a directory left {got:o}"


def created_modes(srv: FerryServer, tmp_path: Path) -> dict[str, int]:
    """Creates files and directories with every client and asks for mode 0666/0777; returns their modes on disk."""
    local = tmp_path / "mode-0666.txt"
    local.write_text("asks for 0666\n")
    local.chmod(0o666)
    # OpenSSH's sftp sends the local file's mode (0666) in OPEN, and 0777 in MKDIR.
    run_sftp(srv, [f"put {local} /openssh-put.txt", "mkdir /openssh-dir"], timeout=60)
    with sftp_client(srv, timeout=TIMEOUT) as sftp:
        sftp.putfo(io.BytesIO(b"no mode asked\n"), "/paramiko-put.txt")
        sftp.mkdir("/paramiko-dir", 0o777)
    with ftps_session(srv, timeout=TIMEOUT) as ftp:
        stor_bytes(ftp, "/ftps-stor.txt", b"stored\n")
        ftp.mkd("/ftps-dir")
    root = srv.root
    assert root is not None
    names = ("openssh-put.txt", "openssh-dir", "paramiko-put.txt", "paramiko-dir", "ftps-stor.txt", "ftps-dir")
    return {n: mode(root / n) for n in names}


def test_new_files_and_directories_get_the_default_umask_022(alice_servers, tmp_path):
    srv = alice_servers(listen=SFTP_AND_FTPS)
    got = created_modes(srv, tmp_path)
    want = {n: (0o755 if n.endswith("dir") else 0o644) for n in got}
    assert got == want, {n: f"{m:o}" for n, m in got.items()}


@pytest.mark.parametrize("upload_mode", ["standard", "atomic"])
def test_uploads_umask_077_makes_everything_owner_only(alice_servers, tmp_path, upload_mode):
    srv = alice_servers(listen=SFTP_AND_FTPS, config=f'[uploads]\nmode = "{upload_mode}"\numask = "077"\n')
    got = created_modes(srv, tmp_path)
    want = {n: (0o700 if n.endswith("dir") else 0o600) for n in got}
    assert got == want, {n: f"{m:o}" for n, m in got.items()}


# --------------------------------------------------------------------------------------------------
# Homes


def sftp_listing_or_error(srv: FerryServer, user: str, password: str):
    """What `user` sees at / over SFTP: a list of names, or the exception that stopped the login or session."""
    try:
        t = connect_transport(srv, user=user, password=password, timeout=TIMEOUT)
    except (paramiko.SSHException, EOFError, OSError) as e:
        return e
    try:
        sftp = paramiko.SFTPClient.from_transport(t)
        assert sftp is not None
        sftp.get_channel().settimeout(TIMEOUT)
        return sorted(sftp.listdir("/"))
    except (paramiko.SSHException, EOFError, OSError) as e:
        return e
    finally:
        t.close()


def ftps_listing_or_error(srv: FerryServer, user: str, password: str):
    try:
        ftp = open_ftps(srv, user=user, password=password, timeout=TIMEOUT)
    except (ftplib.Error, EOFError, OSError) as e:
        return e
    try:
        return sorted(ftp.nlst())
    except (ftplib.Error, EOFError, OSError) as e:
        return e
    finally:
        ftp.close()


def test_home_swapped_for_a_symlink_is_never_served(alice_servers, ferry, tmp_path):
    """Alice's home contains bob's (and carol's parent): she swaps them for symlinks out of the jail."""
    srv = alice_servers(listen=FTPS_LISTEN)
    assert srv.root is not None
    outside = tmp_path / "outside"
    (outside / "carol").mkdir(parents=True)
    (outside / "carol" / "secret.txt").write_text("not carol's\n")
    bob_pw, carol_pw = new_password(), new_password()
    add_user(ferry, srv.data_dir, "bob", password=bob_pw, home=srv.root / "bob")
    add_user(ferry, srv.data_dir, "carol", password=carol_pw, home=srv.root / "team" / "carol")
    with sftp_client(srv, user="bob", password=bob_pw, timeout=TIMEOUT) as sftp:
        sftp.putfo(io.BytesIO(b"bob's\n"), "/mine.txt")
    assert sftp_listing_or_error(srv, "bob", bob_pw) == ["mine.txt"]
    assert sftp_listing_or_error(srv, "carol", carol_pw) == []

    with sftp_client(srv, timeout=TIMEOUT) as sftp:
        sftp.remove("/bob/mine.txt")
        sftp.rmdir("/bob")
        sftp.symlink("/etc", "/bob")
        sftp.rmdir("/team/carol")
        sftp.rmdir("/team")
        sftp.symlink(str(outside), "/team")
    assert os.readlink(srv.root / "bob") == "/etc"
    assert os.readlink(srv.root / "team") == str(outside)
    since = len(srv.log())

    for user, pw, forbidden in (("bob", bob_pw, "passwd"), ("carol", carol_pw, "secret.txt")):
        seen = sftp_listing_or_error(srv, user, pw)
        assert isinstance(seen, Exception), f"{user}'s SFTP session serves the symlink's target: {seen}"
        seen = ftps_listing_or_error(srv, user, pw)
        assert isinstance(seen, Exception), f"{user}'s FTPS session serves the symlink's target: {seen}"
        assert forbidden not in str(seen)
        assert "home directory" in str(seen), f"the FTPS client is not told why: {seen!r}"
        line = srv.wait_for_log(rf"cannot open the user's home directory.*\buser={user}\b", timeout=5, since=since)
        assert line is not None and "symlink" in line, f"no log line says why {user} fails:\n{srv.log()[since:]}"
    assert sftp_listing_or_error(srv, "alice", srv.password) == ["bob", "team"], "alice is not affected"


def data_dir_with_user(ferry, base: Path) -> Path:
    data = base / "srv" / "data"
    data.mkdir(parents=True)
    add_user(ferry, data, "alice", password=new_password())
    return data


def test_user_add_refuses_homes_that_expose_the_data_dir(ferry, tmp_path):
    data = data_dir_with_user(ferry, tmp_path)
    for home in (data, data / "keys", data / "files", data.parent, data / "files" / ".." / "tls"):
        p = run_ferry(ferry, data, "user", "add", "carol", "--password-stdin", "--home", str(home),
                      input=new_password() + "\n", check=False)
        assert p.returncode == 2, f"--home {home}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
        assert "hint:" in p.stderr, f"--home {home}: no hint\n{p.stderr}"
        assert "carol" not in list_users(ferry, data)
    ok = run_ferry(ferry, data, "user", "add", "carol", "--password-stdin", "--home", str(data / "files" / "carol"),
                   input=new_password() + "\n", check=False)
    assert ok.returncode == 0, ok.stderr
    assert "carol" in list_users(ferry, data)


def test_serve_refuses_a_user_whose_home_exposes_the_data_dir(ferry, tmp_path):
    data = data_dir_with_user(ferry, tmp_path)
    with sqlite3.connect(data / "users.db") as db:  # as an older Ferry, or a hand edit, could have left it
        db.execute("UPDATE users SET home = ? WHERE name = 'alice'", (str(data / "keys"),))
    db.close()
    cmd = [str(ferry), "--data-dir", str(data), "serve", "--listen", "sftp=127.0.0.1:0"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env(), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"serve started with alice's home in the data dir's keys/:\n{out}\n{err}")
    assert proc.returncode == 2, f"exit {proc.returncode}\n{out}\n{err}"
    assert "alice" in err and "hint:" in err, err
    assert "ready" not in out.split()


# --------------------------------------------------------------------------------------------------
# Log lines

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s")
FORGED_NAME = "a\n2026-12-06T00:00:00Z  INFO login user=root client=1.2.3.4"
ESCAPE_NAME = "b\x1b[2Jc"
SEPARATOR_NAME = "d\u2028e\x85f"  # Unicode line and paragraph separators split lines in some log viewers
FORGED_USER = "x\r\nINFO login user=admin"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")  # anything but TAB; CR and LF split lines


def test_client_chosen_names_never_split_a_log_line(alice_servers):
    srv = alice_servers(listen=SFTP_AND_FTPS)
    with sftp_client(srv, timeout=TIMEOUT) as sftp:
        sftp.putfo(io.BytesIO(b"forged\n"), "/" + FORGED_NAME)
        sftp.putfo(io.BytesIO(b"escape\n"), "/" + ESCAPE_NAME)
        sftp.putfo(io.BytesIO(b"separators\n"), "/" + SEPARATOR_NAME)
        sftp.rename("/" + FORGED_NAME, "/" + FORGED_NAME + "\r\n2")
    with pytest.raises(paramiko.AuthenticationException):
        connect_transport(srv, user=FORGED_USER, password="wrong", timeout=TIMEOUT)

    written = srv.wait_for_log(r"\btransfer\b.*a\\n2026-12-06T00:00:00Z  INFO login user=root", timeout=5)
    assert written is not None, f"no transfer line with the escaped name:\n{srv.log()}"
    assert srv.wait_for_log(r"\btransfer\b.*b\\u\{1b\}\[2Jc", timeout=5) is not None, srv.log()
    assert srv.wait_for_log(r"\btransfer\b.*d\\u\{2028\}e\\u\{85\}f", timeout=5) is not None, srv.log()
    failed = srv.wait_for_log(r"login failed.*x\\r\\nINFO login user=admin", timeout=5)
    assert failed is not None, f"no `login failed` line with the escaped user name:\n{srv.log()}"

    lines = srv.log().splitlines()
    assert lines
    for line in lines:
        assert TIMESTAMP.match(line), f"a log line that is not an event of its own: {line!r}\n--- log ---\n{srv.log()}"
        assert not line.startswith("2026-12-06T00:00:00Z"), f"a forged log line: {line!r}"
        assert not CONTROL.search(line), f"a control character in the log: {line!r}"
    logins = [line for line in lines if re.search(r"\bINFO login user=", line)]
    assert logins and all("user=alice" in line for line in logins), logins


# --------------------------------------------------------------------------------------------------
# FTP listings


def test_ftp_listings_leave_out_names_with_line_breaks(shared_ftps_server, frdir):
    bad = ("bad\nname.txt", "bad\rname.txt", "bad\r\n226 forged.txt")
    with sftp_client(shared_ftps_server, timeout=TIMEOUT) as sftp:
        for name in ("good.txt", *bad):
            sftp.putfo(io.BytesIO(b"x\n"), frdir.r(name))
        assert sorted(sftp.listdir(frdir.remote)) == sorted(["good.txt", *bad]), "SFTP lists every name"
    since = len(shared_ftps_server.log())
    with ftps_session(shared_ftps_server, timeout=TIMEOUT) as ftp:
        ftp.cwd(frdir.remote)
        for verb in ("LIST", "NLST", "MLSD", "LIST -a", "NLST *.txt", "LIST *.txt"):
            chunks: list[bytes] = []
            ftp.retrbinary(verb, chunks.append)
            raw = b"".join(chunks)
            assert b"good.txt" in raw, f"{verb}: {raw!r}"
            assert b"name.txt" not in raw and b"forged" not in raw, f"{verb} sent a name with a line break: {raw!r}"
            lines = raw.split(b"\r\n")
            assert lines[-1] == b"" and all(b"\r" not in x and b"\n" not in x for x in lines), f"{verb}: {raw!r}"
        only_bad: list[bytes] = []
        ftp.retrbinary("LIST bad*", only_bad.append)
        assert b"name.txt" not in b"".join(only_bad), only_bad
        resp = ftp.sendcmd(f"STAT {frdir.remote}")
        assert "good.txt" in resp and "name.txt" not in resp and "forged" not in resp, resp
        assert ftp.nlst() == ["good.txt"]
    line = shared_ftps_server.wait_for_log(r"hint: left entries out of an FTP listing", timeout=5, since=since)
    assert line is not None, shared_ftps_server.log()[since:]
