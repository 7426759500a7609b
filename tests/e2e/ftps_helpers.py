"""Client-side helpers for the FTPS end-to-end tests: ftplib (explicit, implicit, with TLS session reuse),
curl, lftp, rclone, raw control connections, certificates.

Servers come from the fixtures in conftest.py (`shared_ftps_server`, `ftps_server`, `ftps_server_factory`);
`srv.listeners["ftps"]` / `["ftps-implicit"]` / `["ftp"]` are (host, port).
"""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import urllib.parse
from pathlib import Path
from typing import Iterator, Optional

from conftest import FerryServer

TIMEOUT = 30.0  # seconds for one control/data socket operation


# --------------------------------------------------------------------------------------------------
# TLS


def client_context() -> ssl.SSLContext:
    """A TLS client context that accepts Ferry's self-signed certificate (we compare fingerprints instead)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def colon_sha256(der: bytes) -> str:
    """SHA-256 of a DER certificate as `AB:CD:...` (the format of serve's `tls certificate SHA256` line)."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def pem_sha256(cert_pem: Path) -> str:
    """Fingerprint of the first certificate of a PEM file."""
    text = cert_pem.read_text()
    first = text[text.index("-----BEGIN CERTIFICATE-----") : text.index("-----END CERTIFICATE-----") + 25]
    return colon_sha256(ssl.PEM_cert_to_DER_cert(first))


def make_cert(directory: Path, name: str, cn: str = "localhost") -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate and key (PEM); returns (cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    if shutil.which("openssl"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "2", "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
        )
        return cert, key
    # no openssl binary: the cryptography package (a paramiko dependency) does the same
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pk = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    crt = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(pk.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2)).sign(pk, hashes.SHA256())
    )
    cert.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(pk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return cert, key


# --------------------------------------------------------------------------------------------------
# ftplib


class ExplicitFTPS(ftplib.FTP_TLS):
    """Python's FTP_TLS: plain greeting, AUTH TLS, a new (not resumed) TLS session on every data connection."""


class ImplicitFTPS(ftplib.FTP_TLS):
    """Implicit FTPS: TLS from the first byte, the 220 greeting arrives inside TLS."""

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        if source_address is not None:
            self.source_address = source_address
        raw = socket.create_connection((self.host, self.port), self.timeout, source_address=self.source_address)
        self.af = raw.family
        try:
            self.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


class _ResumingMixin:
    """Data connections resume the control connection's TLS session (what vsftpd's require_ssl_reuse wants)."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


class ResumingExplicitFTPS(_ResumingMixin, ExplicitFTPS):
    pass


def ftp_addr(srv: FerryServer, proto: str = "ftps") -> tuple[str, int]:
    assert proto in srv.listeners, f"no `listening {proto}` line; listeners: {srv.listeners}"
    return srv.listeners[proto]


def open_ftps(
    srv: FerryServer,
    *,
    implicit: bool = False,
    login: bool = True,
    prot_p: bool = True,
    user: Optional[str] = None,
    password: Optional[str] = None,
    cls=None,
    context: Optional[ssl.SSLContext] = None,
    timeout: float = TIMEOUT,
) -> ftplib.FTP_TLS:
    """A connected ftplib FTPS client; logged in and with PROT P unless told otherwise."""
    cls = cls or (ImplicitFTPS if implicit else ExplicitFTPS)
    ftps = cls(context=context or client_context(), timeout=timeout)
    host, port = ftp_addr(srv, "ftps-implicit" if implicit else "ftps")
    ftps.connect(host, port)
    try:
        if login:
            ftps.login(user or srv.user, password if password is not None else srv.password)
            if prot_p:
                ftps.prot_p()
    except BaseException:
        close_quietly(ftps)
        raise
    return ftps


@contextlib.contextmanager
def ftps_session(srv: FerryServer, **kw) -> Iterator[ftplib.FTP_TLS]:
    ftps = open_ftps(srv, **kw)
    try:
        yield ftps
    finally:
        close_quietly(ftps, quit=True)


def close_quietly(ftp: ftplib.FTP, quit: bool = False) -> None:
    if quit:
        with contextlib.suppress(Exception):
            ftp.quit()
    with contextlib.suppress(Exception):
        ftp.close()


def retr_bytes(ftp: ftplib.FTP, path: str, rest: Optional[int] = None) -> bytes:
    chunks: list[bytes] = []
    ftp.retrbinary(f"RETR {path}", chunks.append, blocksize=1 << 16, rest=rest)
    return b"".join(chunks)


def stor_bytes(ftp: ftplib.FTP, path: str, data: bytes, rest: Optional[int] = None) -> str:
    import io

    return ftp.storbinary(f"STOR {path}", io.BytesIO(data), blocksize=1 << 16, rest=rest)


def reply_code(exc_or_reply) -> int:
    """The 3-digit code of an ftplib reply string or ftplib.Error."""
    text = str(exc_or_reply.args[0] if isinstance(exc_or_reply, Exception) and exc_or_reply.args else exc_or_reply)
    m = re.match(r"\s*(\d{3})", text)
    assert m, f"not an FTP reply: {text!r}"
    return int(m.group(1))


def send_raw(ftp: ftplib.FTP, line: str) -> str:
    """Sends one command and returns the final reply text (multi-line joined), whatever its code; 1xx skipped."""
    ftp.putcmd(line)
    resp = ftp.getmultiline()
    while resp[:1] == "1":
        resp = ftp.getmultiline()
    return resp


def command_code(ftp: ftplib.FTP, line: str) -> tuple[int, str]:
    resp = send_raw(ftp, line)
    return reply_code(resp), resp


def parse_pasv_port(reply: str) -> tuple[str, int]:
    return ftplib.parse227(reply)


def parse_epsv_port(reply: str) -> int:
    m = re.search(r"\(\|\|\|(\d+)\|\)", reply)
    assert m, f"not an EPSV reply: {reply!r}"
    return int(m.group(1))


def try_retr(ftp: ftplib.FTP, path: str) -> tuple[int, bytes]:
    """RETR with a passive data connection set up first; returns (final reply code, data) without raising."""
    ftp.voidcmd("TYPE I")
    try:
        conn = ftp.transfercmd(f"RETR {path}")
    except ftplib.Error as e:
        return reply_code(e), b""
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except OSError:
        pass
    finally:
        conn.close()
    resp = ftp.getmultiline()
    while resp[:1] == "1":
        resp = ftp.getmultiline()
    return reply_code(resp), data


# --------------------------------------------------------------------------------------------------
# curl


def _tool_env(home: Optional[Path] = None) -> dict:
    env = dict(os.environ)
    env["CURL_HOME"] = "/nonexistent"
    if home is not None:
        env["HOME"] = str(home)
    return env


def ftp_url(srv: FerryServer, path: str, implicit: bool = False) -> str:
    """curl URL of a path in alice's root (explicit: ftp:// plus --ssl-reqd; implicit: ftps://)."""
    proto = "ftps-implicit" if implicit else "ftps"
    host, port = ftp_addr(srv, proto)
    scheme = "ftps" if implicit else "ftp"
    return f"{scheme}://{host}:{port}/{urllib.parse.quote(path.lstrip('/'))}"


def curl_ftps(srv: FerryServer, *args: str, implicit: bool = False, check: bool = True, timeout: float = 180,
              user: Optional[str] = None, password: Optional[str] = None) -> subprocess.CompletedProcess:
    """curl over FTPS: `--ssl-reqd` (explicit; the URL must be ftp://) or ftps:// (implicit), -k, user alice."""
    cmd = ["curl", "-sS", "--fail", "-k", "--connect-timeout", "15", "--max-time", str(int(timeout) - 5),
           "-u", f"{user or srv.user}:{password if password is not None else srv.password}"]
    if not implicit:
        cmd.append("--ssl-reqd")
    cmd += list(args)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=_tool_env())
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`{' '.join(cmd)}` exited {proc.returncode}\n--- stderr ---\n{proc.stderr.decode(errors='replace')}"
        )
    return proc


# --------------------------------------------------------------------------------------------------
# lftp

LFTP_SETTINGS = (
    "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate no; "
    "set net:max-retries 2; set net:timeout 20; set net:reconnect-interval-base 1; "
    "set net:reconnect-interval-max 2; set cmd:fail-exit true; "
)


def lftp(srv: FerryServer, script: str, home: Path, *, implicit: bool = False, cwd: Optional[Path] = None,
         check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    """`lftp -c` with TLS forced and certificate checks off, logged in as alice, then SCRIPT."""
    proto = "ftps-implicit" if implicit else "ftps"
    host, port = ftp_addr(srv, proto)
    scheme = "ftps" if implicit else "ftp"
    home.mkdir(parents=True, exist_ok=True)
    full = f"{LFTP_SETTINGS}open -u '{srv.user},{srv.password}' {scheme}://{host}:{port}; {script}"
    cmd = ["lftp", "--norc", "-c", full]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=_tool_env(home))
    if check and proc.returncode != 0:
        raise AssertionError(
            f"lftp exited {proc.returncode} for: {script}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


# --------------------------------------------------------------------------------------------------
# rclone


def rclone_ftps_conf(srv: FerryServer, path: Path) -> Path:
    """rclone config with remotes `fx` (explicit FTPS) and `fi` (implicit FTPS)."""
    obscured = subprocess.run(
        ["rclone", "obscure", srv.password], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    xhost, xport = ftp_addr(srv, "ftps")
    ihost, iport = ftp_addr(srv, "ftps-implicit")
    common = f"type = ftp\nuser = {srv.user}\npass = {obscured}\nno_check_certificate = true\n"
    path.write_text(
        f"[fx]\n{common}host = {xhost}\nport = {xport}\nexplicit_tls = true\n\n"
        f"[fi]\n{common}host = {ihost}\nport = {iport}\ntls = true\n"
    )
    return path
