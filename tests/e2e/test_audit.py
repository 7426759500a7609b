"""The audit tools against a default-config Ferry, as gates (issue 11, "Crypto that passes the audit tools").

- `ssh-audit` rates no offered algorithm `[fail]` and exits 0 or 2 (its documented codes: 0 good, 1 connection
  error, 2 warnings, 3 failures): the warnings left are curve25519 (not post-quantum) and the plain
  hmac-sha2 MACs, which curl (libssh2) needs.
- `sslyze --mozilla_config=intermediate` on the explicit (`--starttls ftp`) and implicit ports finds exactly one
  problem, `certificate_path_validation`: the generated certificate is self-signed, so no public trust store
  knows it. Given that certificate as the trust anchor (`--certinfo_ca_file`), the same scan is compliant, so
  names, lifespan, key, signature, versions and cipher suites all pass.
- `ferry probe` judges the generated certificate's names with rustls-webpki: it is valid for 127.0.0.1 and
  localhost; a certificate that names the host only in its CN matches nothing.

Both tools come from PyPI (`scripts/test` installs them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import FerryServer, passive_ports, run_probe, stop_and_check
from ftps_helpers import make_cert

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# ssh-audit's exit codes (ssh_audit/exitcodes.py): GOOD 0, CONNECTION_ERROR 1, WARNING 2, FAILURE 3.
SSH_AUDIT_GOOD, SSH_AUDIT_WARNING = 0, 2


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: `scripts/test --deps-only` installs it from PyPI", pytrace=False)
    return path


class Audited:
    """A Ferry with the default configuration on loopback: one `any` listener (as the quickstart's three) and one
    single-protocol listener per protocol."""

    def __init__(self, srv: FerryServer):
        self.srv = srv
        ports: dict[int, list[str]] = {}
        for line in srv.stdout().splitlines():
            if m := re.match(r"^listening (\S+) on 127\.0\.0\.1:(\d+)$", line):
                ports.setdefault(int(m.group(2)), []).append(m.group(1))
        self.any = next(p for p, protos in ports.items() if len(protos) == 3)
        single = {protos[0]: p for p, protos in ports.items() if len(protos) == 1}
        self.sftp, self.ftps, self.implicit = single["sftp"], single["ftps"], single["ftps-implicit"]
        self.cert = srv.data_dir / "tls" / "cert.pem"


@pytest.fixture(scope="module")
def audited(ferry: Path, tmp_path_factory) -> Iterator[Audited]:
    base = tmp_path_factory.mktemp("audited")
    lo, hi = passive_ports()
    listen = ["any=127.0.0.1:0", "sftp=127.0.0.1:0", "ftps=127.0.0.1:0", "ftps-implicit=127.0.0.1:0"]
    srv = FerryServer(ferry, base / "data", base / "serve.stderr.log", listen=listen,
                      extra_args=["--passive-ports", f"{lo}-{hi}"]).start()
    yield Audited(srv)
    stop_and_check(srv)


# --------------------------------------------------------------------------------------------------
# ssh-audit


@pytest.mark.parametrize("which", ["any", "sftp"])
def test_ssh_audit_finds_no_failure(audited: Audited, which: str):
    port = getattr(audited, which)
    proc = subprocess.run([tool("ssh-audit"), "-p", str(port), "127.0.0.1"], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    out = ANSI.sub("", proc.stdout + proc.stderr)
    failed = [line for line in out.splitlines() if "[fail]" in line]
    assert not failed, "ssh-audit rates these [fail]:\n" + "\n".join(failed) + f"\n\n{out}"
    assert proc.returncode in (SSH_AUDIT_GOOD, SSH_AUDIT_WARNING), f"ssh-audit exited {proc.returncode}\n{out}"
    offered = [(m.group(1), m.group(2)) for m in re.finditer(r"^\((kex|key|enc|mac)\) (\S+)", out, re.M)]
    kex = [name for kind, name in offered if kind == "kex"]
    keys = [name for kind, name in offered if kind == "key"]
    assert kex[:3] == ["mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org"], out
    assert keys == ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"], out
    assert "rsa-sha2-512 (3072-bit)" in out, out
    assert not [n for _, n in offered if n.startswith(("ecdh-", "ecdsa-", "diffie-hellman", "ssh-rsa"))], out
    # The ciphers and MACs curl needs are still there, after the AEAD ones.
    enc = [name for kind, name in offered if kind == "enc"]
    assert enc[0].endswith("-gcm@openssh.com") and "aes128-ctr" in enc and "aes256-ctr" in enc, out
    assert "hmac-sha2-256" in [name for kind, name in offered if kind == "mac"], out


# --------------------------------------------------------------------------------------------------
# sslyze, Mozilla "intermediate"


def compliance(out: str) -> dict[str, list[str]]:
    """sslyze's COMPLIANCE section: for each `host:port`, the failed check names (empty when compliant)."""
    section = out.split("COMPLIANCE AGAINST TLS CONFIGURATION", 1)
    assert len(section) == 2, f"sslyze printed no compliance section:\n{out}"
    result: dict[str, list[str]] = {}
    current = None
    for line in section[1].splitlines():
        if m := re.match(r"^\s+(\S+:\d+): (OK - Compliant|FAILED - Not compliant)", line):
            current = m.group(1)
            result[current] = []
        elif (m := re.match(r"^\s+\* (\w+): ", line)) and current:
            result[current].append(m.group(1))
    return result


def sslyze(*args: str) -> tuple[int, str]:
    proc = subprocess.run([tool("sslyze"), "--mozilla_config=intermediate", *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("mode,listener", [("explicit", "ftps"), ("explicit", "any"), ("implicit", "implicit"),
                                           ("implicit", "any")])
def test_sslyze_mozilla_intermediate(audited: Audited, mode: str, listener: str):
    args = ["--starttls", "ftp"] if mode == "explicit" else []
    # One target per scan: sslyze opens about five connections at once per target, and two targets on one
    # address can exceed Ferry's cap on unauthenticated connections per address ([limits]
    # per_source_max_startups = 10), which makes sslyze report a scan error instead of a verdict.
    targets = [f"127.0.0.1:{getattr(audited, listener)}"]

    code, out = sslyze(*args, *targets)
    found = compliance(out)
    assert sorted(found) == sorted(targets), out
    for target in targets:
        # What sslyze says about a self-signed certificate: no public store builds a path to it. Nothing else.
        assert found[target] == ["certificate_path_validation"], f"{target}: {found[target]}\n{out}"
    assert code == 1, out
    assert "should be less than 366" not in out and "subjectAltName" not in out, out

    # Trusted as the anchor, the certificate passes every check: names (127.0.0.1), lifespan, key, chain.
    code, out = sslyze(*args, "--certinfo", f"--certinfo_ca_file={audited.cert}", *targets)
    assert compliance(out) == {t: [] for t in targets}, out
    assert code == 0, out
    assert re.search(r"Supplied CA file.*OK - Certificate is trusted", out), out


# --------------------------------------------------------------------------------------------------
# ferry probe: names checked as rustls checks them


def probe_tls(probe_cmd, target: str) -> dict:
    proc = run_probe(probe_cmd, target, "--json")
    doc = json.loads(proc.stdout)
    (t,) = doc["targets"]
    return t["ftp"]["tls"]


def test_probe_generated_certificate_names(probe_cmd, audited: Audited):
    for host in ("127.0.0.1", "localhost"):
        tls = probe_tls(probe_cmd, f"{host}:{audited.ftps}")
        assert tls["hostname_match"] is True, (host, tls)
        assert "IP:127.0.0.1" in tls["certificate"]["sans"] and "DNS:localhost" in tls["certificate"]["sans"], tls
        assert 364 <= tls["certificate"]["days_left"] <= 365, tls


def test_probe_cn_only_certificate_does_not_match(probe_cmd, ferry: Path, tmp_path: Path):
    """Regression: the probe used to fall back to the subject CN and report "matches" where rustls and Go refuse."""
    cert, key = make_cert(tmp_path / "certs", "cn-only", cn="localhost")  # no subjectAltName at all
    conf = tmp_path / "ferry.toml"
    conf.write_text(f'[ftps]\ncert = "{cert}"\nkey = "{key}"\n')
    lo, hi = passive_ports()
    srv = FerryServer(ferry, tmp_path / "data", tmp_path / "serve.stderr.log", listen=["ftps=127.0.0.1:0"],
                      extra_args=["--config", str(conf), "--passive-ports", f"{lo}-{hi}"]).start()
    try:
        tls = probe_tls(probe_cmd, f"localhost:{srv.listeners['ftps'][1]}")
        assert tls["certificate"]["subject"] == "CN=localhost" and tls["certificate"]["sans"] == [], tls
        assert tls["hostname_match"] is False, tls
    finally:
        stop_and_check(srv)
