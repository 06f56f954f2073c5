"""Every use of aiortc's private fields, in one place, against one pinned version range.

aiortc has no public hooks for what the low-latency path needs: the receiver's jitter buffer and
decoder queue (``receiver.py``), the sender's Opus encoder (``tracks.py``), a transceiver's negotiated
codecs and offered direction (``peer.py``) and the ICE connection behind a gatherer (``ice.py``). Each
accessor here checks that the field exists and raises :class:`UnsupportedAiortcError` (naming the
supported range) when it does not, instead of silently falling back; an aiortc outside
:data:`SUPPORTED_AIORTC` warns once. ``tests/transport/test_receiver.py`` verifies the range.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import aiortc

from ..errors import TransportError

__all__ = [
    "SUPPORTED_AIORTC",
    "ReceiverInternals",
    "UnsupportedAiortcError",
    "aiortc_version_supported",
    "ice_connection",
    "offer_direction",
    "receiver_internals",
    "sender_encoder",
    "set_sender_encoder",
    "transceiver_codecs",
]

SUPPORTED_AIORTC = ((1, 15), (1, 17))
"""aiortc versions ``[low, high)`` whose internals this module was verified against.

1.15 (the last release for Python 3.10) and 1.16 have the same ``JitterBuffer`` and the same fields and
``_handle_rtp_packet`` jitter-buffer/decoder-queue tail used here; 1.16 only adds a PLI on decode errors."""

_RECEIVER = "_RTCRtpReceiver__"
_RECEIVER_FIELDS = ("jitter_buffer", "kind", "codecs", "decoder_queue", "decoder_thread", "timestamp_mapper")
_SENDER_ENCODER = "_RTCRtpSender__encoder"
_warned = False


class UnsupportedAiortcError(TransportError):
    """aiortc's internals are not what this package was written against."""


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _range() -> str:
    return f">= {'.'.join(map(str, SUPPORTED_AIORTC[0]))}, < {'.'.join(map(str, SUPPORTED_AIORTC[1]))}"


def aiortc_version_supported(version: str | None = None) -> bool:
    """True if ``version`` (default: the installed aiortc) is in :data:`SUPPORTED_AIORTC`."""
    v = _version_tuple(version or aiortc.__version__)[:2]
    low, high = SUPPORTED_AIORTC
    return low <= v < high


def _check(obj: Any, fields: tuple[str, ...]) -> None:
    global _warned
    missing = [name for name in fields if not hasattr(obj, name)]
    if missing:
        raise UnsupportedAiortcError(
            f"aiortc {aiortc.__version__}: {type(obj).__name__} lacks {', '.join(missing)}; "
            f"this package supports aiortc {_range()}"
        )
    if not _warned and not aiortc_version_supported():
        _warned = True
        warnings.warn(
            f"aiortc {aiortc.__version__} is outside the range verified for remotemedia_nbrtc ({_range()}); "
            "run tests/transport/test_receiver.py",
            RuntimeWarning,
            stacklevel=3,
        )


@dataclass
class ReceiverInternals:
    """The private parts of one ``RTCRtpReceiver`` the low-latency receive path drives."""

    receiver: Any

    @property
    def kind(self) -> str:
        return str(getattr(self.receiver, _RECEIVER + "kind"))

    @property
    def codecs(self) -> dict[int, Any]:
        """Payload type -> codec, as negotiated."""
        return getattr(self.receiver, _RECEIVER + "codecs")  # type: ignore[no-any-return]

    @property
    def decoder_queue(self) -> Any:
        return getattr(self.receiver, _RECEIVER + "decoder_queue")

    @property
    def decoding(self) -> bool:
        """Whether the receiver's decoder thread runs (frames delivered before or after it are dropped)."""
        return getattr(self.receiver, _RECEIVER + "decoder_thread") is not None

    @property
    def timestamp_mapper(self) -> Any:
        return getattr(self.receiver, _RECEIVER + "timestamp_mapper")

    @property
    def jitter_buffer(self) -> Any:
        return getattr(self.receiver, _RECEIVER + "jitter_buffer")

    @jitter_buffer.setter
    def jitter_buffer(self, buffer: Any) -> None:
        setattr(self.receiver, _RECEIVER + "jitter_buffer", buffer)


def receiver_internals(receiver: Any) -> ReceiverInternals:
    """``receiver``'s private fields; :class:`UnsupportedAiortcError` if any is missing."""
    _check(receiver, tuple(_RECEIVER + name for name in _RECEIVER_FIELDS))
    return ReceiverInternals(receiver)


def sender_encoder(sender: Any) -> Any:
    """The encoder an ``RTCRtpSender`` made for its first frame (None before it)."""
    _check(sender, (_SENDER_ENCODER,))
    return getattr(sender, _SENDER_ENCODER)


def set_sender_encoder(sender: Any, encoder: Any) -> None:
    """Give ``sender`` the encoder it would otherwise make for its first frame."""
    _check(sender, (_SENDER_ENCODER,))
    setattr(sender, _SENDER_ENCODER, encoder)


def transceiver_codecs(transceiver: Any) -> list[Any]:
    """The codecs negotiated for ``transceiver``, preferred first (empty before negotiation)."""
    _check(transceiver, ("_codecs",))
    return list(transceiver._codecs or [])  # noqa: SLF001


def offer_direction(transceiver: Any) -> str | None:
    """The direction the remote offer asked of ``transceiver`` (``sendrecv``, ``recvonly``...)."""
    _check(transceiver, ("_offerDirection",))
    return transceiver._offerDirection  # type: ignore[no-any-return]  # noqa: SLF001


def ice_connection(gatherer: Any) -> Any:
    """The aioice ``Connection`` behind an ``RTCIceGatherer`` (where candidates are gathered)."""
    _check(gatherer, ("_connection",))
    return gatherer._connection  # noqa: SLF001
