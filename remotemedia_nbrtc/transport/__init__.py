"""WebRTC transport: aiortc lives only in this package (no aiortc import happens here)."""
