"""Identifiers and secrets: random, URL-safe, with a recognisable prefix."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.digits + string.ascii_letters


def random_token(length: int) -> str:
    """``length`` base62 characters from the OS CSPRNG (5.95 bits each, uniform).

    One big random integer written in base 62: an order of magnitude cheaper than a
    ``secrets.choice`` per character, which showed in the submit profile.
    """
    value = secrets.randbelow(62**length)
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 62)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def new_id(prefix: str) -> str:
    """``<prefix>_<22 base62 chars>``: 131 bits, not guessable."""
    return f"{prefix}_{random_token(22)}"
