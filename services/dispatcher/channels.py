"""Channel configuration: a YAML file (CHANNELS_FILE) plus environment overrides.

An invalid file stops the dispatcher at start with every problem listed; it never runs
with a half-understood routing table.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pixelrelay.public_models import PUBLIC_MODELS
from pixelrelay.v1 import common_pb2

DEFAULT_FILE = Path(__file__).with_name("channels.yaml")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class ConfigError(Exception):
    """The channel file cannot be used; the message says why, line by line."""


class Capabilities(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_n: int = Field(1, ge=1, le=10)
    masks: bool = False
    transparency: bool = False
    formats: list[Literal["png", "jpeg", "webp"]] = ["png"]
    max_pixels: int = Field(8_294_400, ge=655_360)

    def supports(self, spec: common_pb2.ImageSpec, *, mask: bool) -> str | None:
        """Why this channel cannot take ``spec``, or None if it can."""
        if spec.n > self.max_n:
            return f"n={spec.n} > {self.max_n}"
        if mask and not self.masks:
            return "no masks"
        if spec.background == "transparent" and not self.transparency:
            return "no transparency"
        if (spec.output_format or "png") not in self.formats:
            return f"no {spec.output_format}"
        if spec.width * spec.height > self.max_pixels:
            return "too large"
        return None


class ChannelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str
    api_key_env: str = "UPSTREAM_API_KEY"
    model: str = Field(min_length=1)
    timeout: float = Field(180.0, gt=0, le=3600)
    connect_timeout: float = Field(2.0, gt=0, le=60)
    max_concurrency: int = Field(16, ge=1, le=10_000)
    capabilities: Capabilities = Field(default_factory=Capabilities)

    @field_validator("base_url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError("base_url must be an http(s) URL")
        return url.rstrip("/")


class RouteChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    weight: int = Field(1, ge=1, le=1000)


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Literal["ordered", "weighted"] = "ordered"
    channels: list[RouteChannel] = Field(min_length=1)

    @field_validator("channels", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        # "channels: [a, b]" is shorthand for [{name: a}, {name: b}].
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    def order(self, rng: random.Random) -> list[str]:
        """Channel names in the order to try them: as listed, or a weighted shuffle."""
        if self.strategy == "ordered":
            return [c.name for c in self.channels]
        pool = list(self.channels)
        chosen: list[str] = []
        while pool:
            pick = rng.choices(pool, weights=[c.weight for c in pool])[0]
            chosen.append(pick.name)
            pool.remove(pick)
        return chosen


class ChannelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: dict[str, ChannelConfig] = Field(min_length=1)
    routes: dict[str, Route]

    @model_validator(mode="after")
    def _consistent(self) -> ChannelsFile:
        problems = [
            f"channel name {name!r}: lowercase letters, digits and '-' only"
            for name in self.channels
            if not _NAME.match(name)
        ]
        for model in PUBLIC_MODELS:
            if model not in self.routes:
                problems.append(f"routes: no route for {model}")
        for model, route in self.routes.items():
            if model not in PUBLIC_MODELS:
                problems.append(f"routes: unknown model {model!r}")
            for channel in route.channels:
                if channel.name not in self.channels:
                    problems.append(f"routes.{model}: unknown channel {channel.name!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _overrides(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Apply CHANNEL_<NAME>_<FIELD> environment variables to the parsed file."""
    for name, channel in (raw.get("channels") or {}).items():
        if not isinstance(channel, dict):
            continue
        prefix = f"CHANNEL_{str(name).upper().replace('-', '_')}_"
        for field in (
            "base_url",
            "api_key_env",
            "model",
            "timeout",
            "connect_timeout",
            "max_concurrency",
        ):
            if (value := env.get(prefix + field.upper())) is not None:
                channel[field] = value
    return raw


def load(path: Path | None = None, env: dict[str, str] | None = None) -> ChannelsFile:
    env = dict(os.environ) if env is None else env
    path = path or Path(env.get("CHANNELS_FILE") or DEFAULT_FILE)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'channels' and 'routes'")
    try:
        config = ChannelsFile.model_validate(_overrides(raw, env))
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()
        ]
        raise ConfigError(f"{path} is not a valid channel file:\n" + "\n".join(lines)) from None
    missing = sorted(
        {c.api_key_env for c in config.channels.values() if not env.get(c.api_key_env)}
    )
    if missing:
        raise ConfigError(f"{path}: the channel keys are not set: {', '.join(missing)}")
    return config
