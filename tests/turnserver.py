"""A real TURN server for tests: Debian's coturn (``turnserver``) on 127.0.0.1, started as a subprocess.

It listens on 127.0.0.1 only (UDP + TCP on one port, TLS on another with a self-signed certificate made at
test time, whose subjectAltName is ``IP:127.0.0.1``), relays on 127.0.0.1 (``--allow-loopback-peers``), and
knows one static long-term-credential user. Stopped by its PID. A missing ``turnserver`` is a failure,
not a skip: CI installs coturn (``.ci/setup``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TURNSERVER = "turnserver"
USERNAME = "rmtest"
PASSWORD = "rmtest-secret"
REALM = "remotemedia.test"


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP+UDP port on 127.0.0.1")


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem): a self-signed certificate for ``IP:127.0.0.1`` (openssl, 0.05 s)."""
    cert, key = directory / "turn-cert.pem", directory / "turn-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@dataclass
class TurnServer:
    """A running coturn: ``port`` (UDP+TCP), ``tls_port`` (TLS over TCP), its certificate and log."""

    proc: subprocess.Popen[bytes]
    port: int
    tls_port: int
    cert: Path
    log: Path
    username: str = USERNAME
    password: str = PASSWORD

    def ice_server(self, scheme: str = "turn", transport: str = "udp") -> dict[str, Any]:
        """An ``RTCIceServer`` dict: ``turn:127.0.0.1:<port>?transport=udp|tcp`` or ``turns:…:<tls_port>``."""
        port = self.tls_port if scheme == "turns" else self.port
        return {"urls": f"{scheme}:127.0.0.1:{port}?transport={transport}",
                "username": self.username, "credential": self.password}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM by PID, kill after 5 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _tls_ready(port: int, cert: Path) -> bool:
    ctx = ssl.create_default_context(cafile=str(cert))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
            return True
    except OSError:
        return False


def start_turnserver(directory: Path, timeout: float = 10.0) -> TurnServer:
    """Start coturn on 127.0.0.1 and wait until its TLS listener completes a verified handshake."""
    if shutil.which(TURNSERVER) is None:
        raise RuntimeError("turnserver (Debian package coturn) is not installed: run .ci/setup")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = make_self_signed_cert(directory)
    port, tls_port = free_port(), free_port()
    relay_lo, relay_hi = 49152 + (port % 8000), 49152 + (port % 8000) + 200
    log = directory / "turnserver.log"
    cmd = [
        TURNSERVER, "-n",                       # no configuration file
        "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--allow-loopback-peers",
        f"--listening-port={port}", f"--tls-listening-port={tls_port}", "--no-dtls",
        f"--min-port={relay_lo}", f"--max-port={relay_hi}",
        "--lt-cred-mech", f"--user={USERNAME}:{PASSWORD}", f"--realm={REALM}", "--fingerprint",
        f"--cert={cert}", f"--pkey={key}",
        "--no-cli", "--no-software-attribute", f"--pidfile={directory / 'turnserver.pid'}",
        f"--db={directory / 'turndb.sqlite'}",  # its own user DB, not /var/lib/turn/turndb
        f"--log-file={log}", "--simple-log", "--verbose",
    ]
    out = open(directory / "turnserver.stdout", "wb")  # noqa: SIM115 - closed when the process ends
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    server = TurnServer(proc, port, tls_port, cert, log)
    deadline = time.monotonic() + timeout
    while not _tls_ready(tls_port, cert):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"turnserver did not start (rc={proc.poll()}):\n{server.log_text()[-3000:]}")
        time.sleep(0.1)
    return server
