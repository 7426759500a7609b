"""`ferry user key add|list|remove` with authorized_keys files, and `user show` / `user list --json`."""

from __future__ import annotations

import json
import subprocess

import paramiko

from conftest import add_user, can_login, make_keypair, new_password, pub, run_ferry


def keygen_l(pubfile) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(pubfile)], capture_output=True, text=True, check=True).stdout.strip()


def test_authorized_keys_file_every_key(server, ferry, tmp_path):
    srv = server
    pw = new_password()
    add_user(ferry, srv.data_dir, "kim", password=pw)
    a = make_keypair(tmp_path / "k", "id_a")
    b = make_keypair(tmp_path / "k", "id_b", key_type="rsa")
    ak = tmp_path / "authorized_keys"
    ak.write_text(f"# kim's keys\n\n{pub(a).read_text().strip()}\nno-pty,no-port-forwarding {pub(b).read_text().strip()}\n")
    out = run_ferry(ferry, srv.data_dir, "user", "key", "add", "kim", str(ak)).stdout
    assert out.count("added key SHA256:") == 2, out
    listed = run_ferry(ferry, srv.data_dir, "user", "key", "list", "kim").stdout.splitlines()
    assert listed == [keygen_l(pub(a)), keygen_l(pub(b))], listed
    assert can_login(srv, "kim", key=a) and can_login(srv, "kim", key=b)
    fp_a = listed[0].split()[1]
    run_ferry(ferry, srv.data_dir, "user", "key", "remove", "kim", fp_a)
    assert run_ferry(ferry, srv.data_dir, "user", "key", "list", "kim").stdout.splitlines() == [keygen_l(pub(b))]
    assert not can_login(srv, "kim", key=a) and can_login(srv, "kim", key=b)
    gone = run_ferry(ferry, srv.data_dir, "user", "key", "remove", "kim", fp_a, check=False)
    assert gone.returncode == 2 and "has no key" in gone.stderr and "hint:" in gone.stderr


def test_restricting_key_options_are_refused_with_the_line(server, ferry, tmp_path):
    srv = server
    add_user(ferry, srv.data_dir, "lee", password=new_password())
    a = make_keypair(tmp_path / "k", "id_a")
    ak = tmp_path / "authorized_keys"
    ak.write_text(f"{pub(a).read_text().strip()}\nfrom=\"10.0.0.0/8\" {pub(a).read_text().strip()}\n")
    p = run_ferry(ferry, srv.data_dir, "user", "key", "add", "lee", str(ak), check=False)
    assert p.returncode == 1, p
    assert f"{ak}:2:" in p.stderr and "--allow-from" in p.stderr, p.stderr
    assert run_ferry(ferry, srv.data_dir, "user", "key", "list", "lee").stdout == "", "nothing may be added"
    junk = tmp_path / "junk"
    junk.write_text("ssh-ed25519 notbase64 x\n")
    p = run_ferry(ferry, srv.data_dir, "user", "key", "add", "lee", str(junk), check=False)
    assert p.returncode == 1 and f"{junk}:1:" in p.stderr, p.stderr


def test_user_add_reads_every_key_and_show_and_json(server, ferry, tmp_path):
    srv = server
    a = make_keypair(tmp_path / "k", "id_a")
    b = make_keypair(tmp_path / "k", "id_b")
    both = tmp_path / "both.pub"
    both.write_text(pub(a).read_text() + pub(b).read_text())
    run_ferry(ferry, srv.data_dir, "user", "add", "max", "--public-key", str(both))
    run_ferry(ferry, srv.data_dir, "user", "set", "max", "--expires", "2999-01-31", "--protocols", "sftp")
    run_ferry(ferry, srv.data_dir, "user", "perm", "set", "max", "/in", "upload-only")
    shown = run_ferry(ferry, srv.data_dir, "user", "show", "max").stdout
    assert "expires     2999-01-31" in shown and "protocols   sftp" in shown and "/in\tlist,upload" in shown, shown
    assert keygen_l(pub(a)) in shown and keygen_l(pub(b)) in shown, shown
    doc = json.loads(run_ferry(ferry, srv.data_dir, "user", "show", "max", "--json").stdout)
    assert doc["name"] == "max" and doc["password"] is False and len(doc["keys"]) == 2
    assert doc["expires"] == "2999-01-31" and doc["protocols"] == ["sftp"] and doc["disabled"] is False
    assert doc["permissions"] == [{"path": "/in", "permissions": "list,upload"}]
    every = json.loads(run_ferry(ferry, srv.data_dir, "user", "list", "--json").stdout)
    assert "max" in [u["name"] for u in every] and all("home" in u for u in every)
    missing = run_ferry(ferry, srv.data_dir, "user", "show", "nobody", check=False)
    assert missing.returncode != 0 and "nobody" in missing.stderr
