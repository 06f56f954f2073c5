"""Shared fixtures of the transport tests: everything aiortc runs on the project's RTC loop thread."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from remotemedia_nbrtc.transport.loop_thread import LoopThread, rtc_loop


@pytest.fixture
def rtc() -> LoopThread:
    """The process-wide RTC loop thread (started on first use)."""
    return rtc_loop()
