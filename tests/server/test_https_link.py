"""An HTTPS Jupyter server: the kernel dials its link over wss:// (pinned certificate, no host-name check),
and a browser's signaling over wss:// reaches the kernel's endpoint and back."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import tornado.websocket
from tornado.httpclient import HTTPRequest

from remotemedia_nbrtc.kernel.link import LINK_CERT_ENV, link_ssl_context
from remotemedia_nbrtc.protocol.kernel_link import LINK_URL_ENV
from remotemedia_nbrtc.testing.jupyter import JupyterServer
from tests.server._e2e import serve_in_kernel
from tests.tools import require_tools

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for a public-looking name (not 127.0.0.1, which the link dials)."""
    require_tools("openssl", hint="apt-get install openssl (see .ci/setup)")
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "server.crt", d / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=jupyter.example.org", "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return crt, key


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory, cert: tuple[Path, Path]) -> Iterator[JupyterServer]:
    root = tmp_path_factory.mktemp("https-root")
    with JupyterServer.start(root, tls=cert) as server:
        yield server


def test_link_context_pins_the_certificate_and_skips_the_host_name(cert: tuple[Path, Path]) -> None:
    assert link_ssl_context("ws://127.0.0.1:1/x") is None
    context = link_ssl_context("wss://127.0.0.1:1/x", str(cert[0]))
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname


def test_kernel_link_and_browser_signaling_over_wss(https_server: JupyterServer, cert: tuple[Path, Path]) -> None:
    with https_server.start_kernel() as kernel:
        env = json.loads(kernel.execute(
            f"import os, json; print(json.dumps([os.environ.get({LINK_URL_ENV!r}), os.environ.get({LINK_CERT_ENV!r})]))"
        ).strip())
        assert env[0] == https_server.url("remotemedia/kernel-link", scheme="ws") and env[0].startswith("wss://")
        assert Path(env[1]) == cert[0].resolve()
        info = serve_in_kernel(kernel, "h", {"id": "level", "node_type": "AudioLevelNode", "params": {}})
        status = https_server.api("remotemedia/status")
        assert status["kernels"] == 1 and status["sessions"] == 1, status

        async def announce() -> dict:
            context = ssl.create_default_context(cafile=str(cert[0]))
            context.check_hostname = False
            url = https_server.url(info["ws_path"], scheme="ws") + f"?token={https_server.token}"
            ws = await tornado.websocket.websocket_connect(HTTPRequest(url, ssl_options=context))
            try:
                await ws.write_message(json.dumps({"jsonrpc": "2.0", "method": "peer.announce",
                                                   "params": {"peer_id": "tls-browser"}, "id": 1}))
                return json.loads(await asyncio.wait_for(ws.read_message(), 10))
            finally:
                ws.close()

        reply = asyncio.run(announce())
        assert reply["id"] == 1 and reply["result"]["success"] is True, reply
        kernel.execute("h.close()")
