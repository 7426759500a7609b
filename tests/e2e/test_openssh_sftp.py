"""OpenSSH's `sftp` client in batch mode against Ferry (public-key login)."""

from __future__ import annotations

import os
import re
import stat
import subprocess

import pytest

from conftest import (
    make_keypair,
    run_sftp,
    sha256_file,
    ssh_options,
    upload_temp_files,
    write_random,
)


def test_key_login_and_pwd(shared_server):
    out = run_sftp(shared_server, ["pwd"]).stdout
    assert re.search(r"Remote working directory: /\s*$", out, re.M), out


def test_unknown_key_rejected(shared_server, tmp_path):
    stranger = make_keypair(tmp_path, "stranger")
    proc = run_sftp(shared_server, ["pwd"], key=stranger, check=False, timeout=60)
    assert proc.returncode != 0
    assert "Permission denied" in proc.stderr, proc.stderr


def test_unknown_user_rejected(shared_server):
    proc = run_sftp(shared_server, ["pwd"], user="mallory", check=False, timeout=60)
    assert proc.returncode != 0


def test_put_get_roundtrip(shared_server, rdir, tmp_path):
    digest = write_random(tmp_path / "src.bin", 3 * 1024 * 1024 + 17)
    run_sftp(
        shared_server,
        [f"cd {rdir.remote}", "put src.bin up.bin", "get up.bin back.bin"],
        cwd=tmp_path,
    )
    assert sha256_file(rdir.local / "up.bin") == digest
    assert sha256_file(tmp_path / "back.bin") == digest
    assert upload_temp_files(rdir.local) == []


def test_put_overwrites_existing(shared_server, rdir, tmp_path):
    (rdir.local / "f.txt").write_bytes(b"old content that is longer than the new one\n" * 100)
    (tmp_path / "f.txt").write_bytes(b"new\n")
    run_sftp(shared_server, [f"put f.txt {rdir.r('f.txt')}"], cwd=tmp_path)
    assert (rdir.local / "f.txt").read_bytes() == b"new\n"


def test_put_preserve_and_fsync(shared_server, rdir, tmp_path):
    src = tmp_path / "p.txt"
    src.write_bytes(b"preserve me\n")
    os.chmod(src, 0o640)
    mtime = 1_000_000_000  # 2001-09-09
    os.utime(src, (mtime, mtime))
    proc = run_sftp(shared_server, [f"put -p -f p.txt {rdir.r('p.txt')}"], cwd=tmp_path)
    assert "does not support" not in proc.stderr, proc.stderr  # fsync@openssh.com must be advertised
    st = os.stat(rdir.local / "p.txt")
    assert (rdir.local / "p.txt").read_bytes() == b"preserve me\n"
    assert int(st.st_mtime) == mtime, "put -p did not set the modification time"
    assert stat.S_IMODE(st.st_mode) == 0o640, oct(st.st_mode)


def test_reget_resumes_download(shared_server, rdir, tmp_path):
    digest = write_random(rdir.local / "big.bin", 2 * 1024 * 1024 + 5)
    with open(rdir.local / "big.bin", "rb") as f:
        head = f.read(700_001)
    (tmp_path / "big.bin").write_bytes(head)
    run_sftp(shared_server, [f"reget {rdir.r('big.bin')} big.bin"], cwd=tmp_path)
    assert (tmp_path / "big.bin").stat().st_size == (rdir.local / "big.bin").stat().st_size
    assert sha256_file(tmp_path / "big.bin") == digest


def test_reput_resumes_upload(shared_server, rdir, tmp_path):
    digest = write_random(tmp_path / "big.bin", 2 * 1024 * 1024 + 3)
    with open(tmp_path / "big.bin", "rb") as f:
        head = f.read(900_000)
    (rdir.local / "big.bin").write_bytes(head)
    run_sftp(shared_server, [f"reput big.bin {rdir.r('big.bin')}"], cwd=tmp_path)
    assert (rdir.local / "big.bin").stat().st_size == (tmp_path / "big.bin").stat().st_size
    assert sha256_file(rdir.local / "big.bin") == digest
    assert upload_temp_files(rdir.local) == []


def test_mkdir_ls_rename_rm_rmdir(shared_server, rdir, tmp_path):
    (tmp_path / "a.txt").write_text("A\n")
    out = run_sftp(
        shared_server,
        [
            f"cd {rdir.remote}",
            "mkdir sub",
            "put a.txt sub/a.txt",
            "put a.txt top.txt",
            "ls -1",
            "ls -1 sub",
        ],
        cwd=tmp_path,
    ).stdout
    assert (rdir.local / "sub").is_dir()
    assert (rdir.local / "sub" / "a.txt").read_text() == "A\n"
    names = [l.strip() for l in out.splitlines() if not l.startswith("sftp>")]
    assert "sub" in names and "top.txt" in names, out
    assert any(n.endswith("sub/a.txt") or n == "a.txt" for n in names), out

    run_sftp(shared_server, [f"cd {rdir.remote}", "rename sub/a.txt sub/b.txt", "rename top.txt sub/top.txt"])
    assert sorted(os.listdir(rdir.local / "sub")) == ["b.txt", "top.txt"]
    assert not (rdir.local / "top.txt").exists()

    # rmdir of a non-empty directory fails and leaves it alone (`-` keeps the batch going)
    proc = run_sftp(shared_server, [f"cd {rdir.remote}", "-rmdir sub"], check=False)
    assert (rdir.local / "sub" / "b.txt").exists(), proc.stdout

    run_sftp(shared_server, [f"cd {rdir.remote}", "rm sub/b.txt", "rm sub/top.txt", "rmdir sub"])
    assert os.listdir(rdir.local) == []


def test_rm_missing_file_fails(shared_server, rdir):
    proc = run_sftp(shared_server, [f"rm {rdir.r('nope.txt')}"], check=False)
    assert proc.returncode != 0


def test_rename_posix_overwrites_legacy_does_not(shared_server, rdir):
    (rdir.local / "a").write_text("a")
    (rdir.local / "b").write_text("b")
    (rdir.local / "c").write_text("c")
    # legacy SFTPv3 rename (-l) must not replace an existing target
    proc = run_sftp(shared_server, [f"cd {rdir.remote}", "rename -l a b"], check=False)
    assert proc.returncode != 0, "legacy rename replaced an existing file"
    assert (rdir.local / "a").read_text() == "a" and (rdir.local / "b").read_text() == "b"
    # default rename uses posix-rename@openssh.com, which replaces
    run_sftp(shared_server, [f"cd {rdir.remote}", "rename c b"])
    assert (rdir.local / "b").read_text() == "c"
    assert not (rdir.local / "c").exists()


def test_chmod(shared_server, rdir):
    (rdir.local / "m.txt").write_text("mode\n")
    os.chmod(rdir.local / "m.txt", 0o644)
    out = run_sftp(shared_server, [f"cd {rdir.remote}", "chmod 640 m.txt", "ls -l m.txt"]).stdout
    assert stat.S_IMODE(os.stat(rdir.local / "m.txt").st_mode) == 0o640
    assert re.search(r"^-rw-r-----\s", out, re.M), out


def test_chmod_h_does_not_follow_a_link(shared_server, rdir):
    # `chmod -h` sends lsetstat@openssh.com: the link itself, never its target. Linux keeps no mode on a
    # link, so the request is refused, and the file it points to keeps its mode.
    (rdir.local / "m.txt").write_text("mode\n")
    os.chmod(rdir.local / "m.txt", 0o644)
    os.symlink("m.txt", rdir.local / "link")
    proc = run_sftp(shared_server, [f"cd {rdir.remote}", "chmod -h 600 link"], check=False)
    assert proc.returncode != 0, "chmod -h on a link succeeded"
    assert "lsetstat" in proc.stderr, proc.stderr
    assert stat.S_IMODE(os.stat(rdir.local / "m.txt").st_mode) == 0o644, "chmod -h changed the link's target"
    # On a file that is not a link, -h changes nothing about chmod.
    run_sftp(shared_server, [f"cd {rdir.remote}", "chmod -h 600 m.txt"])
    assert stat.S_IMODE(os.stat(rdir.local / "m.txt").st_mode) == 0o600


def test_symlink_and_hardlink(shared_server, rdir, tmp_path):
    (rdir.local / "target.txt").write_text("link target\n")
    run_sftp(
        shared_server,
        [f"cd {rdir.remote}", "ln -s target.txt soft.txt", "ln target.txt hard.txt", "get soft.txt got.txt"],
        cwd=tmp_path,
    )
    assert os.path.islink(rdir.local / "soft.txt")
    assert (tmp_path / "got.txt").read_text() == "link target\n"
    # `ln` without -s uses hardlink@openssh.com
    assert os.stat(rdir.local / "hard.txt").st_ino == os.stat(rdir.local / "target.txt").st_ino
    out = run_sftp(shared_server, [f"cd {rdir.remote}", "ls -l"]).stdout
    assert re.search(r"^l\S+\s.*soft\.txt", out, re.M), out


def test_df(shared_server):
    out = run_sftp(shared_server, ["df /", "df -h /", "df -i /"]).stdout
    body = [l for l in out.splitlines() if not l.startswith("sftp>")]
    assert any(re.search(r"Size|Inodes", l) for l in body), out
    numeric = [l for l in body if re.match(r"^\s*\d", l)]
    assert len(numeric) >= 3, f"df printed no numbers:\n{out}"
    size_kb = int(numeric[0].split()[0])
    assert size_kb > 0


@pytest.mark.parametrize(
    "opts",
    [
        ["-o", "Ciphers=aes128-gcm@openssh.com"],
        ["-o", "Ciphers=aes256-gcm@openssh.com"],
        ["-o", "Ciphers=chacha20-poly1305@openssh.com"],
        ["-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha2-256"],
        ["-o", "Ciphers=aes256-ctr", "-o", "MACs=hmac-sha2-512-etm@openssh.com"],
        ["-o", "Ciphers=aes192-ctr", "-o", "MACs=hmac-sha2-256-etm@openssh.com"],
        ["-o", "KexAlgorithms=curve25519-sha256"],
        ["-o", "HostKeyAlgorithms=ssh-ed25519"],
        ["-o", "HostKeyAlgorithms=rsa-sha2-256"],
        ["-o", "HostKeyAlgorithms=rsa-sha2-512"],
    ],
    ids=lambda o: "+".join(x.split("=", 1)[1] for x in o if "=" in x),
)
def test_algorithms_roundtrip(shared_server, rdir, tmp_path, opts):
    digest = write_random(tmp_path / "c.bin", 1024 * 1024 + 1)
    run_sftp(
        shared_server, [f"cd {rdir.remote}", "put c.bin c.bin", "get c.bin back.bin"], extra=opts, cwd=tmp_path
    )
    assert sha256_file(rdir.local / "c.bin") == digest
    assert sha256_file(tmp_path / "back.bin") == digest


def test_password_login_with_sshpass(shared_server, rdir, tmp_path):
    (tmp_path / "pw.txt").write_text("via password\n")
    cmd = [
        "sshpass", "-e",
        "sftp", "-o", "BatchMode=no", "-b", "-", "-P", str(shared_server.port),
        *ssh_options(shared_server, key=None),
        "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive",
        f"{shared_server.user}@{shared_server.host}",
    ]
    env = dict(os.environ, SSHPASS=shared_server.password)
    proc = subprocess.run(
        cmd, input=f"put pw.txt {rdir.r('pw.txt')}\n", capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (rdir.local / "pw.txt").read_text() == "via password\n"
    env["SSHPASS"] = shared_server.password + "-wrong"
    proc = subprocess.run(cmd, input="pwd\n", capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode != 0


def test_ssh_exec_refused(shared_server, tmp_path):
    marker = tmp_path / "executed"
    proc = subprocess.run(
        ["ssh", "-T", "-p", str(shared_server.port), *ssh_options(shared_server), "-o", "BatchMode=yes",
         f"{shared_server.user}@{shared_server.host}", f"touch {marker}; echo EXECUTED"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "EXECUTED" not in proc.stdout
    assert not marker.exists()
    assert "SFTP only" in out or "request failed" in out, out


def test_large_batch_of_small_files(shared_server, rdir, tmp_path):
    src = tmp_path / "many"
    src.mkdir()
    for i in range(60):
        (src / f"f{i:03}.txt").write_text(f"file {i}\n" * (i + 1))
    run_sftp(shared_server, [f"put -r many {rdir.r('many')}"], cwd=tmp_path)
    got = sorted(os.listdir(rdir.local / "many"))
    assert got == sorted(os.listdir(src))
    for name in got:
        assert (rdir.local / "many" / name).read_bytes() == (src / name).read_bytes()
    run_sftp(shared_server, [f"get -r {rdir.r('many')} back"], cwd=tmp_path)
    assert sorted(os.listdir(tmp_path / "back")) == got
