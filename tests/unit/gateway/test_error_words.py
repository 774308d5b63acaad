"""A refused body is told in words a person reads, naming the field: not pydantic's."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pixelrelay.errors import E, ErrorKind
from pixelrelay_gateway.http.errors import validation_error


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(1, ge=1, le=4)
    quality: Literal["low", "high"] = "low"
    name: str = Field("", max_length=3)
    tags: list[str] = Field(default_factory=list, max_length=2)
    prompt: str

    @field_validator("name")
    @classmethod
    def not_ab(cls, value: str) -> str:
        if value == "ab":
            raise ValueError("ab is reserved")
        return value


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        ({"n": 9}, E.INVALID_PARAMETER, "n must be at most 4"),
        ({"n": 0}, E.INVALID_PARAMETER, "n must be at least 1"),
        ({"n": "two"}, E.INVALID_PARAMETER, "n must be a whole number"),
        ({"n": 1.5}, E.INVALID_PARAMETER, "n must be a whole number"),
        ({"quality": "mid"}, E.INVALID_PARAMETER, "quality must be one of 'low' or 'high'"),
        ({"name": "abcd"}, E.INVALID_PARAMETER, "name must be at most 3 characters"),
        ({"name": "ab"}, E.INVALID_PARAMETER, "name is invalid: ab is reserved"),
        ({"tags": ["a", "b", "c"]}, E.INVALID_PARAMETER, "tags must have at most 2 items"),
        ({"tags": "a"}, E.INVALID_PARAMETER, "tags must be a list"),
        ({"colour": "red"}, E.UNKNOWN_PARAMETER, "unknown parameter colour"),
    ],
)
def test_a_refusal_names_the_field_in_words(
    body: dict[str, object], kind: ErrorKind, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Body.model_validate({"prompt": "p", **body})
    refused = validation_error(caught.value)
    assert (refused.kind, refused.message) == (kind, message)


def test_a_missing_field_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        Body.model_validate({})
    refused = validation_error(caught.value)
    assert (refused.kind, refused.message, refused.param) == (
        E.MISSING_PARAMETER,
        "prompt is required",
        "prompt",
    )
