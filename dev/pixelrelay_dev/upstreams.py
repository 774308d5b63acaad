"""Where `make run` sends prompts: the operator's channel file, OpenAI with their key, or
the local simulator — in that order of preference.

    CHANNELS_FILE=my-channels.yaml make run     your channels (keys from your environment)
    OPENAI_API_KEY=sk-… make run                OpenAI's Images API (OPENAI_BASE_URL for
                                                another OpenAI-compatible host)
    make run                                    the simulator (no key, nothing leaves)

With a real upstream the simulator takes no traffic, unless PIXELRELAY_SIMULATOR_FALLBACK=true
puts it behind the real channel (a failover target for trying things out).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pixelrelay import catalog

# Both public models routed to the local simulator.
SIMULATOR_CHANNELS = Path(__file__).with_name("channels.yaml")
OPENAI_BASE_URL = "https://api.openai.com/v1"
SIMULATOR_KEY = "sk-simulator"  # the simulator takes any key; this one says what it is


@dataclass(frozen=True)
class Upstreams:
    """What the dispatchers are started with, and what the banner says about it."""

    channels_file: Path
    env: dict[str, str]  # for every dispatcher
    live: list[str]  # "name → base URL", in the routes' order


def choose(
    data_dir: Path,
    sim_url: str,
    *,
    channels_file: str = "",
    openai_api_key: str = "",
    openai_base_url: str = "",
    simulator_fallback: bool = False,
) -> Upstreams:
    simulator = {"CHANNEL_SIMULATOR_BASE_URL": f"{sim_url}/v1", "UPSTREAM_API_KEY": SIMULATOR_KEY}
    if channels_file:
        path = Path(channels_file).resolve()
        # The keys are the operator's, named in the file; they come from the environment.
        return Upstreams(path, {"CHANNELS_FILE": str(path)}, _described(path, {}))
    if openai_api_key:
        channels: dict[str, Any] = {
            "openai": {
                "base_url": openai_base_url or OPENAI_BASE_URL,
                "api_key_env": "OPENAI_API_KEY",
                "model": "gpt-image-2",
                "timeout": 300,
                "max_concurrency": 16,
                "capabilities": _simulator_channel()["capabilities"],
            }
        }
        env = {"OPENAI_API_KEY": openai_api_key}
        if simulator_fallback:
            channels["simulator"] = _simulator_channel()
            env |= simulator
        path = data_dir / "channels.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        routes = {
            model: {"strategy": "ordered", "channels": list(channels)}
            for model in catalog.load().names()
        }
        path.write_text(
            "# Written by `make run` for OPENAI_API_KEY (dev/pixelrelay_dev/upstreams.py); "
            "rewritten at every start.\n"
            + yaml.safe_dump({"channels": channels, "routes": routes}, sort_keys=False)
        )
        return Upstreams(path, {"CHANNELS_FILE": str(path), **env}, _described(path, simulator))
    return Upstreams(
        SIMULATOR_CHANNELS,
        {"CHANNELS_FILE": str(SIMULATOR_CHANNELS), **simulator},
        _described(SIMULATOR_CHANNELS, simulator),
    )


def _simulator_channel() -> dict[str, Any]:
    channel: dict[str, Any] = yaml.safe_load(SIMULATOR_CHANNELS.read_text())["channels"][
        "simulator"
    ]
    return channel


def _described(path: Path, env: dict[str, str]) -> list[str]:
    """Each routed channel as "name → base URL" (what the dispatcher will call), read
    leniently: the dispatcher itself refuses a bad file at start, with every problem."""
    try:
        raw = yaml.safe_load(path.read_text())
        channels = raw["channels"]
        routed = [
            name
            for route in raw.get("routes", {}).values()
            for name in (c if isinstance(c, str) else c.get("name") for c in route["channels"])
        ]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return [f"(the channel file {path} is read by the dispatcher, which says what is wrong)"]
    seen = list(dict.fromkeys(routed))
    lines = []
    for name in seen:
        override = env.get(f"CHANNEL_{str(name).upper().replace('-', '_')}_BASE_URL")
        lines.append(f"{name} → {override or channels.get(name, {}).get('base_url', '?')}")
    return lines
