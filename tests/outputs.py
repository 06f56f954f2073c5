"""Reading a media client's results (``ClientPeer`` or ``WebSocketMediaClient``) for a while, in tests."""

from __future__ import annotations

import time
from typing import Any


async def collect(client: Any, seconds: float, outs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Append what ``client.next_output`` gives for ``seconds`` (or until its stream ends) to ``outs``; ``outs``."""
    outs = [] if outs is None else outs
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            out = await client.next_output(timeout=max(0.05, until - time.monotonic()))
        except TimeoutError:
            continue
        if out is None:
            break
        outs.append(out)
    return outs


def level_rms(outs: list[dict[str, Any]], node: str = "level") -> list[float]:
    """The ``rms_dbfs`` of each result of the AudioLevel node ``node``."""
    return [o["value"]["rms_dbfs"] for o in outs if o.get("node") == node]
