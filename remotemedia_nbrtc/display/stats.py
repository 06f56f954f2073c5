"""The kernel's half of the stats/doctor panel: checks that need no browser, and metrics as a table.

The browser's half (secure context, permissions, devices, ICE candidates, RTT/jitter/loss from
``getStats``, end-to-end latency) lives in the widget and reaches the kernel as ``browser_stats``.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remotemedia_nbrtc.protocol.kernel_link import LINK_URL_ENV

__all__ = ["Check", "StatsReport", "kernel_checks", "stats_report"]



@dataclass
class Check:
    """One doctor check: ``ok`` is True, False, or None (unknown)."""

    name: str
    ok: bool | None
    detail: str = ""


def kernel_checks() -> list[Check]:
    """What the kernel can check on its own."""
    checks = [
        Check(
            "server extension link",
            bool(os.environ.get(LINK_URL_ENV)),
            os.environ.get(LINK_URL_ENV)
            or "not set: this kernel was not started by a Jupyter server with remotemedia_nbrtc.server enabled",
        )
    ]
    try:
        import aiortc

        checks.append(Check("aiortc", True, aiortc.__version__))
    except ImportError as exc:  # pragma: no cover - a dependency
        checks.append(Check("aiortc", False, str(exc)))
    names = {t.name for t in threading.enumerate()}
    checks.append(Check("RTC loop thread", "remotemedia-rtc" in names or None,
                        "running" if "remotemedia-rtc" in names else "starts with the first stream"))
    return checks


@dataclass
class StatsReport:
    """Metrics of a stream, shown as HTML tables in a notebook."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    peers: list[dict[str, Any]] = field(default_factory=list)
    browser: dict[str, Any] = field(default_factory=dict)
    display: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def e2e_rtt_ms(self) -> float | None:
        value = self.browser.get("e2e_rtt_ms")
        return float(value) if isinstance(value, (int, float)) else None

    def _repr_html_(self) -> str:
        parts = []
        if self.checks:
            rows = [(c.name, {True: "✔", False: "✘", None: "?"}[c.ok] + " " + c.detail) for c in self.checks]
            parts.append(_table("doctor", rows))
        if self.browser:
            parts.append(_table("browser", [(k, _short(v)) for k, v in self.browser.items()]))
        for i, peer in enumerate(self.peers):
            parts.append(_table(f"peer {i + 1}", [(k, _short(v)) for k, v in peer.items()]))
        if self.nodes:
            cols = ["frames_in", "frames_out", "errors", "drops", "queue_depth", "p50_ms", "p95_ms"]
            head = "".join(f"<th>{c}</th>" for c in ["node", *cols])
            body = "".join(
                "<tr><td>" + html.escape(nid) + "</td>" + "".join(f"<td>{_num(m.get(c))}</td>" for c in cols) + "</tr>"
                for nid, m in self.nodes.items()
            )
            parts.append(f"<table class='rm-stats'><caption>pipeline</caption><tr>{head}</tr>{body}</table>")
        if self.display:
            parts.append(_table("display", [(k, _short(v)) for k, v in self.display.items()]))
        return "<div class='rm-stats-report'>" + "".join(parts) + "</div>"


def stats_report(metrics: Mapping[str, Any], *, with_checks: bool = True) -> StatsReport:
    """A :class:`StatsReport` from ``StreamHandle.metrics()``."""
    return StatsReport(
        nodes=dict(metrics.get("nodes") or {}),
        peers=list(metrics.get("peers") or []),
        browser=dict(metrics.get("browser") or {}),
        display=dict(metrics.get("display") or {}),
        checks=kernel_checks() if with_checks else [],
    )


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}"
    return html.escape(str(v))


def _short(v: Any) -> str:
    text = str(v)
    return html.escape(text if len(text) < 300 else text[:297] + "…")


def _table(caption: str, rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='rm-stats'><caption>{html.escape(caption)}</caption>{body}</table>"
