"""Who is calling an internal gRPC service, and what that caller may do.

Every internal call carries a service credential: a random bearer token in the call's
``authorization`` metadata. Each caller (``gateway``, ``dispatcher``, the operator's
``admin``) has its own token; a server knows only their SHA-256 digests
(``TRUSTED_CALLERS``), so a server that leaks its configuration leaks no credential, and no
service can speak as another. Each server declares which callers may call each of its RPCs
(an ``AccessPolicy``); a method it does not list is refused to everyone. gRPC health checks
are open: probes carry no credential and learn nothing but "serving".

The choice against mutual TLS, and how to rotate a token, is in docs/operations.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pixelrelay.errors import ApiError, E
from pixelrelay.ids import random_token

__all__ = [
    "ADMIN",
    "DISPATCHER",
    "GATEWAY",
    "AccessPolicy",
    "TrustedCallers",
    "credential_metadata",
    "digest",
    "new_credential",
]

GATEWAY = "gateway"
DISPATCHER = "dispatcher"
ADMIN = "admin"  # the operator: `pixelrelay admin`, and /admin/v1 through the gateway
HEALTH_PREFIX = "/grpc.health.v1.Health/"
CREDENTIAL_PREFIX = "pxs_"


def new_credential() -> str:
    return CREDENTIAL_PREFIX + random_token(40)


def digest(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()


def credential_metadata(credential: str) -> tuple[tuple[str, str], ...]:
    """The metadata that presents ``credential`` on a call ('' presents none)."""
    return (("authorization", f"Bearer {credential}"),) if credential else ()


@dataclass(frozen=True)
class TrustedCallers:
    """Caller name by credential digest, parsed from ``name:sha256hex,name:sha256hex``."""

    by_digest: Mapping[str, str]

    @classmethod
    def parse(cls, spec: str) -> TrustedCallers:
        by_digest: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, hexdigest = item.partition(":")
            if not name or len(hexdigest) != 64 or not _is_hex(hexdigest):
                raise ValueError(f"TRUSTED_CALLERS: expected name:sha256hex, got {item[:20]!r}")
            by_digest[hexdigest.lower()] = name
        return cls(by_digest)

    @classmethod
    def of(cls, credentials: Mapping[str, str]) -> TrustedCallers:
        """From caller name → credential (launchers and tests)."""
        return cls({digest(token): name for name, token in credentials.items()})

    def spec(self) -> str:
        return ",".join(f"{name}:{d}" for d, name in sorted(self.by_digest.items()))

    def identify(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
        """The caller a call's metadata proves, or None."""
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme == "Bearer" and token:
                    return self.by_digest.get(digest(token))
        return None


@dataclass(frozen=True)
class AccessPolicy:
    """RPC method name → the callers allowed to call it. ``public`` methods are the public
    API's, checked by the servicer itself (API keys)."""

    rules: Mapping[str, frozenset[str]]
    public: bool = False

    def check(self, method: str, caller: str | None) -> None:
        """Raise unless ``caller`` may call ``method`` (a full path, /pkg.Service/Method)."""
        if self.public or method.startswith(HEALTH_PREFIX):
            return
        if caller is None:
            raise ApiError(E.SERVICE_CREDENTIAL_INVALID)
        if caller not in self.rules.get(method.rsplit("/", 1)[-1], frozenset()):
            raise ApiError(E.CALLER_NOT_ALLOWED, f"{caller} may not call {method}")


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True
