"""The notebook widget: browser mic/camera -> WebRTC -> the kernel's pipeline, results shown live."""

from .widget import StreamWidget

__all__ = ["StreamWidget"]
