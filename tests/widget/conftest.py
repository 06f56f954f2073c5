"""Fixtures of the stream()/widget tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from remotemedia_nbrtc.protocol.kernel_link import LINK_SECRET_ENV, LINK_URL_ENV
from remotemedia_nbrtc.stream import live_handles


@pytest.fixture(autouse=True)
def _no_link(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No server extension link (tests that need one serve through ``test_stream.stream_with``); no handle
    outlives its test."""
    monkeypatch.delenv(LINK_URL_ENV, raising=False)
    monkeypatch.delenv(LINK_SECRET_ENV, raising=False)
    yield
    for h in live_handles():
        h.close()
