"""Notebook views of pipeline outputs: live text, live plots, stats."""

from .live import LivePlot, LiveText, Throttle, drive
from .stats import StatsReport, kernel_checks, stats_report

__all__ = ["LivePlot", "LiveText", "StatsReport", "Throttle", "drive", "kernel_checks", "stats_report"]
