"""A user's files are jailed in their root: `..`, absolute paths and symlinks never escape."""

from __future__ import annotations

import os
import stat

import pytest

from conftest import run_sftp, sftp_client

PLANTED = b"planted inside the jail\n"


@pytest.fixture
def jail(server):
    """A server whose user root holds a decoy etc/passwd, plus a secret directory outside the root."""
    (server.root / "etc").mkdir()
    (server.root / "etc" / "passwd").write_bytes(PLANTED)
    outside = server.data_dir.parent / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    server.outside = outside
    return server


def _denied(fn, *args):
    """Runs fn(*args) and returns True when it failed with an SFTP error (IOError)."""
    try:
        fn(*args)
    except IOError:
        return True
    return False


def test_realpath_of_dotdot_is_root(jail):
    with sftp_client(jail) as sftp:
        assert sftp.normalize("..") == "/"
        assert sftp.normalize("/..") == "/"
        assert sftp.normalize("../../..") == "/"
        assert sftp.normalize("/etc/../../..") == "/"
        assert sftp.normalize(".") == "/"
        sftp.chdir("..")
        assert sftp.getcwd() == "/"
        assert sftp.normalize("../../etc") == "/etc"


def test_dotdot_paths_resolve_inside_root(jail):
    with sftp_client(jail) as sftp:
        # the decoy is what `..` leads to, never the machine's /etc/passwd
        assert sftp.open("/../../etc/passwd").read() == PLANTED
        assert sftp.open("../../../../etc/passwd").read() == PLANTED
        assert sftp.open("etc/../../../etc/passwd").read() == PLANTED
        with pytest.raises(FileNotFoundError):
            sftp.stat("/../../etc/shadow")
        with pytest.raises(FileNotFoundError):
            sftp.stat("/../../etc/hostname")
        assert sorted(sftp.listdir("/../..")) == sorted(os.listdir(jail.root))


def test_dotdot_without_decoy_is_not_found(server):
    with sftp_client(server) as sftp:
        with pytest.raises(FileNotFoundError):
            sftp.stat("/../../etc/passwd")
        with pytest.raises(IOError):
            sftp.open("/../../../../etc/passwd")
        with pytest.raises(IOError):
            sftp.listdir("/../../../../etc")


def test_absolute_paths_stay_in_root(jail):
    with sftp_client(jail) as sftp:
        with sftp.open("/abs.txt", "w") as f:
            f.write(b"absolute\n")
        sftp.mkdir("/tmp")
        with sftp.open("/tmp/inside.txt", "w") as f:
            f.write(b"x")
        assert sorted(sftp.listdir("/")) == sorted(os.listdir(jail.root))
    assert (jail.root / "abs.txt").read_bytes() == b"absolute\n"
    assert (jail.root / "tmp" / "inside.txt").exists()
    assert not os.path.exists("/abs.txt")


def test_writes_with_dotdot_stay_inside(jail):
    data_dir = jail.data_dir
    with sftp_client(jail) as sftp:
        for p in ("../escaped.txt", "/../../escaped2.txt", "../../../../../../tmp/escaped3.txt"):
            try:
                with sftp.open(p, "w") as f:
                    f.write(b"escape?")
            except IOError:
                pass
        with sftp.open("/f", "w") as f:
            f.write(b"f")
        for p in ("../renamed", "/../../renamed2"):
            try:
                sftp.rename("/f", p)
            except IOError:
                continue
            sftp.rename(p, "/f")  # bring it back when it landed inside
        for p in ("../newdir", "/../../newdir2"):
            try:
                sftp.mkdir(p)
            except IOError:
                pass
    for name in ("escaped.txt", "escaped2.txt", "renamed", "renamed2", "newdir", "newdir2"):
        assert not (data_dir / "files" / name).exists(), name
        assert not (data_dir / name).exists(), name
        assert not (data_dir.parent / name).exists(), name
    assert not os.path.exists("/tmp/escaped3.txt")


def test_symlink_on_disk_to_outside_dir_cannot_be_followed(jail):
    os.symlink(jail.outside, jail.root / "evil-abs")
    os.symlink("/etc", jail.root / "evil-etc")
    os.symlink("../../../outside", jail.root / "evil-rel")  # root = D/files/alice; D/.. holds outside
    assert (jail.root / "evil-rel" / "secret.txt").exists()  # the link is real on disk
    with sftp_client(jail) as sftp:
        for link in ("evil-abs", "evil-rel"):
            assert _denied(sftp.listdir, link), f"listdir followed {link} out of the root"
        # Links are followed as under a chroot: "/etc" is the root's own etc (the decoy), never the host's.
        assert sftp.listdir("evil-etc") == ["passwd"]
        with sftp.open("evil-etc/passwd") as f:
            assert f.read() == PLANTED
        assert _denied(sftp.open, "evil-abs/secret.txt")
        assert _denied(sftp.open, "evil-rel/secret.txt")
        assert _denied(sftp.stat, "evil-rel/secret.txt")
        assert _denied(lambda: sftp.open("evil-etc/hostname").read())
        # writing through it must not land outside
        try:
            with sftp.open("evil-abs/planted.txt", "w") as f:
                f.write(b"x")
        except IOError:
            pass
        try:
            sftp.mkdir("evil-rel/newdir")
        except IOError:
            pass
        # the links themselves are visible as links
        assert stat.S_ISLNK(sftp.lstat("evil-abs").st_mode)
    assert not (jail.outside / "planted.txt").exists()
    assert not (jail.outside / "newdir").exists()


def test_symlink_on_disk_to_outside_file_cannot_be_read(jail):
    os.symlink(jail.outside / "secret.txt", jail.root / "secret-link")
    os.symlink("/etc/passwd", jail.root / "passwd-link")
    with sftp_client(jail) as sftp:
        # An absolute target is resolved inside the root: /etc/passwd is the decoy, the outside path is missing.
        with pytest.raises(FileNotFoundError):
            sftp.open("secret-link").read()
        assert sftp.open("passwd-link").read() == PLANTED
        try:
            with sftp.open("secret-link", "w") as f:
                f.write(b"overwritten")
        except IOError:
            pass
        try:
            sftp.chmod("secret-link", 0o777)
        except IOError:
            pass
    assert (jail.outside / "secret.txt").read_text() == "top secret\n"
    assert stat.S_IMODE(os.stat(jail.outside / "secret.txt").st_mode) != 0o777


def test_symlink_via_sftp_resolves_inside_root(jail):
    with sftp_client(jail) as sftp:
        sftp.symlink("/etc/passwd", "/mylink")
        sftp.symlink("../../../../etc/passwd", "/rellink")
        sftp.symlink("/etc", "/etclink")
        assert stat.S_ISLNK(sftp.lstat("/mylink").st_mode)
        for link in ("/mylink", "/rellink"):
            data = sftp.open(link).read()
            assert data == PLANTED, f"{link} escaped the root: {data[:60]!r}"
        names = sftp.listdir("/etclink")
        assert names == ["passwd"], f"/etclink listed the real /etc: {names[:10]}"
        assert sftp.normalize("/etclink/..") == "/"


def test_symlink_via_sftp_with_openssh(jail, tmp_path):
    run_sftp(jail, ["ln -s /etc/passwd /pw", "get /pw got"], cwd=tmp_path)
    assert (tmp_path / "got").read_bytes() == PLANTED, "the link was not followed inside the root"


def test_hardlink_cannot_reach_outside(jail):
    with sftp_client(jail) as sftp:
        try:
            sftp._request(200, "hardlink@openssh.com", "/../../../outside/secret.txt", "/hl")
        except IOError:
            pass
        try:
            data = sftp.open("/hl").read()
        except IOError:
            data = None
    assert data is None or b"top secret" not in data


def test_other_users_files_are_invisible(ferry, jail):
    from conftest import add_user, new_password

    pw = new_password()
    add_user(ferry, jail.data_dir, "bob", password=pw)
    (jail.data_dir / "files" / "bob" / "bobs.txt").write_text("bob's")
    with sftp_client(jail) as sftp:
        for p in ("/../bob/bobs.txt", "../bob/bobs.txt", "/../../files/bob/bobs.txt"):
            with pytest.raises(IOError):
                sftp.open(p)
    with sftp_client(jail, user="bob", password=pw) as sftp:
        assert sftp.listdir("/") == ["bobs.txt"]
        with pytest.raises(IOError):
            sftp.open("/../alice/etc/passwd")
