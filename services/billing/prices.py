"""The price list: data (prices.yaml), not code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2

# What quality=auto is quoted (and held) at: the most the upstream may choose.
AUTO_QUOTED_AS = "high"


@dataclass(frozen=True)
class PriceRow:
    id: str
    credits: int
    model: str
    resolutions: frozenset[str] | None
    qualities: frozenset[str] | None

    def matches(self, model: str, resolution: str, quality: str) -> bool:
        return (
            self.model == model
            and (self.resolutions is None or resolution in self.resolutions)
            and (self.qualities is None or quality in self.qualities)
        )


@dataclass(frozen=True)
class Quote:
    price_id: str
    unit_credits: int
    units: int

    @property
    def credits(self) -> int:
        return self.unit_credits * self.units


def _as_set(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset([str(value)])


class PriceList:
    def __init__(self, rows: list[PriceRow], version: str):
        self.rows = rows
        self.version = version

    @classmethod
    def load(cls, path: Path) -> PriceList:
        doc = yaml.safe_load(path.read_text())
        rows = []
        for raw in doc["prices"]:
            credits = int(raw["credits"])
            if credits <= 0:
                raise ValueError(f"{path}: price {raw['id']} must be a positive integer")
            rows.append(
                PriceRow(
                    id=str(raw["id"]),
                    credits=credits,
                    model=str(raw["model"]),
                    resolutions=_as_set(raw.get("resolution")),
                    qualities=_as_set(raw.get("quality")),
                )
            )
        return cls(rows, str(doc.get("version", "")))

    def unit_price(self, model: str, resolution: str, quality: str) -> PriceRow:
        tier = AUTO_QUOTED_AS if quality == "auto" else quality
        for row in self.rows:
            if row.matches(model, resolution, tier):
                return row
        what = f"{model} at {resolution}" + (f" with quality {quality}" if quality else "")
        raise ApiError(E.INVALID_PARAMETER, f"{what} is not offered", param="quality")

    def quote(self, item: common_pb2.PriceItem) -> Quote:
        if item.n < 1:
            raise ApiError(E.INVALID_PARAMETER, "n must be at least 1", param="n")
        row = self.unit_price(item.model, item.resolution, item.quality)
        return Quote(price_id=row.id, unit_credits=row.credits, units=item.n)
