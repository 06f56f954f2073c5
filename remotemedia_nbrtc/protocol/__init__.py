"""The wire protocols, each defined once; everything that speaks one imports its facts from here.

- :mod:`.jsonrpc`: JSON-RPC 2.0 signaling: the method table, the server's notifications, the error codes,
  the server's peer id, the message and id size limits, and the builders of requests, responses and
  notifications (parsing and validation live in ``transport.signaling``).
- :mod:`.datachannel`: the data channels' labels and channel protocols, the JSON message format on the
  pipeline-data channel and its size limit (the encoding of pipeline data lives in ``transport.wire``).
- :mod:`.media_frames`: binary media frames (13-byte header, then the payload), used by the WebSocket
  media fallback and by pcm16 audio on the ``rm-audio`` data channel.
- :mod:`.kernel_link`: the link between the Jupyter server extension and its kernels: environment,
  auth header, JSON envelopes and connection-prefixed binary frames.

``widget/js/protocol.js`` mirrors the constants the front end uses (a test checks the two agree).
Modules import from the submodules (``from remotemedia_nbrtc.protocol.jsonrpc import ErrorCode``); this
package re-exports nothing, so each name has one home.
May import: the standard library only (no aiortc, no Jupyter, nothing of this package).
"""
