"""``serve`` takes TURN credentials from the environment, never from argv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from remotemedia_nbrtc.__main__ import TURN_CREDENTIAL_ENV, TURN_USERNAME_ENV, ice_servers_from

REPO = Path(__file__).resolve().parents[2]


def test_turn_entries_get_the_environment_credentials_stun_entries_do_not() -> None:
    env = {TURN_USERNAME_ENV: "alice", TURN_CREDENTIAL_ENV: "s3cret"}
    servers = ice_servers_from(["stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp"], env)
    assert servers == [
        {"urls": "stun:127.0.0.1:3478"},
        {"urls": "turn:127.0.0.1:3478?transport=udp", "username": "alice", "credential": "s3cret"},
    ]


def test_a_turn_url_without_credentials_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=TURN_USERNAME_ENV):
        ice_servers_from(["turns:127.0.0.1:5349"], {})


def test_serve_refuses_a_turn_server_without_credentials(tmp_path: Path) -> None:
    manifest = tmp_path / "echo.yaml"
    manifest.write_text("version: v1\nmetadata: {name: echo}\nnodes:\n  - {id: echo, node_type: PassThrough}\n"
                        "connections: []\n")
    env = {k: v for k, v in os.environ.items() if k not in (TURN_USERNAME_ENV, TURN_CREDENTIAL_ENV)}
    result = subprocess.run(
        [sys.executable, "-m", "remotemedia_nbrtc", "serve", str(manifest), "--port", "0",
         "--stun", "turn:127.0.0.1:3478"],
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and TURN_CREDENTIAL_ENV in result.stderr, result.stderr
