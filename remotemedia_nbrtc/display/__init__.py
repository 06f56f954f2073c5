"""Notebook views of pipeline outputs: live text, live plots (binary frames, throttled), stats and the doctor.

May import: ``runtime`` and ``protocol``, numpy, matplotlib and ipywidgets (aiortc only to report its
version); nothing of ``transport``, ``server``, ``kernel`` or ``widget``.
"""

from .live import LivePlot, LiveText, Throttle, drive
from .stats import StatsReport, kernel_checks, stats_report

__all__ = ["LivePlot", "LiveText", "StatsReport", "Throttle", "drive", "kernel_checks", "stats_report"]
