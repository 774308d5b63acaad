"""Pydantic's complaints as a person would say them ("n must be at most 4", not "n: Input
should be less than or equal to 4"): the API's 400s and the configuration files' refusals."""

from __future__ import annotations

from typing import Any

_WORDS = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "missing": "is required",
    "extra_forbidden": "is not a field here",
    "date_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "string_too_short": "must be at least {min_length} characters",
    "string_too_long": "must be at most {max_length} characters",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "literal_error": "must be one of {expected}",
    "enum": "must be one of {expected}",
    "string_pattern_mismatch": "has the wrong format",
    "url_parsing": "must be a URL",
    "url_scheme": "must be a URL starting with {expected_schemes}",
}


def in_words(error: Any) -> str:
    """One of pydantic's errors (an item of ``ValidationError.errors()``), said after the
    field's name: "must be at most 4"."""
    kind = str(error.get("type", ""))
    if kind == "too_short" and error.get("ctx", {}).get("min_length") == 1:
        return "must not be empty"
    template = _WORDS.get(kind)
    if template is not None:
        try:
            return template.format(**error.get("ctx", {}))
        except (KeyError, IndexError):
            pass
    message = str(error.get("msg", "invalid value"))
    return "is invalid: " + message.removeprefix("Value error, ")
