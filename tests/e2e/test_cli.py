"""The `ferry` command line: user management, serve's start-up contract, live user changes."""

from __future__ import annotations

import re
import socket
import subprocess

import paramiko
import pytest

from conftest import (
    add_user,
    can_login,
    clean_env,
    connect_transport,
    fingerprint,
    list_users,
    make_keypair,
    new_password,
    pub,
    run_ferry,
    sftp_client,
)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return d


# ------------------------------------------------------------------------------------------------
# user management without a server


def test_help_lists_commands(ferry):
    out = run_ferry(ferry, None, "--help")
    text = out.stdout + out.stderr
    for word in ("serve", "user", "--data-dir"):
        assert word in text, f"`ferry --help` does not mention {word}:\n{text}"
    run_ferry(ferry, None, "serve", "--help")
    run_ferry(ferry, None, "user", "--help")


def test_user_add_list_remove(ferry, data_dir):
    add_user(ferry, data_dir, "alice", password=new_password())
    add_user(ferry, data_dir, "bob", password=new_password())
    assert sorted(list_users(ferry, data_dir)) == ["alice", "bob"]

    # default home: D/files/NAME, created by `user add`
    assert (data_dir / "files" / "alice").is_dir()
    assert (data_dir / "files" / "bob").is_dir()

    # "ferry user remove bob   # their files stay on disk", with a custom --home too
    (data_dir / "files" / "bob" / "report.txt").write_text("bob's report\n")
    (data_dir / "files" / "bob" / "sub").mkdir()
    carol_home = data_dir.parent / "carol-home"
    add_user(ferry, data_dir, "carol", password=new_password(), home=carol_home)
    (carol_home / "kept.bin").write_bytes(b"\0" * 100)
    out = run_ferry(ferry, data_dir, "user", "remove", "bob").stdout
    assert "files are left in place" in out, out
    run_ferry(ferry, data_dir, "user", "remove", "carol")
    assert list_users(ferry, data_dir) == ["alice"]
    assert (data_dir / "files" / "bob" / "report.txt").read_text() == "bob's report\n", "user remove deleted files"
    assert (data_dir / "files" / "bob" / "sub").is_dir()
    assert (carol_home / "kept.bin").read_bytes() == b"\0" * 100, "user remove deleted a --home's files"


def test_user_add_duplicate_fails(ferry, data_dir):
    add_user(ferry, data_dir, "alice", password=new_password())
    proc = run_ferry(ferry, data_dir, "user", "add", "alice", "--password-stdin", input="x" * 12 + "\n", check=False)
    assert proc.returncode != 0, f"adding alice twice succeeded:\n{proc.stdout}{proc.stderr}"
    assert list_users(ferry, data_dir) == ["alice"]


def test_user_remove_unknown_fails(ferry, data_dir):
    proc = run_ferry(ferry, data_dir, "user", "remove", "nobody", check=False)
    assert proc.returncode != 0
    assert (proc.stderr + proc.stdout).strip(), "failing `user remove` printed no message"


def test_user_list_empty_data_dir(ferry, data_dir):
    proc = run_ferry(ferry, data_dir, "user", "list")
    assert [line for line in proc.stdout.splitlines() if line.strip()] == []


def test_data_dir_from_environment(ferry, data_dir):
    """FERRY_DATA_DIR is the default for --data-dir."""
    add_user(ferry, data_dir, "carol", password=new_password())
    proc = run_ferry(ferry, None, "user", "list", env={"FERRY_DATA_DIR": str(data_dir)})
    assert [l.split()[0] for l in proc.stdout.splitlines() if l.strip()] == ["carol"]


def test_user_add_custom_home(ferry, data_dir, tmp_path, server_factory):
    home = tmp_path / "elsewhere" / "dave-home"
    home.mkdir(parents=True)
    (home / "already-there.txt").write_text("hello from disk\n")
    password = new_password()
    add_user(ferry, data_dir, "dave", password=password, home=home)
    srv = server_factory(data_dir)
    srv.user, srv.password = "dave", password
    with sftp_client(srv, user="dave", password=password) as sftp:
        assert "already-there.txt" in sftp.listdir("/")
        with sftp.open("/uploaded.txt", "w") as f:
            f.write(b"via sftp\n")
    assert (home / "uploaded.txt").read_bytes() == b"via sftp\n"
    assert not (data_dir / "files" / "dave" / "uploaded.txt").exists()


def test_generate_password_can_log_in(ferry, data_dir, server_factory):
    proc = run_ferry(ferry, data_dir, "user", "add", "erin", "--generate-password")
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    assert lines, "--generate-password printed nothing on stdout"
    # Assumption: the password is the last word printed (alone, or after a label like `password:`).
    password = lines[-1].split()[-1]
    assert len(password) >= 12, f"generated password looks too short: {password!r}"
    srv = server_factory(data_dir)
    assert can_login(srv, "erin", password)
    assert not can_login(srv, "erin", password + "x")


def test_public_key_login_and_key_add(ferry, data_dir, tmp_path, server_factory):
    k1 = make_keypair(tmp_path / "k1")
    k2 = make_keypair(tmp_path / "k2", key_type="ecdsa")
    add_user(ferry, data_dir, "frank", password=new_password(), public_keys=[pub(k1)])
    srv = server_factory(data_dir)
    assert can_login(srv, "frank", key=k1)
    assert not can_login(srv, "frank", key=k2), "a key that was never added was accepted"
    # key add takes effect at the next login, without restart
    run_ferry(ferry, data_dir, "user", "key", "add", "frank", str(pub(k2)))
    assert can_login(srv, "frank", key=k2)
    assert can_login(srv, "frank", key=k1)


def test_user_add_rejects_garbage_public_key(ferry, data_dir, tmp_path):
    """A key that is not one fails the whole `user add`: no half-made user (with a password and no key) is left."""
    good = make_keypair(tmp_path / "k")
    bad = tmp_path / "bad.pub"
    bad.write_text("this is not an ssh key\n")
    proc = run_ferry(
        ferry, data_dir, "user", "add", "gina", "--password-stdin", "--public-key", str(pub(good)),
        "--public-key", str(bad), input=new_password() + "\n", check=False,
    )
    assert proc.returncode == 1, f"exit {proc.returncode}: user add accepted a file that is not a public key"
    assert str(bad) in proc.stderr, f"the error does not name the bad file:\n{proc.stderr}"
    assert "gina" not in list_users(ferry, data_dir), "a failed `user add` left the user behind"
    # The name is free: the same command with good keys works.
    run_ferry(ferry, data_dir, "user", "add", "gina", "--public-key", str(pub(good)))
    listed = run_ferry(ferry, data_dir, "user", "list").stdout
    assert re.search(r"^gina\t1 key\(s\)\t", listed, re.M), listed


# ------------------------------------------------------------------------------------------------
# serve start-up


def test_serve_rejects_unknown_protocol(ferry, data_dir):
    proc = subprocess.run(
        [str(ferry), "--data-dir", str(data_dir), "serve", "--listen", "gopher=127.0.0.1:0"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20, env=clean_env(),
    )
    assert proc.returncode != 0


def test_bootstrap_demo_user_and_host_keys(ferry, data_dir, server_factory):
    srv = server_factory(data_dir)
    out = srv.stdout()
    assert srv.demo_password, f"no `demo password: ...` line on an empty data dir:\n{out}"
    assert out.count("demo password:") == 1
    assert srv.host_keys, f"no `host key ALG SHA256:...` lines:\n{out}"
    algs = [alg for alg, _ in srv.host_keys]
    assert "ssh-ed25519" in algs, f"no ed25519 host key printed: {algs}"
    assert "demo" in list_users(ferry, data_dir)
    # What it serves, one fact per line, as the README shows: first the version, `ready` last, and the command
    # to connect with.
    lines = out.splitlines()
    assert re.match(r"^Ferry \d+\.\d+\.\d+ is serving$", lines[0]) and lines[-1] == "ready", out
    assert f"connect: sftp -P {srv.port} demo@127.0.0.1" in lines, out

    # The demo user logs in with the printed password, and the printed fingerprint is the one served.
    t = connect_transport(srv, user="demo", password=srv.demo_password)
    try:
        served = fingerprint(t.get_remote_server_key())
        assert served in [fp for _, fp in srv.host_keys], f"served host key {served} not among {srv.host_keys}"
        sftp = paramiko.SFTPClient.from_transport(t)
        sftp.listdir("/")
        sftp.close()
    finally:
        t.close()
    assert not can_login(srv, "demo", srv.demo_password + "nope")

    # A restart keeps the host keys and does not create or print the demo password again.
    first_keys = sorted(srv.host_keys)
    assert srv.stop() == 0
    srv2 = server_factory(data_dir)
    assert srv2.demo_password is None, f"demo password printed again on restart:\n{srv2.stdout()}"
    assert sorted(srv2.host_keys) == first_keys, "host keys changed across a restart"
    assert can_login(srv2, "demo", srv.demo_password)


def test_no_demo_user_when_users_exist(ferry, data_dir, server_factory):
    add_user(ferry, data_dir, "alice", password=new_password())
    srv = server_factory(data_dir)
    assert srv.demo_password is None
    assert "demo" not in list_users(ferry, data_dir)


@pytest.mark.parametrize("alg_prefix", ["ssh-ed25519", "rsa"])
def test_host_key_algorithms(server, alg_prefix):
    """Each supported host key type is printed and served with the printed fingerprint."""
    if alg_prefix == "rsa":
        printed = [(a, fp) for a, fp in server.host_keys if "rsa" in a]
    else:
        printed = [(a, fp) for a, fp in server.host_keys if a.startswith(alg_prefix)]
    assert printed, f"no {alg_prefix}* host key printed; got {server.host_keys}"
    alg, fp = printed[0]
    if "rsa" in alg:
        key_types = ["rsa-sha2-512", "rsa-sha2-256"]
    else:
        key_types = [alg]
    sock = socket.create_connection((server.host, server.port), timeout=15)
    t = paramiko.Transport(sock)
    try:
        t.get_security_options().key_types = key_types
        t.connect(username=server.user, password=server.password)
        assert fingerprint(t.get_remote_server_key()) == fp
    finally:
        t.close()


# ------------------------------------------------------------------------------------------------
# user changes while the server runs


def test_user_added_while_running_can_log_in(ferry, server):
    pw = new_password()
    assert not can_login(server, "bob", pw)
    add_user(ferry, server.data_dir, "bob", password=pw)
    assert can_login(server, "bob", pw)
    assert (server.data_dir / "files" / "bob").is_dir()
    # bob's root is his own: he does not see alice's files
    (server.root / "alice-only.txt").write_text("secret")
    with sftp_client(server, user="bob", password=pw) as sftp:
        assert "alice-only.txt" not in sftp.listdir("/")


def test_removed_user_cannot_log_in(ferry, server):
    assert can_login(server, "alice", server.password)
    assert can_login(server, "alice", key=server.key)
    run_ferry(ferry, server.data_dir, "user", "remove", "alice")
    assert not can_login(server, "alice", server.password)
    assert not can_login(server, "alice", key=server.key)


def test_passwd_takes_effect(ferry, server):
    new = new_password()
    run_ferry(ferry, server.data_dir, "user", "passwd", "alice", "--password-stdin", input=new + "\n")
    assert not can_login(server, "alice", server.password), "old password still accepted after passwd"
    assert can_login(server, "alice", new)
    # keys are untouched by a password change
    assert can_login(server, "alice", key=server.key)


def test_passwd_unknown_user_fails(ferry, server):
    proc = run_ferry(ferry, server.data_dir, "user", "passwd", "nobody", "--password-stdin", input="abcdefghijkl\n", check=False)
    assert proc.returncode != 0


def test_sigterm_exits_zero_with_idle_client_connected(server):
    """SIGTERM while a client is connected (idle) still ends the process with 0 within the grace period."""
    t = connect_transport(server)
    try:
        sftp = paramiko.SFTPClient.from_transport(t)
        sftp.listdir("/")
        assert server.stop() == 0
    finally:
        t.close()


def test_firewall_prints_rules_for_what_serve_would_open(ferry, data_dir, tmp_path):
    """`ferry firewall` takes serve's options and opens exactly its listeners, plus the passive range
    when an FTP listener exists."""
    def fw(*args):
        proc = subprocess.run(
            [str(ferry), "--data-dir", str(data_dir), "firewall", *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20, env=clean_env(),
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    # Without options: the quickstart's three `any` ports and the default passive range.
    out = fw()
    for port in (2222, 2121, 9990):
        assert re.search(rf"^iptables -A INPUT -p tcp --dport {port} .*SFTP", out, re.M), out
    assert re.search(r"--dport 50000:51000 .*passive", out, re.M), out
    out = fw("--listen", "sftp=0.0.0.0:2022", "--listen", "ftps=192.0.2.10:21", "--passive-ports", "40000-40099")
    assert re.search(r"^iptables -A INPUT -p tcp --dport 2022 .*SFTP", out, re.M), out
    assert re.search(r"^iptables -A INPUT -p tcp -d 192\.0\.2\.10 --dport 21 .*explicit FTPS", out, re.M), out
    assert re.search(r"--dport 40000:40099 .*passive", out, re.M), out
    out = fw("--format", "nftables", "--listen", "sftp=[::]:22")
    assert "tcp dport 22 ct state new accept" in out and "passive" not in out, out
    out = fw("--format", "ufw", "--listen", "any=0.0.0.0:2222")
    assert "ufw allow proto tcp to any port 2222" in out and "port 50000:51000" in out, out
    # The same configuration file as serve.
    conf = tmp_path / "ferry.toml"
    conf.write_text('[server]\nlisteners = [ { protocols = "ftps-implicit", address = "0.0.0.0:990" } ]\npassive_ports = "60000-60010"\n')
    proc = subprocess.run(
        [str(ferry), "--data-dir", str(data_dir), "--config", str(conf), "firewall"],
        capture_output=True, text=True, timeout=20, env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "--dport 990 " in proc.stdout and "--dport 60000:60010 " in proc.stdout, proc.stdout
    # `--listen` replaces the configured listeners (and --passive-ports the range).
    proc = subprocess.run(
        [str(ferry), "--data-dir", str(data_dir), "--config", str(conf), "firewall", "--listen", "sftp=0.0.0.0:2200"],
        capture_output=True, text=True, timeout=20, env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "--dport 2200 " in proc.stdout and "--dport 990 " not in proc.stdout, proc.stdout
