"""Prices, from the model catalog (pixelrelay/catalog.py): data, not code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pixelrelay import catalog
from pixelrelay.catalog import Catalog, PriceRow
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2


@dataclass(frozen=True)
class Quote:
    price_id: str
    unit_credits: int
    units: int

    @property
    def credits(self) -> int:
        return self.unit_credits * self.units


class PriceList:
    def __init__(self, models: Catalog):
        self.catalog = models
        self.version = models.version

    @classmethod
    def load(cls, path: Path | None = None) -> PriceList:
        """The catalog's prices: ``path``, else CATALOG_FILE, else the packaged catalog."""
        return cls(catalog.load(path))

    def unit_price(self, model: str, resolution: str, quality: str) -> PriceRow:
        """A model's price for one image (its canonical name: the gateway resolved any
        alias before the hold)."""
        spec = self.catalog.models.get(model)
        row = spec.price(resolution, quality) if spec else None
        if row is None:
            what = f"{model} at {resolution}" + (f" with quality {quality}" if quality else "")
            raise ApiError(E.INVALID_PARAMETER, f"{what} is not offered", param="quality")
        return row

    def quote(self, item: common_pb2.PriceItem) -> Quote:
        if item.n < 1:
            raise ApiError(E.INVALID_PARAMETER, "n must be at least 1", param="n")
        row = self.unit_price(item.model, item.resolution, item.quality)
        return Quote(price_id=row.id, unit_credits=row.credits, units=item.n)
