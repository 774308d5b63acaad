"""Who is calling: the edges (grpc/servicer.py, http/) turn an ``Authorization: Bearer …``
value into a ``Principal`` here, once per call, and hand it to the operation (api.py)."""

from __future__ import annotations

from pixelrelay import scopes
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import billing_pb2
from pixelrelay_gateway.core.authcache import AuthCache
from pixelrelay_gateway.core.ratelimit import RateLimiter


def bearer_key(authorization: str | None) -> str:
    """The API key from an ``Authorization: Bearer …`` value, or 10001."""
    if not authorization:
        raise ApiError(E.MISSING_API_KEY)
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(E.MISSING_API_KEY, "use the header Authorization: Bearer <api key>")
    return key.strip()


class Authenticator:
    def __init__(self, *, cache: AuthCache, limiter: RateLimiter):
        self.cache = cache
        self.limiter = limiter

    async def authenticate(self, authorization: str | None, scope: str) -> billing_pb2.Principal:
        """Who is calling, after their key's rate limit, if the key has ``scope``: the scope
        of the operation about to run (which checks it again itself, so a principal
        authenticated for another operation cannot slip through)."""
        # Reading one's own tasks survives a billing outage (authcache.py); nothing else.
        principal = await self.cache.principal(
            bearer_key(authorization), in_outage=scope == scopes.READ
        )
        await self.limiter.take(principal.key_id, principal.rate_limit)
        scopes.require(principal.scopes, scope)
        return principal

    def vouched(self, authorization: str) -> bool:
        """The header's key was accepted by billing lately (authcache.py)."""
        try:
            return self.cache.vouches_for(bearer_key(authorization))
        except ApiError:
            return False

    async def admit(self, authorization: str | None) -> None:
        """The caller's key is valid, known from its headers alone: checked before a body is
        read (16 unauthenticated 60 MB edits once took the gateway from 332 to 936 MB).
        Scope and rate limit are ``authenticate``'s, which then finds the principal cached."""
        await self.cache.principal(bearer_key(authorization))
