"""Channel configuration: a YAML file (CHANNELS_FILE) plus environment overrides.

An invalid file stops the dispatcher at start with every problem listed; it never runs
with a half-understood routing table. There is no packaged default: a dispatcher that was
not told where to send prompts refuses to start rather than guess (`make run` passes the
simulator's file, dev/pixelrelay_dev/channels.yaml).
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from pixelrelay import catalog
from pixelrelay.catalog import Catalog
from pixelrelay.v1 import common_pb2

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# An Azure deployment's name (it goes in the request's path) and an api-version.
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


class ConfigError(Exception):
    """The channel file cannot be used; the message says why, line by line."""


class Capabilities(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_n: int = Field(1, ge=1, le=10)
    masks: bool = False
    transparency: bool = False
    formats: list[Literal["png", "jpeg", "webp"]] = ["png"]
    max_pixels: int = Field(8_294_400, ge=655_360)
    # Streams previews (OpenAI's stream + partial_images). When false, a request for
    # previews is still served here, without them.
    partial_images: bool = True

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


class TokenPrice(BaseModel):
    """What the provider charges for this channel's model, in dollars per million tokens
    (its price list): an attempt's cost is its reported usage at these prices."""

    model_config = ConfigDict(extra="forbid")

    input_text: Decimal = Field(ge=0, le=10_000)
    input_image: Decimal = Field(ge=0, le=10_000)
    output_image: Decimal = Field(ge=0, le=10_000)

    def cost_micros(self, usage: common_pb2.Usage) -> int:
        """Millionths of a dollar, rounded to the nearest (a price per million tokens is
        millionths of a dollar per token). Input not split by the upstream counts as text."""
        text = usage.input_text_tokens or max(usage.input_tokens - usage.input_image_tokens, 0)
        exact = (
            text * self.input_text
            + usage.input_image_tokens * self.input_image
            + usage.output_tokens * self.output_image
        )
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


class ChannelConfig(BaseModel):
    """One upstream. ``provider`` names its API: OpenAI's (``base_url`` ends in /v1) or an
    Azure OpenAI image deployment (``base_url`` is the resource's endpoint,
    https://NAME.openai.azure.com, with its ``deployment`` and ``api_version``)."""

    model_config = ConfigDict(extra="forbid")

    # First: the fields below are judged by it.
    provider: Literal["openai", "azure"] = "openai"
    base_url: str
    api_key_env: str = "UPSTREAM_API_KEY"
    model: str = Field(min_length=1)
    timeout: float = Field(180.0, gt=0, le=3600)
    connect_timeout: float = Field(2.0, gt=0, le=60)
    max_concurrency: int = Field(16, ge=1, le=10_000)
    # What this endpoint can do, where it is less than its models take (an older
    # deployment without masks, say); none given: whatever the catalog's model takes.
    capabilities: Capabilities | None = None
    # The provider's price for what this channel calls, for the operator's margin
    # (GET /admin/v1/margin); none: its attempts' cost is unknown (shown as unpriced).
    price: TokenPrice | None = None
    # Azure only: the deployment serving the model, and the api-version it is called with.
    deployment: str | None = Field(None, validate_default=True)
    api_version: str | None = Field(None, validate_default=True)

    @field_validator("base_url")
    @classmethod
    def _http(cls, url: str, info: ValidationInfo) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError("base_url must be an http(s) URL")
        url = url.rstrip("/")
        if info.data.get("provider") == "azure" and urlsplit(url).path not in ("", "/"):
            raise ValueError(
                "an azure channel's base_url is the resource endpoint, without a path "
                "(https://NAME.openai.azure.com)"
            )
        return url

    @field_validator("deployment", "api_version")
    @classmethod
    def _azure_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Each field judged on its own (beside the others' problems, in one start)."""
        provider = info.data.get("provider")
        if provider is None:  # the provider itself is wrong; that is its own problem
            return value
        if provider != "azure":
            if value is not None:
                raise ValueError(f"{info.field_name} is for azure channels only (provider: azure)")
            return value
        if not value:
            raise ValueError(f"an azure channel needs its {info.field_name}")
        shape = _DEPLOYMENT if info.field_name == "deployment" else _API_VERSION
        if not shape.match(value):
            example = "my-image-deployment" if shape is _DEPLOYMENT else "2025-04-01-preview"
            raise ValueError(f"not a valid {info.field_name} (e.g. {example})")
        return value


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
    """The file's shape. Read it with load(), which also checks routes against channels."""

    model_config = ConfigDict(extra="forbid")

    channels: dict[str, ChannelConfig] = Field(min_length=1)
    routes: dict[str, Route]


def _routing_problems(raw: dict[str, Any], models: tuple[str, ...]) -> list[str]:
    """Names and routes that do not fit together, and the catalog's ``models`` without a
    route (sold, but served nowhere). Judged on the raw file, so they are listed beside
    the fields' own problems in one start."""
    listed = raw.get("channels")
    names = set(listed) if isinstance(listed, dict) else set()
    routes = raw.get("routes")
    routes = routes if isinstance(routes, dict) else {}
    problems = [
        f"channels.{name}: a channel name has lowercase letters, digits and '-' only"
        for name in sorted(map(str, names))
        if not _NAME.match(name)
    ]
    problems += [f"routes: no route for {model}" for model in models if model not in routes]
    for model, route in routes.items():
        if model not in models:
            problems.append(f"routes: {model!r} is no model of the catalog")
        members = route.get("channels") if isinstance(route, dict) else None
        for member in members if isinstance(members, list) else []:
            name = member.get("name") if isinstance(member, dict) else member
            if isinstance(name, str) and name not in names:
                problems.append(f"routes.{model}: unknown channel {name!r}")
    return problems


def _overrides(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Apply CHANNEL_<NAME>_<FIELD> environment variables to the parsed file."""
    for name, channel in (raw.get("channels") or {}).items():
        if not isinstance(channel, dict):
            continue
        prefix = f"CHANNEL_{str(name).upper().replace('-', '_')}_"
        for field in (
            "provider",
            "base_url",
            "api_key_env",
            "deployment",
            "api_version",
            "model",
            "timeout",
            "connect_timeout",
            "max_concurrency",
        ):
            if (value := env.get(prefix + field.upper())) is not None:
                channel[field] = value
    return raw


def _points_here(url: str) -> bool:
    """Whether ``url`` names this machine: in a pod, the pod itself, never an upstream."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _problems(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()]


def load(
    path: Path | None,
    env: Mapping[str, str] | None = None,
    *,
    allow_loopback: bool = False,
    models: Catalog | None = None,
) -> ChannelsFile:
    """The channel file at ``path`` with its environment overrides, or ConfigError listing
    every problem: the file's, a catalog model without a route (``models``: the catalog
    the platform runs with), a channel key variable not set, a channel on this machine
    (unless ``allow_loopback``, for local development)."""
    env = dict(os.environ) if env is None else dict(env)
    if path is None:
        raise ConfigError(
            "no channels configured: set CHANNELS_FILE to a channel file "
            "(docs/operations.md, 'Channels'); there is no default upstream"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'channels' and 'routes'")
    raw = _overrides(raw, env)
    problems: list[str] = []
    config: ChannelsFile | None = None
    try:
        config = ChannelsFile.model_validate(raw)
    except ValidationError as exc:
        problems += _problems(exc)
    problems += _routing_problems(raw, (models or catalog.load()).names())
    # Judged on the raw file too, so one start lists these beside the file's own problems.
    listed = raw.get("channels")
    for name, channel in (listed if isinstance(listed, dict) else {}).items():
        if not isinstance(channel, dict):
            continue
        key_env = str(channel.get("api_key_env") or "UPSTREAM_API_KEY")
        if not env.get(key_env):
            problems.append(f"channels.{name}.api_key_env: {key_env} is not set")
        url = str(channel.get("base_url") or "")
        if not allow_loopback and _points_here(url):
            problems.append(
                f"channels.{name}.base_url: {url} is this machine (in a pod, the pod "
                "itself); CHANNELS_ALLOW_LOOPBACK=true is for local development only"
            )
    if problems or config is None:
        lines = "\n".join(f"  {p}" for p in problems)
        raise ConfigError(f"{path} cannot be used:\n{lines}")
    return config
