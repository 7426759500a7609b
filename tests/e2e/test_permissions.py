"""Per-directory permissions: the same decision over SFTP and FTPS, a log line for each denial, and the
`ferry user perm` / `user set --permissions` / `user add --permissions` commands.

The partner `acme` may read everything (/ read-only), only drop files into /in (upload-only: no download,
no overwrite) and empty /out (download-only: list, download, delete)."""

from __future__ import annotations

import ftplib
import io
import re
import stat

import paramiko
import pytest

from conftest import add_user, new_password, run_ferry, sftp_client
from ftps_helpers import ftps_session


@pytest.fixture(scope="module")
def acme(shared_ftps_server, ferry):
    srv = shared_ftps_server
    pw = new_password()
    add_user(ferry, srv.data_dir, "acme", password=pw)
    home = srv.data_dir / "files" / "acme"
    for d in ("in", "out"):
        (home / d).mkdir(parents=True, exist_ok=True)
    (home / "readme.txt").write_bytes(b"welcome")
    run_ferry(ferry, srv.data_dir, "user", "perm", "set", "acme", "/", "read-only")
    run_ferry(ferry, srv.data_dir, "user", "perm", "set", "acme", "/in", "upload-only")
    run_ferry(ferry, srv.data_dir, "user", "perm", "set", "acme", "out", "download-only")
    return srv, pw, home


class Sftp:
    name = "sftp"

    def __init__(self, srv, pw):
        self.cm = sftp_client(srv, user="acme", password=pw)
        self.c = self.cm.__enter__()

    def close(self):
        self.cm.__exit__(None, None, None)

    def listdir(self, p):
        return sorted(self.c.listdir(p))

    def get(self, p):
        with self.c.open(p, "rb") as f:
            return f.read()

    def put(self, p, data):
        self.c.putfo(io.BytesIO(data), p, confirm=False)

    def mkdir(self, p):
        self.c.mkdir(p)

    def remove(self, p):
        self.c.remove(p)

    def rename(self, a, b):
        self.c.posix_rename(a, b)

    def chmod(self, p, mode):
        self.c.chmod(p, mode)


class Ftps:
    name = "ftps"

    def __init__(self, srv, pw):
        self.cm = ftps_session(srv, user="acme", password=pw)
        self.c = self.cm.__enter__()

    def close(self):
        self.cm.__exit__(None, None, None)

    def listdir(self, p):
        return sorted(n.rsplit("/", 1)[-1] for n in self.c.nlst(p))

    def get(self, p):
        buf = io.BytesIO()
        self.c.retrbinary(f"RETR {p}", buf.write)
        return buf.getvalue()

    def put(self, p, data):
        self.c.storbinary(f"STOR {p}", io.BytesIO(data))

    def mkdir(self, p):
        self.c.mkd(p)

    def remove(self, p):
        self.c.delete(p)

    def rename(self, a, b):
        self.c.rename(a, b)

    def chmod(self, p, mode):
        self.c.voidcmd(f"SITE CHMOD {mode:o} {p}")


DENIED = (PermissionError, IOError, ftplib.error_perm)


def denied(fn, *args):
    try:
        fn(*args)
    except DENIED as e:
        if isinstance(e, ftplib.error_perm):
            assert str(e).startswith("550"), e
        return True
    return False


@pytest.mark.parametrize("proto", [Sftp, Ftps], ids=["sftp", "ftps"])
def test_the_same_rules_on_both_protocols(acme, proto):
    srv, pw, home = acme
    tag = proto.name
    before = len(srv.log())
    c = proto(srv, pw)
    try:
        # / is read-only
        assert "readme.txt" in c.listdir("/")
        assert c.get("/readme.txt") == b"welcome"
        assert denied(c.put, f"/{tag}.txt", b"x")
        assert denied(c.mkdir, f"/{tag}-dir")
        assert denied(c.remove, "/readme.txt")
        assert denied(c.chmod, "/readme.txt", 0o600)
        # /in is a drop box: upload, list; no download, overwrite, delete or rename
        c.put(f"/in/{tag}.dat", b"dropped")
        assert f"{tag}.dat" in c.listdir("/in")
        assert denied(c.get, f"/in/{tag}.dat")
        assert denied(c.put, f"/in/{tag}.dat", b"replaced")
        assert denied(c.remove, f"/in/{tag}.dat")
        assert denied(c.rename, f"/in/{tag}.dat", f"/in/{tag}.moved")
        # /out is an outbox: list, download, delete; no upload
        (home / "out" / f"{tag}.csv").write_bytes(b"a,b")
        assert c.get(f"/out/{tag}.csv") == b"a,b"
        c.remove(f"/out/{tag}.csv")
        assert denied(c.put, f"/out/{tag}.new", b"x")
    finally:
        c.close()
    assert (home / "in" / f"{tag}.dat").read_bytes() == b"dropped", "a denied overwrite changed the file"
    assert not (home / f"{tag}.txt").exists() and not (home / "out" / f"{tag}.new").exists()
    assert (home / "readme.txt").read_bytes() == b"welcome"
    assert stat.S_IMODE((home / "readme.txt").stat().st_mode) != 0o600
    log = srv.log()[before:]
    denials = re.findall(rf'permission denied: (\w+) is not allowed here.*user="?acme"?.*protocol="?{tag}\b', log)
    assert {"upload", "mkdir", "delete", "chmod", "download", "overwrite", "rename"} <= set(denials), log


def test_perm_commands(acme, ferry):
    srv, _, _ = acme
    out = run_ferry(ferry, srv.data_dir, "user", "perm", "list", "acme").stdout
    assert out.splitlines() == ["/\tlist,download", "/in\tlist,upload", "/out\tlist,download,delete"], out
    bad = run_ferry(ferry, srv.data_dir, "user", "perm", "set", "acme", "/x", "list,fly", check=False)
    assert bad.returncode == 2 and '"fly" is not a permission' in bad.stderr and "hint:" in bad.stderr, bad.stderr
    gone = run_ferry(ferry, srv.data_dir, "user", "perm", "remove", "acme", "/nowhere", check=False)
    assert gone.returncode == 2 and "no rule at /nowhere" in gone.stderr, gone.stderr
    missing = run_ferry(ferry, srv.data_dir, "user", "perm", "set", "nobody", "/", "full", check=False)
    assert missing.returncode != 0 and "nobody" in missing.stderr


def test_user_add_and_set_permissions(shared_ftps_server, ferry):
    srv = shared_ftps_server
    pw = new_password()
    run_ferry(ferry, srv.data_dir, "user", "add", "viewer", "--password-stdin", "--permissions", "read-only",
              input=pw + "\n")
    (srv.data_dir / "files" / "viewer" / "a.txt").write_bytes(b"a")
    with sftp_client(srv, user="viewer", password=pw) as sftp:
        assert sftp.listdir("/") == ["a.txt"]
        with pytest.raises(PermissionError):
            sftp.putfo(io.BytesIO(b"x"), "/b.txt", confirm=False)
    run_ferry(ferry, srv.data_dir, "user", "set", "viewer", "--permissions", "full")
    with sftp_client(srv, user="viewer", password=pw) as sftp:
        sftp.putfo(io.BytesIO(b"x"), "/b.txt", confirm=False)
    assert (srv.data_dir / "files" / "viewer" / "b.txt").read_bytes() == b"x"
    bad = run_ferry(ferry, srv.data_dir, "user", "add", "w2", "--permissions", "read-ony", check=False)
    assert bad.returncode == 2 and "w2" not in run_ferry(ferry, srv.data_dir, "user", "list").stdout
