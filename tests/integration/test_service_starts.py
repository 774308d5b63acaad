"""How services start when their configuration or their dependencies are not right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.dispatcher.test_channels import VALID


def start_dispatcher(**env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dispatcher`` with only ``env`` (and PATH) set, until it exits."""
    return subprocess.run(
        [sys.executable, "-m", "dispatcher"],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def refusal(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 2, run.stdout + run.stderr
    record = json.loads(run.stdout.strip().splitlines()[-1])  # logs are JSON lines on stdout
    assert record["level"] == "critical"
    return str(record["msg"])


def test_a_dispatcher_without_channels_refuses_to_start_and_says_why() -> None:
    message = refusal(start_dispatcher())
    assert "no channels configured: set CHANNELS_FILE" in message


def test_a_dispatcher_lists_every_problem_of_its_channel_file(tmp_path: Path) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        VALID.replace("model: gpt-image-2,", "model: gpt-image-2, colour: red,").replace(
            "https://b.example/v1", "http://127.0.0.1:8090/v1"
        )
    )
    message = refusal(start_dispatcher(CHANNELS_FILE=str(channels), UPSTREAM_API_KEY="sk-x"))
    assert "colour: Extra inputs are not permitted" in message
    assert "OTHER_KEY is not set" in message
    assert "http://127.0.0.1:8090/v1 is this machine" in message


@pytest.mark.parametrize("secret", ["sk-live-secret-key"])
def test_the_refusal_never_shows_a_key(tmp_path: Path, secret: str) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(VALID.replace("https://b.example/v1", "http://localhost/v1"))
    run = start_dispatcher(CHANNELS_FILE=str(channels), UPSTREAM_API_KEY=secret)
    refusal(run)
    assert secret not in run.stderr + run.stdout
