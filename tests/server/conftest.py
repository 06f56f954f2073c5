"""Fixtures for the server extension tests: a real in-process Jupyter server via pytest-jupyter, and for
the end-to-end tests a real ``jupyter server`` subprocess (``server``).

pytest-jupyter's fixtures drive the server on their own loop (``jp_asyncio_loop``), which is not
pytest-asyncio's loop; so tests here are plain functions and run coroutines with ``run``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures and their hooks, for this folder only)
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from remotemedia_nbrtc.protocol.kernel_link import LINK_SECRET_ENV, LINK_URL_ENV
from remotemedia_nbrtc.testing.jupyter import JupyterServer
from tests.server._e2e import start_server

T = TypeVar("T")


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"remotemedia_nbrtc.server": True}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A ``jupyter server`` subprocess with the extension (see ``_e2e.py``), one per test module."""
    with start_server(tmp_path_factory.mktemp("jupyter")) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _restore_link_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # the extension exports its link settings into os.environ; undo that after each test
    monkeypatch.delenv(LINK_URL_ENV, raising=False)
    monkeypatch.delenv(LINK_SECRET_ENV, raising=False)
    yield


@pytest.fixture
def run(jp_asyncio_loop: asyncio.AbstractEventLoop) -> Callable[..., Any]:
    """Run a coroutine on the server's loop with a deadline."""

    def _run(coro: Awaitable[T], timeout: float = 10.0) -> T:
        return jp_asyncio_loop.run_until_complete(asyncio.wait_for(coro, timeout))

    return _run


@pytest.fixture
def link_secret(jp_serverapp: Any) -> str:
    secret: str = jp_serverapp.web_app.settings["remotemedia_link_secret"]
    return secret


@pytest.fixture
def link_url(http_server_client: Any, jp_http_port: int, jp_base_url: str) -> str:
    # http_server_client: makes pytest-jupyter start listening on jp_http_port
    return f"ws://127.0.0.1:{jp_http_port}{jp_base_url}remotemedia/kernel-link"


@pytest.fixture
def relay(jp_serverapp: Any) -> Any:
    return jp_serverapp.web_app.settings["remotemedia_relay"]


@pytest.fixture
def _sockets() -> Iterator[list[WebSocketClientConnection]]:
    # tornado warns (ResourceWarning) about client sockets never closed, even after the server closed them
    opened: list[WebSocketClientConnection] = []
    yield opened
    for ws in opened:
        ws.close()


def _track(opened: list[WebSocketClientConnection], pending: Awaitable[WebSocketClientConnection]) -> Any:
    async def connect() -> WebSocketClientConnection:
        ws = await pending
        opened.append(ws)
        return ws

    return connect()


@pytest.fixture
def ws_fetch(jp_ws_fetch: Any, _sockets: list[WebSocketClientConnection]) -> Callable[..., Any]:
    """``jp_ws_fetch`` whose sockets are closed at teardown."""
    return lambda *parts, **kw: _track(_sockets, jp_ws_fetch(*parts, **kw))


@pytest.fixture
def connect_link(link_url: str, link_secret: str, _sockets: list[WebSocketClientConnection]) -> Callable[..., Any]:
    """Open a raw kernel-link WebSocket (a fake kernel)."""

    def _connect(secret: str | None = None) -> Any:
        req = HTTPRequest(link_url, headers={"X-RemoteMedia-Link-Secret": secret or link_secret})
        return _track(_sockets, websocket_connect(req))

    return _connect


@pytest.fixture
def read_json() -> Callable[..., Awaitable[Any]]:
    """``await read_json(ws)``: the next message as JSON, or ``None`` once the socket closed."""

    async def _read(ws: WebSocketClientConnection, timeout: float = 5.0) -> Any:
        text = await asyncio.wait_for(ws.read_message(), timeout)
        return None if text is None else json.loads(text)

    return _read
