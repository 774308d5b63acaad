"""The model catalog: the packaged one is the product page's, and a bad file is refused at
start with every problem listed at once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pixelrelay import catalog
from pixelrelay.catalog import CatalogError

PACKAGED: dict[str, Any] = yaml.safe_load(catalog.DEFAULT_CATALOG.read_text())


def edited(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(PACKAGED)
    raw.update(changes)
    return raw


def problems(raw: object) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        catalog.parse(raw, "test.yaml")
    head, *lines = str(caught.value).splitlines()
    assert head == "test.yaml cannot be used:"
    return [line.strip() for line in lines]


def test_the_packaged_catalog_sells_the_two_models_at_the_product_pages_prices() -> None:
    models = catalog.load()
    assert models.names() == ("gpt-image-2", "gpt-image-2-official")
    basic, stable = models.models["gpt-image-2"], models.models["gpt-image-2-official"]
    assert [basic.price(r, "").credits for r in ("1k", "2k", "4k")] == [7, 14, 20]  # type: ignore[union-attr]
    assert stable.price("1k", "auto").id == "stable-high"  # type: ignore[union-attr]
    assert stable.price("4k", "low") is None  # 4k is sold at high only
    assert models.taking("mask") == ["gpt-image-2-official"]
    assert basic.created == 1_776_729_600  # 2026-04-21, as the model list always said


def test_catalog_file_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "catalog.yaml"
    mine.write_text(yaml.safe_dump(edited(version="mine")))
    monkeypatch.setenv("CATALOG_FILE", str(mine))
    assert catalog.load().version == "mine"
    monkeypatch.setenv("CATALOG_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(CatalogError, match="missing.yaml: cannot read"):
        catalog.load()


def test_every_problem_is_listed_in_one_refusal() -> None:
    raw = edited()
    basic = raw["models"]["gpt-image-2"]
    basic["colour"] = "blue"  # an unknown field
    stable = raw["models"]["gpt-image-2-official"]
    stable["prices"][0]["quality"] = "ultra"  # not a quality at all
    listed = problems(raw)
    assert "models.gpt-image-2.colour is not a field here" in listed, listed
    assert any(p.startswith("models.gpt-image-2-official.prices.0.quality") for p in listed), listed


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda m: m["gpt-image-2"].update(prices=[]),
            "models.gpt-image-2.prices must not be empty",
        ),
        (
            lambda m: m["gpt-image-2"]["prices"].pop(),  # 4k sold no more, still taken
            "models.gpt-image-2: no price at resolution 4k",
        ),
        (
            lambda m: m["gpt-image-2"]["prices"][0].update(quality="high"),
            "models.gpt-image-2.prices[0] (basic-1k): quality given, but the model takes no quality",
        ),
        (
            lambda m: m["gpt-image-2"]["capabilities"].update(resolutions=["1k", "2k"]),
            "models.gpt-image-2.prices[2] (basic-4k): resolution 4k is not one the model takes",
        ),
        (
            lambda m: m["gpt-image-2-official"].pop("auto_quoted_as"),
            "models.gpt-image-2-official.auto_quoted_as: quality auto needs a tier to be held at",
        ),
        (
            lambda m: m["gpt-image-2-official"]["prices"][1].update(id="stable-high"),
            "prices: id stable-high is used twice",
        ),
        (
            lambda m: m.update({"GPT Image": m["gpt-image-2"]}),
            "models.GPT Image: a model name has lowercase letters, digits and . _ - only",
        ),
    ],
)
def test_a_model_that_cannot_be_sold_as_written_is_refused(change: Any, expected: str) -> None:
    raw = edited()
    change(raw["models"])
    assert expected in problems(raw)


def test_aliases_resolve_to_models_and_never_loop() -> None:
    raw = edited(
        aliases={"gpt-image-2-stable": "gpt-image-2-official", "stable": "gpt-image-2-stable"}
    )
    models = catalog.parse(raw)
    assert models.resolve("stable") == "gpt-image-2-official"  # through another alias
    assert models.resolve("gpt-image-2") == "gpt-image-2"
    assert models.resolve("dall-e-3") is None

    looped = edited(aliases={"a": "b", "b": "a", "c": "nothing", "gpt-image-2": "gpt-image-2"})
    assert problems(looped) == [
        "aliases.a: a loop (a → b → a)",
        "aliases.b: a loop (b → a → b)",
        "aliases.c: names no model ('nothing')",
        "aliases.gpt-image-2: is a model's own name",
    ]


@pytest.mark.parametrize("raw", [None, [], "models"])
def test_a_file_that_is_not_a_catalog_is_refused(raw: object) -> None:
    with pytest.raises(CatalogError, match="expected a mapping"):
        catalog.parse(raw, "test.yaml")
