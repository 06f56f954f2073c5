"""Shared fixtures of the transport tests: everything aiortc runs on the project's RTC loop thread."""

from __future__ import annotations

import pytest

from remotemedia_nbrtc.transport.loop_thread import LoopThread, rtc_loop


@pytest.fixture
def rtc() -> LoopThread:
    """The process-wide RTC loop thread (started on first use)."""
    return rtc_loop()
