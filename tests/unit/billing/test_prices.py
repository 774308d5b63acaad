from __future__ import annotations

import pytest

from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2
from pixelrelay_billing.prices import PriceList

PRICES = PriceList.load()


@pytest.mark.parametrize(
    ("model", "resolution", "quality", "n", "credits"),
    [
        ("gpt-image-2", "1k", "", 1, 7),
        ("gpt-image-2", "2k", "", 1, 14),
        ("gpt-image-2", "4k", "", 1, 20),
        ("gpt-image-2-official", "1k", "low", 1, 6),
        ("gpt-image-2-official", "2k", "medium", 1, 47),
        ("gpt-image-2-official", "1k", "high", 4, 744),
        ("gpt-image-2-official", "4k", "high", 1, 1467),
        ("gpt-image-2-official", "1k", "auto", 2, 372),
        ("gpt-image-2-official", "4k", "auto", 1, 1467),
    ],
)
def test_product_page_prices(
    model: str, resolution: str, quality: str, n: int, credits: int
) -> None:
    item = common_pb2.PriceItem(model=model, resolution=resolution, quality=quality, n=n)
    assert PRICES.quote(item).credits == credits


@pytest.mark.parametrize("quality", ["low", "medium"])
def test_stable_4k_is_sold_only_at_high(quality: str) -> None:
    item = common_pb2.PriceItem(model="gpt-image-2-official", resolution="4k", quality=quality, n=1)
    with pytest.raises(ApiError) as caught:
        PRICES.quote(item)
    assert caught.value.kind is E.INVALID_PARAMETER
