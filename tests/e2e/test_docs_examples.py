"""Every curl example in the README's walkthrough runs against a live platform, as written
(only the host, the task id and the image URL are filled in), and answers what it shows."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Platform
from tests.e2e.helpers import new_account

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough_commands() -> list[tuple[str, str]]:
    """(command, the comment line that follows it) for each curl in the walkthrough."""
    text = README.read_text()
    section = text.split("## A 60-second walkthrough", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the walkthrough has no sh block"
    commands: list[tuple[str, str]] = []
    current = ""
    for line in block[1].splitlines():
        if line.startswith("#"):
            if commands and not commands[-1][1]:
                commands[-1] = (commands[-1][0], line)
            continue
        if not line.strip():
            continue
        current += line.rstrip("\\").rstrip() + " "
        if not line.endswith("\\"):
            commands.append((current.strip(), ""))
            current = ""
    return commands


def run(command: str, key: str) -> str:
    done = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PIXELRELAY_API_KEY": key},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def expected_keys(comment: str) -> set[str]:
    return set(re.findall(r'"(\w+)":', comment.split("#", 1)[1])) if comment else set()


async def test_the_readme_walkthrough_runs_as_written(platform: Platform, tmp_path: Path) -> None:
    key = await new_account(platform, 2000)
    commands = walkthrough_commands()
    assert len(commands) >= 4
    task_id = image_url = ""
    for command, comment in commands:
        command = command.replace("http://127.0.0.1:8080", platform.config.base_url)
        command = command.replace("task_…", task_id)
        command = command.replace("<image url from above>", image_url)
        command = command.replace("-o lighthouse.png", f"-o {tmp_path / 'lighthouse.png'}")
        output = await asyncio.to_thread(run, command, key)
        if "-o " in command:
            assert (tmp_path / "lighthouse.png").read_bytes().startswith(b"\x89PNG")
            continue
        body: dict[str, Any] = json.loads(output)
        assert body.get("error") is None, body
        if "/images/generations" in command:
            task_id = body["id"]
        elif "/tasks/" in command:
            for _ in range(100):  # "poll until completed"
                if body["status"] == "completed":
                    break
                await asyncio.sleep(0.1)
                body = json.loads(await asyncio.to_thread(run, command, key))
            assert body["status"] == "completed"
            image_url = body["output"]["image_urls"][0]
        elif "/account" in command:
            assert body["balance"] == 1993 and body["held"] == 0
        elif "/estimate" in command:
            assert body["credits"] == 744
        assert expected_keys(comment) <= set(body) | _nested_keys(body), (command, body)
    assert task_id and image_url


def _nested_keys(body: dict[str, Any]) -> set[str]:
    keys: set[str] = set()
    for value in body.values():
        if isinstance(value, dict):
            keys |= set(value) | _nested_keys(value)
    return keys


async def test_the_readme_openai_example_runs_as_written(platform: Platform) -> None:
    """The README's Python example, with only the host and the key filled in."""
    section = README.read_text().split("## A 60-second walkthrough", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "the walkthrough has no python block"
    code = block[1].replace("http://127.0.0.1:8080", platform.config.base_url)
    names: dict[str, Any] = {"PIXELRELAY_API_KEY": await new_account(platform, 100)}
    await asyncio.to_thread(exec, code, names)  # the sync SDK: off the event loop
    assert names["image"].data[0].b64_json
    assert names["event"].type == "image_generation.completed"  # the loop's last event
