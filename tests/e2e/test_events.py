"""One event stream for every protocol: the same operation gives the same log line over SFTP and FTPS.

Before the connection core, FTP logged deletes and renames and SFTP did not; both now pass the core's gate,
which records every change (mkdir, rename, delete, rmdir, symlink) with the same fields.
"""

from __future__ import annotations

import io
import re

from conftest import sftp_client
from ftps_helpers import ftps_session

FIELDS = r'user="?alice"? client="?127\.0\.0\.1:\d+"? protocol="?{proto}"?'


def event_lines(log: str, proto: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in log.splitlines():
        m = re.search(r"\s(INFO|WARN)\s+(mkdir|rename|delete|rmdir|symlink|login|logout|transfer)\b", line)
        if m and re.search(FIELDS.format(proto=proto), line):
            out.setdefault(m.group(2), []).append(line)
    return out


def test_sftp_and_ftps_log_the_same_changes(frdir):
    srv = frdir.server
    base = frdir.remote
    before = len(srv.log())
    with sftp_client(srv) as sftp:
        sftp.mkdir(f"{base}/s")
        sftp.putfo(io.BytesIO(b"x" * 10), f"{base}/s/a.txt")
        sftp.rename(f"{base}/s/a.txt", f"{base}/s/b.txt")
        sftp.symlink("b.txt", f"{base}/s/l")
        sftp.remove(f"{base}/s/l")
        sftp.remove(f"{base}/s/b.txt")
        sftp.rmdir(f"{base}/s")
    with ftps_session(srv) as ftps:
        ftps.mkd(f"{base}/f")
        ftps.storbinary(f"STOR {base}/f/a.txt", io.BytesIO(b"y" * 10))
        ftps.rename(f"{base}/f/a.txt", f"{base}/f/b.txt")
        ftps.delete(f"{base}/f/b.txt")
        ftps.rmd(f"{base}/f")
    # Each session logs its logout once the server has seen the connection close, in either order.
    assert srv.wait_for_log(r'logout user="?alice"?.*protocol="?ftps', since=before, timeout=5)
    assert srv.wait_for_log(r'logout user="?alice"?.*protocol="?sftp', since=before, timeout=5)
    log = srv.log()[before:]
    sftp_events = event_lines(log, "sftp")
    ftps_events = event_lines(log, "ftps")
    for kind in ("login", "mkdir", "transfer", "rename", "delete", "rmdir", "logout"):
        assert sftp_events.get(kind), f"no SFTP {kind} line:\n{log}"
        assert ftps_events.get(kind), f"no FTPS {kind} line:\n{log}"
    assert sftp_events.get("symlink"), f"no SFTP symlink line:\n{log}"
    assert len(sftp_events["delete"]) == 2 and len(ftps_events["delete"]) == 1, log
    # The same fields on both: the paths as the user sees them.
    assert f"path={base}/s " in sftp_events["mkdir"][0] + " ", sftp_events["mkdir"]
    assert f"path={base}/f " in ftps_events["mkdir"][0] + " ", ftps_events["mkdir"]
    assert f"from={base}/s/a.txt to={base}/s/b.txt" in sftp_events["rename"][0], sftp_events["rename"]
    assert f"from={base}/f/a.txt to={base}/f/b.txt" in ftps_events["rename"][0], ftps_events["rename"]
    assert re.search(r"bytes_written=10\b", sftp_events["transfer"][0]), sftp_events["transfer"]
    assert re.search(r"bytes_written=10\b", ftps_events["transfer"][0]), ftps_events["transfer"]
    assert f"path={base}/s/b.txt" in sftp_events["delete"][1], sftp_events["delete"]
