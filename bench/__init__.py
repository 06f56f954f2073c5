"""Benchmarks: scripts run as `python bench/NAME.py` (browser_latency, which reuses the browser-test helpers,
as `python -m bench.browser_latency`)."""
