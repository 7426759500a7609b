"""`ferry user sheet NAME`: what it tells a partner works as written. The known_hosts line makes OpenSSH
connect with strict host key checking, the fingerprints are the server's, the FileZilla XML imports (it
parses, with the right ports and protocols), and the Python snippets run as printed."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET

from conftest import TLS_FINGERPRINT_RE, run_ferry

LISTEN = ("sftp=127.0.0.1:0", "ftps=127.0.0.1:0", "ftps-implicit=127.0.0.1:0")


def sheet_of(srv, ferry, *extra: str) -> str:
    args = []
    for proto in ("sftp", "ftps", "ftps-implicit"):
        host, port = srv.listeners[proto][:2]
        args += ["--listen", f"{proto}={host}:{port}"]
    return run_ferry(ferry, srv.data_dir, "user", "sheet", srv.user, *args, *extra).stdout


def snippet(sheet: str, heading: str) -> str:
    """The indented Python lines under `heading` in the sheet, dedented."""
    lines = sheet.splitlines()
    start = next(i for i, line in enumerate(lines) if heading in line) + 1
    body = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        body.append(line[4:])
    return "\n".join(body) + "\n"


def test_the_sheet_has_the_servers_facts_and_its_known_hosts_line_works(alice_servers, ferry, tmp_path):
    srv = alice_servers(listen=LISTEN)
    sheet = sheet_of(srv, ferry)
    sftp_port = srv.listeners["sftp"][1]
    assert f"SFTP (file transfer over SSH) -- host 127.0.0.1, port {sftp_port}" in sheet, sheet
    for algo, fp in srv.host_keys:
        assert f"{algo} {fp}" in sheet, f"host key {algo} {fp} missing:\n{sheet}"
    tls_fp = TLS_FINGERPRINT_RE.search(srv.stdout()).group(1)
    assert f"SHA-256 {tls_fp}" in sheet
    # The known_hosts lines, used as a partner would: strict checking, nothing else trusted.
    known = [l.strip() for l in sheet.splitlines() if l.strip().startswith(f"[127.0.0.1]:{sftp_port} ")]
    assert known, sheet
    (tmp_path / "known_hosts").write_text("\n".join(known) + "\n")
    (tmp_path / "up.txt").write_text("from the sheet\n")
    proc = subprocess.run(
        ["sftp", "-b", "-", "-P", str(sftp_port), "-i", str(srv.key), "-o", "IdentitiesOnly=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
         "-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes", f"{srv.user}@127.0.0.1"],
        input="put up.txt\n", capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (srv.root / "up.txt").read_text() == "from the sheet\n"
    # Firewall openings on the partner's side: the three ports and the passive range.
    ftps_port, implicit_port = srv.listeners["ftps"][1], srv.listeners["ftps-implicit"][1]
    m = re.search(r"Your firewall: allow outgoing TCP to 127\.0\.0\.1 on ports (.*) \(nothing incoming\)", sheet)
    assert m and m.group(1).startswith(f"{sftp_port}, {ftps_port}, {implicit_port}, "), sheet


def test_filezilla_entries_parse_and_the_python_snippets_run_as_printed(alice_servers, ferry, tmp_path, monkeypatch):
    srv = alice_servers(listen=LISTEN)
    monkeypatch.chdir(tmp_path)  # the snippets upload report.pdf from the working directory
    sheet = sheet_of(srv, ferry, "--host", "127.0.0.1")
    xml_text = sheet[sheet.index("<?xml"): sheet.index("</FileZilla3>") + len("</FileZilla3>")]
    servers = ET.fromstring(xml_text.encode()).findall("./Servers/Server")
    got = {(s.findtext("Protocol"), int(s.findtext("Port"))) for s in servers}
    assert got == {("1", srv.listeners["sftp"][1]), ("4", srv.listeners["ftps"][1]),
                   ("3", srv.listeners["ftps-implicit"][1])}, got
    assert all(s.findtext("User") == srv.user and s.findtext("Host") == "127.0.0.1" for s in servers)
    (tmp_path / "report.pdf").write_bytes(b"%PDF sheet\n")
    code = snippet(sheet, "Python (paramiko):")
    exec(compile(code, "paramiko-snippet", "exec"), {"PASSWORD": srv.password, "__name__": "snippet"})
    assert (srv.root / "report.pdf").read_bytes() == b"%PDF sheet\n"
    for heading in ("Python (ftplib):", "Python (ftplib): wrap the socket"):
        code = snippet(sheet, heading)
        scope = {"PASSWORD": srv.password, "__name__": "snippet"}
        exec(compile(code + "names = ftps.nlst()\nftps.quit()\n", heading, "exec"), scope)
        assert "report.pdf" in [n.rsplit("/", 1)[-1] for n in scope["names"]], (heading, scope["names"])


def test_a_user_limited_to_ftps_gets_no_sftp_part_and_unknown_users_are_an_error(alice_servers, ferry):
    srv = alice_servers(listen=LISTEN)
    run_ferry(ferry, srv.data_dir, "user", "set", srv.user, "--protocols", "ftps")
    sheet = sheet_of(srv, ferry)
    assert "SFTP (file transfer over SSH)" not in sheet and "FTPS, explicit" in sheet, sheet
    r = run_ferry(ferry, srv.data_dir, "user", "sheet", "nobody", check=False)
    assert r.returncode != 0 and 'no user named "nobody"' in r.stderr, r.stderr
