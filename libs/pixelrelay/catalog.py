"""The model catalog: what is sold (models, what each takes, its credit prices, its other
names), as data in one file that billing, the gateway and the dispatcher all read.

``load()`` reads CATALOG_FILE (default: catalog.yaml beside this module) and refuses a file
with any problem, listing every one: an unknown field, a model without a price, a price
for a value the model does not take, a price id used twice, an alias to nothing or in a
loop. Where each model is served from is the channel file's (the dispatcher checks that
every model here has a route there, and nothing else).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pixelrelay.limits import MAX_CREDITS
from pixelrelay.words import in_words

DEFAULT_CATALOG = Path(__file__).with_name("catalog.yaml")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

Resolution = Literal["1k", "2k", "4k"]
# The ratios of the gateway's size table (pixelrelay_gateway/core/sizes.py), landscape and portrait.
Ratio = Literal[
    "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "5:4", "4:5", "2:1", "1:2", "21:9", "9:21"
]
Quality = Literal["auto", "low", "medium", "high"]
Background = Literal["auto", "opaque", "transparent"]
Moderation = Literal["auto", "low"]
Format = Literal["png", "jpeg", "webp"]
MAX_REFERENCES = 16


class CatalogError(Exception):
    """The catalog cannot be used; the message lists every problem, one per line."""


class Capabilities(BaseModel):
    """What a client may ask of the model. An empty list: the field is not taken at all
    (asking for it is an error naming the models that take it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_n: int = Field(1, ge=1, le=10)
    # ratios: a ratio and a resolution (the gateway's table); any: those or WIDTHxHEIGHT
    sizes: Literal["ratios", "any"] = "ratios"
    # The ratios it makes; empty: every ratio of the table.
    ratios: tuple[Ratio, ...] = ()
    resolutions: tuple[Resolution, ...] = Field(("1k",), min_length=1)
    qualities: tuple[Quality, ...] = ()
    backgrounds: tuple[Background, ...] = ()
    moderations: tuple[Moderation, ...] = ()
    # One format and nothing else: output_format is not taken (the images are that).
    formats: tuple[Format, ...] = Field(("png",), min_length=1)
    output_compression: bool = False
    masks: bool = False
    max_references: int = Field(MAX_REFERENCES, ge=0, le=MAX_REFERENCES)
    # Previews while streaming (/v1 stream + partial_images).
    partial_images: bool = True

    @property
    def chooses_format(self) -> bool:
        return len(self.formats) > 1


class PriceRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    credits: int = Field(gt=0, le=MAX_CREDITS)
    resolution: Resolution | tuple[Resolution, ...] | None = None
    quality: Quality | tuple[Quality, ...] | None = None

    @property
    def resolutions(self) -> frozenset[str] | None:
        return _as_set(self.resolution)

    @property
    def qualities(self) -> frozenset[str] | None:
        return _as_set(self.quality)

    def matches(self, resolution: str, quality: str) -> bool:
        return (self.resolutions is None or resolution in self.resolutions) and (
            self.qualities is None or quality in self.qualities
        )


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1, max_length=300)
    released: dt.date
    capabilities: Capabilities
    # quality=auto is held at this tier (the most the upstream may choose) and charged
    # at the tier it reports. Required when the model takes quality auto.
    auto_quoted_as: Quality | None = None
    prices: tuple[PriceRow, ...] = Field(min_length=1)

    @property
    def created(self) -> int:
        """Unix seconds of its release day (OpenAI's `created` in a model list)."""
        return int(dt.datetime.combine(self.released, dt.time(), dt.UTC).timestamp())

    def tier(self, quality: str) -> str:
        """The tier ``quality`` is priced at: auto as quoted, any other as itself."""
        return (self.auto_quoted_as or "") if quality == "auto" else quality

    def price(self, resolution: str, quality: str) -> PriceRow | None:
        tier = self.tier(quality)
        return next((row for row in self.prices if row.matches(resolution, tier)), None)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=64)
    models: dict[str, ModelSpec] = Field(min_length=1)
    aliases: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    version: str
    models: dict[str, ModelSpec]
    aliases: dict[str, str]  # an alias → the model it names, resolved (no chains)

    def resolve(self, name: str) -> str | None:
        """The model ``name`` means: itself, the model an alias names, or None."""
        if name in self.models:
            return name
        return self.aliases.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(self.models)

    def taking(self, field: str) -> list[str]:
        """The models that take ``field`` (a request field the capabilities gate)."""
        return [name for name, m in self.models.items() if takes(m.capabilities, field)]


def takes(caps: Capabilities, field: str) -> bool:
    """Whether a request may carry ``field`` for a model with ``caps``."""
    return {
        "quality": bool(caps.qualities),
        "background": bool(caps.backgrounds),
        "moderation": bool(caps.moderations),
        "output_format": caps.chooses_format,
        "output_compression": caps.output_compression,
        "mask": caps.masks,
        "mask_url": caps.masks,
    }.get(field, True)


def _as_set(value: str | Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset([value] if isinstance(value, str) else value)


def _model_problems(name: str, model: ModelSpec) -> list[str]:
    where = f"models.{name}"
    caps = model.capabilities
    problems = []
    if not NAME.match(name):
        problems.append(f"{where}: a model name has lowercase letters, digits and . _ - only")
    if "auto" in caps.qualities:
        if model.auto_quoted_as in (None, "auto"):
            problems.append(f"{where}.auto_quoted_as: quality auto needs a tier to be held at")
        elif model.auto_quoted_as not in caps.qualities:
            problems.append(f"{where}.auto_quoted_as: {model.auto_quoted_as} is not a quality")
    elif model.auto_quoted_as is not None:
        problems.append(f"{where}.auto_quoted_as: the model does not take quality auto")
    for i, row in enumerate(model.prices):
        at = f"{where}.prices[{i}] ({row.id})"
        for value in sorted(row.resolutions or ()):
            if value not in caps.resolutions:
                problems.append(f"{at}: resolution {value} is not one the model takes")
        if row.qualities is not None and not caps.qualities:
            problems.append(f"{at}: quality given, but the model takes no quality")
        for value in sorted(row.qualities or ()):
            if value == "auto":
                problems.append(f"{at}: quality auto is priced at auto_quoted_as, not a row")
            elif caps.qualities and value not in caps.qualities:
                problems.append(f"{at}: quality {value} is not one the model takes")
    for resolution in caps.resolutions:
        tiers: list[str] = [q for q in caps.qualities if q != "auto"] or [""]
        if not any(model.price(resolution, q) for q in tiers):
            problems.append(f"{where}: no price at resolution {resolution}")
    return problems


def _aliases(raw: dict[str, str], models: dict[str, ModelSpec]) -> tuple[dict[str, str], list[str]]:
    resolved: dict[str, str] = {}
    problems: list[str] = []
    for alias in raw:
        if alias in models:
            problems.append(f"aliases.{alias}: is a model's own name")
            continue
        if not NAME.match(alias):
            problems.append(f"aliases.{alias}: an alias has lowercase letters, digits and . _ -")
        seen, name = [alias], raw[alias]
        while name in raw and name not in seen:
            seen.append(name)
            name = raw[name]
        if name in seen:
            problems.append(f"aliases.{alias}: a loop ({' → '.join([*seen, name])})")
        elif name not in models:
            problems.append(f"aliases.{alias}: names no model ({name!r})")
        else:
            resolved[alias] = name
    return resolved, problems


def parse(raw: object, source: str = "catalog") -> Catalog:
    """A catalog from its parsed YAML, or CatalogError listing every problem."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: expected a mapping with 'version' and 'models'")
    try:
        data = _File.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'} {in_words(e)}" for e in exc.errors()
        ]
        raise CatalogError(_listed(source, problems)) from None
    problems = [p for name, m in data.models.items() for p in _model_problems(name, m)]
    ids = [row.id for m in data.models.values() for row in m.prices]
    problems += [
        f"prices: id {i} is used twice" for i in sorted({i for i in ids if ids.count(i) > 1})
    ]
    aliases, alias_problems = _aliases(data.aliases, data.models)
    problems += alias_problems
    if problems:
        raise CatalogError(_listed(source, problems))
    return Catalog(data.version, data.models, aliases)


def load(path: Path | None = None) -> Catalog:
    """The catalog at ``path``, else CATALOG_FILE, else the packaged one."""
    path = path or Path(os.environ.get("CATALOG_FILE") or DEFAULT_CATALOG)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    return parse(raw, str(path))


def _listed(source: str, problems: list[str]) -> str:
    return f"{source} cannot be used:\n" + "\n".join(f"  {p}" for p in problems)


def load_or_refuse(log: logging.Logger) -> Catalog:
    """The catalog for a service starting: a file it cannot use stops it (exit 2) with
    every problem in one log line, as a bad channel file stops a dispatcher."""
    try:
        return load()
    except CatalogError as exc:
        log.critical("refusing to start: %s", exc)
        sys.exit(2)
