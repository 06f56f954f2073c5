"""Kernel side of the Jupyter integration: ``serve(pipeline)`` and the link to the server extension."""

from __future__ import annotations

from .serve import KernelSession, serve

__all__ = ["KernelSession", "serve"]
