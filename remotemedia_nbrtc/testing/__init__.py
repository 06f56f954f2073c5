"""Helpers the tests, benches and notebooks share, shipped so a user's own tests can use them too.

Speech fixtures (espeak-ng WAVs, ``speech.py``), a real Jupyter server as a subprocess (``jupyter.py``), STT
behind a real WebRTC connection (``stt_webrtc.py``) and a local multi-process Ray cluster (``ray_cluster.py``).
May import: anything of this package; nothing in the package imports it.
"""
