"""Identifiers and secrets: random, URL-safe, with a recognisable prefix."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

from pixelrelay.errors import ApiError, E

_ALPHABET = string.digits + string.ascii_letters
# The body of every id after its prefix: base62 only, so an id is safe in an object key, a
# NATS subject or a MAC's input (no "/", "..", "|", NUL); 64 leaves room beyond today's 22.
ID_BODY = r"[0-9A-Za-z]{1,64}"
_ID = re.compile(rf"([a-z]+)_{ID_BODY}")


def _base62(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 62)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def random_token(length: int) -> str:
    """``length`` base62 characters from the OS CSPRNG (5.95 bits each, uniform).

    One big random integer written in base 62: an order of magnitude cheaper than a
    ``secrets.choice`` per character, which showed in the submit profile.
    """
    return _base62(secrets.randbelow(62**length), length)


def new_id(prefix: str) -> str:
    """``<prefix>_<22 base62 chars>``: 131 bits, not guessable."""
    return f"{prefix}_{random_token(22)}"


def content_id(prefix: str, owner: str, content: bytes) -> str:
    """``<prefix>_<22 base62 chars>`` from the SHA-256 of the owner and the content: the
    same bytes from the same owner always get the same id (a retried upload makes nothing
    new), another owner's never do."""
    digest = hashlib.sha256(owner.encode() + b"\0" + content).digest()
    return f"{prefix}_{_base62(int.from_bytes(digest, 'big') % 62**22, 22)}"


def is_id(value: str, prefix: str) -> bool:
    """``value`` is a well-formed ``<prefix>_…`` id (not that it exists)."""
    match = _ID.fullmatch(value)  # not match(): "$" lets a trailing newline by
    return match is not None and match[1] == prefix


def checked_id(value: str, prefix: str, param: str) -> str:
    """``value`` if it is a ``<prefix>_…`` id; else the caller's error (400 naming
    ``param``), never a lookup or an object key built from it. Every internal RPC that
    takes an id passes it here first."""
    if not value:
        raise ApiError(E.MISSING_PARAMETER, f"{param} is required", param=param)
    if not is_id(value, prefix):
        raise ApiError(E.INVALID_PARAMETER, f"{param} is not a {prefix} id", param=param)
    return value
