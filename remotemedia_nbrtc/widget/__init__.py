"""The notebook widget: browser mic/camera -> WebRTC -> the kernel's pipeline, results shown live.

``widget.py`` is the anywidget (its traits are the kernel <-> browser contract); ``js/`` the front end, ES modules
joined into its one ESM by ``assemble.py``.
May import: anywidget and traitlets only (no WebRTC, no server, nothing else of this package).
"""

from .widget import StreamWidget

__all__ = ["StreamWidget"]
