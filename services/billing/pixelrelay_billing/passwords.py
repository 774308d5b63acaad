"""Passwords: the rules a new one must meet, and argon2id hashing (argon2-cffi, its
default RFC 9106 "low memory" profile: 3 passes over 64 MiB, 4 lanes).

A hash costs ~50-100 ms of CPU and 64 MiB, so at most ``parallel`` run at once (in
threads: argon2-cffi releases the GIL) and the rest wait their turn. An unknown email
is checked against a dummy hash made the same way, so it costs what a wrong password
costs and the timing tells nothing of which emails have accounts.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pixelrelay.errors import ApiError, E
from pixelrelay.ids import random_token
from pixelrelay.limits import MIN_PASSWORD_LENGTH as MIN_LENGTH

MAX_LENGTH = 256  # longer is no safer, and argon2 would still have to read it
# The most used passwords long enough to pass the length rule (from public breach lists).
COMMON = frozenset(
    {
        "1234567890",
        "12345678910",
        "123456789a",
        "0123456789",
        "1q2w3e4r5t",
        "qwertyuiop",
        "1qaz2wsx3edc",
        "password1234",
        "password123",
        "passw0rd123",
        "iloveyou123",
        "qwerty12345",
        "qwerty123456",
        "abcdefghij",
        "aaaaaaaaaa",
        "1111111111",
        "letmein123",
        "welcome123",
        "administrator",
        "changeme123",
    }
)


def check_new(password: str, email: str, param: str = "password") -> None:
    """Refuses a weak password (20018) with the rule it breaks."""

    def weak(why: str) -> ApiError:
        return ApiError(E.WEAK_PASSWORD, f"the password {why}", param=param)

    if len(password) < MIN_LENGTH:
        raise weak(f"must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise weak(f"must be at most {MAX_LENGTH} characters")
    lowered = password.lower()
    if lowered in COMMON or len(set(password)) < 4:
        raise weak("is one of the most common ones: choose another")
    if lowered == email or lowered == email.split("@")[0]:
        raise weak("must not be your email")


class Passwords:
    def __init__(self, parallel: int = 2, hasher: PasswordHasher | None = None):
        self.hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(parallel)
        self._dummy = self.hasher.hash(random_token(24))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored`` (None: an unknown person, checked
        against the dummy hash and never matching)."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)
