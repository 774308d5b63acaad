"""People's sessions: sign-up, sign-in and out, password change and reset, email
verification — the public Sessions service, over gRPC and REST alike (billing's
ledger/logins.py holds the people; this adds the platform's policy: SIGNUP_MODE, the
mailer, sign-ups per address, the CSRF token).

A session is used like a key (billing answers its principal, kind "session"); its CSRF
token is derived from its secret, so any gateway replica can check it with nothing
stored: a page reads it from GetSession (the session's cookie is HttpOnly) and another
site can neither read it nor compute it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections import deque
from collections.abc import Coroutine
from enum import StrEnum
from typing import Any

from pixelrelay.billing_client import BillingClient
from pixelrelay.errors import ApiError, E
from pixelrelay.limits import MIN_PASSWORD_LENGTH
from pixelrelay.v1 import billing_pb2, public_api_pb2
from pixelrelay_gateway.core.authcache import AuthCache
from pixelrelay_gateway.core.authenticator import bearer_key
from pixelrelay_gateway.core.mailer import Links

MAX_TRACKED_ADDRESSES = 100_000


class SignUpMode(StrEnum):
    OPEN = "open"
    INVITE = "invite"  # with an operator's invite code
    CLOSED = "closed"  # accounts only from the operator


def csrf_token(session_token: str) -> str:
    digest = hashlib.sha256(b"pixelrelay csrf\0" + session_token.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_matches(session_token: str, presented: str) -> bool:
    return hmac.compare_digest(csrf_token(session_token), presented)


class SignUpsPerAddress:
    """At most ``limit`` sign-ups per client address per hour (per gateway replica):
    the sign-up grant is not free for one machine to farm."""

    def __init__(self, limit: int, window: float = 3600.0):
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[float]] = {}

    def take(self, address: str) -> None:
        if self.limit <= 0:
            return
        now = time.monotonic()
        times = self._seen.setdefault(address, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) >= self.limit:
            raise ApiError(
                E.AUTH_THROTTLED,
                "too many sign-ups from this address",
                retry_after=times[0] + self.window - now,
            )
        times.append(now)
        if len(self._seen) > MAX_TRACKED_ADDRESSES:
            self._seen.pop(next(iter(self._seen)))


class Sessions:
    def __init__(
        self,
        *,
        billing: BillingClient,
        auth: AuthCache,
        mode: SignUpMode,
        links: Links | None,
        signups: SignUpsPerAddress,
    ):
        self.billing = billing
        self.auth = auth  # the API keys' cache: a session is used like a key
        self.mode = mode
        self.links = links
        self.signups = signups
        self._mailing: set[asyncio.Task[None]] = set()

    def options(self) -> public_api_pb2.SignUpOptions:
        return public_api_pb2.SignUpOptions(
            signup_mode=self.mode.value,
            email_verification=self.links is not None,
            password_reset_by_email=self.links is not None,
            min_password_length=MIN_PASSWORD_LENGTH,
        )

    async def sign_up(
        self, request: public_api_pb2.SignUpRequest, address: str
    ) -> public_api_pb2.Session:
        if self.mode is SignUpMode.CLOSED:
            raise ApiError(E.SIGNUP_CLOSED)
        self.signups.take(address)
        signed = await self.billing.create_login(
            billing_pb2.CreateLoginRequest(
                email=request.email,
                password=request.password,
                invite_code=request.invite_code,
                require_invite=self.mode is SignUpMode.INVITE,
                verify_email=self.links is not None,
            )
        )
        if self.links is not None and signed.verify_token:
            self._mail(self.links.verification(signed.login.email, signed.verify_token))
        return self._session(signed)

    async def sign_in(self, request: billing_pb2.SignInRequest) -> public_api_pb2.Session:
        return self._session(await self.billing.sign_in(request.email, request.password))

    async def get_session(self, authorization: str | None) -> public_api_pb2.Session:
        token, principal = await self._session_of(authorization)
        login = await self.billing.get_login(principal.account_id)
        return public_api_pb2.Session(login=login, csrf_token=csrf_token(token))

    async def sign_out(self, authorization: str | None) -> None:
        token, principal = await self._session_of(authorization)
        await self.billing.sign_out(principal.account_id, principal.key_id)
        self.auth.forget(token)

    async def change_password(
        self, authorization: str | None, request: public_api_pb2.NewPasswordRequest
    ) -> public_api_pb2.Session:
        token, principal = await self._session_of(authorization)
        signed = await self.billing.change_password(
            billing_pb2.ChangePasswordRequest(
                account_id=principal.account_id,
                session_key_id=principal.key_id,
                current_password=request.current_password,
                new_password=request.new_password,
            )
        )
        self.auth.forget(token)
        return self._session(signed)

    async def request_password_reset(
        self, request: public_api_pb2.RequestPasswordResetRequest
    ) -> None:
        """The same answer whether or not the email has an account; the mail goes out
        after it."""
        if self.links is None:
            raise ApiError(E.EMAIL_RESET_OFF)
        issued = await self.billing.issue_login_token("reset", email=request.email)
        if issued.token:
            self._mail(self.links.password_reset(issued.email, issued.token))

    async def reset_password(
        self, request: public_api_pb2.ResetPasswordRequest
    ) -> public_api_pb2.Session:
        signed = await self.billing.use_login_token("reset", request.token, request.new_password)
        return self._session(signed)

    async def verify_email(
        self, request: public_api_pb2.VerifyEmailRequest
    ) -> billing_pb2.LoginInfo:
        return (await self.billing.use_login_token("verify", request.token)).login

    async def _session_of(self, authorization: str | None) -> tuple[str, billing_pb2.Principal]:
        """The caller's session secret and principal; 10009 for anything but a session."""
        try:
            token = bearer_key(authorization)
            principal = await self.auth.principal(token)
        except ApiError as err:
            if err.kind.http_status == 401:
                raise ApiError(E.SESSION_INVALID) from None
            raise
        if principal.kind != "session":
            raise ApiError(E.SESSION_INVALID)
        return token, principal

    @staticmethod
    def _session(signed: billing_pb2.SignedIn) -> public_api_pb2.Session:
        session = public_api_pb2.Session(
            login=signed.login,
            session_token=signed.session_token,
            expires_at=signed.session_expires_at,
            csrf_token=csrf_token(signed.session_token),
        )
        if signed.HasField("first_key"):
            session.first_key.CopyFrom(signed.first_key)
        return session

    def _mail(self, sending: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(sending)
        self._mailing.add(task)
        task.add_done_callback(self._mailing.discard)
