"""The Sessions service over REST (/api/v1/auth): each route a translation of one
Sessions call (core/sessions.py). The session's secret travels only as an HttpOnly,
SameSite=Strict cookie (Secure unless SESSION_COOKIE_SECURE=false, as in `make run`
over plain HTTP); the middleware turns that cookie into the request's credential and
checks the CSRF token of every state change (middleware.py)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from pixelrelay.v1 import billing_pb2, public_api_pb2
from pixelrelay_gateway.core.sessions import Sessions
from pixelrelay_gateway.http import translate
from pixelrelay_gateway.http.errors import errors
from pixelrelay_gateway.http.responses import JSONBody
from pixelrelay_gateway.http.schemas import CreatedKeyOut

SESSION_COOKIE = "pr_session"
OPTIONS = "/api/v1/auth/options"
SIGNUP = "/api/v1/auth/signup"
LOGIN = "/api/v1/auth/login"
SESSION = "/api/v1/auth/session"
LOGOUT = "/api/v1/auth/logout"
PASSWORD = "/api/v1/auth/password"
RESET = "/api/v1/auth/password-reset"
RESET_CONFIRM = "/api/v1/auth/password-reset/confirm"
VERIFY = "/api/v1/auth/verify-email"
# Routes a person uses before having a session: no credential, a body all the same.
CREDENTIAL_FREE = frozenset({SIGNUP, LOGIN, RESET, RESET_CONFIRM, VERIFY})

Authorization = Annotated[str | None, Header(description="set from the session cookie")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SignUpBody(_Body):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    invite_code: str = Field("", max_length=100, description="SIGNUP_MODE=invite")


class SignInBody(_Body):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)


class NewPasswordBody(_Body):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class ResetBody(_Body):
    email: str = Field(max_length=254)


class ResetConfirmBody(_Body):
    token: str = Field(max_length=200)
    new_password: str = Field(max_length=1024)


class VerifyBody(_Body):
    token: str = Field(max_length=200)


class OptionsOut(BaseModel):
    signup_mode: str = Field(description="open | invite | closed")
    email_verification: bool
    password_reset_by_email: bool
    min_password_length: int


class LoginOut(BaseModel):
    account_id: str
    email: str
    email_verified: bool
    created_at: int


class SessionOut(LoginOut):
    expires_at: int | None = Field(None, description="unix seconds (sign-in answers)")
    csrf_token: str = Field(description="send as X-CSRF-Token with every state change")
    first_key: CreatedKeyOut | None = Field(None, description="sign-up only: shown once")


def login_json(login: billing_pb2.LoginInfo) -> dict[str, Any]:
    return {
        "account_id": login.account_id,
        "email": login.email,
        "email_verified": login.email_verified,
        "created_at": login.created_at,
    }


def session_json(session: public_api_pb2.Session) -> dict[str, Any]:
    body = login_json(session.login) | {
        "expires_at": session.expires_at or None,
        "csrf_token": session.csrf_token,
    }
    if session.HasField("first_key"):
        body["first_key"] = translate.created_key_json(session.first_key)
    return body


def sessions_router(sessions: Sessions, secure_cookie: bool) -> APIRouter:
    router = APIRouter(tags=["sessions"])

    def signed_in(session: public_api_pb2.Session, status: int = 200) -> Response:
        answer = JSONBody(session_json(session), status_code=status)
        answer.set_cookie(
            SESSION_COOKIE,
            session.session_token,
            max_age=max(0, session.expires_at - int(time.time())),
            path="/",
            secure=secure_cookie,
            httponly=True,
            samesite="strict",
        )
        return answer

    def signed_out() -> Response:
        answer = Response(status_code=204)
        answer.delete_cookie(
            SESSION_COOKIE, path="/", secure=secure_cookie, httponly=True, samesite="strict"
        )
        return answer

    @router.get(OPTIONS, response_model=OptionsOut, summary="How people may sign up here")
    async def options() -> Response:
        o = sessions.options()
        return JSONBody(
            {
                "signup_mode": o.signup_mode,
                "email_verification": o.email_verification,
                "password_reset_by_email": o.password_reset_by_email,
                "min_password_length": o.min_password_length,
            }
        )

    @router.post(
        SIGNUP,
        status_code=201,
        response_model=SessionOut,
        responses=errors(400, 403, 409, 429, 503),
        summary="Create an account: signed in, with the sign-up grant and a first API key",
        description="The first key's secret is in this answer only. With a mailer "
        "configured, the grant waits for the link mailed to the address.",
    )
    async def sign_up(body: SignUpBody, request: Request) -> Response:
        session = await sessions.sign_up(
            public_api_pb2.SignUpRequest(
                email=body.email, password=body.password, invite_code=body.invite_code
            ),
            request.state.client,
        )
        return signed_in(session, 201)

    @router.post(
        LOGIN,
        response_model=SessionOut,
        responses=errors(400, 401, 503),
        summary="Sign in: a new session (the cookie)",
    )
    async def sign_in(body: SignInBody) -> Response:
        request = billing_pb2.SignInRequest(email=body.email, password=body.password)
        return signed_in(await sessions.sign_in(request))

    @router.get(
        SESSION,
        response_model=SessionOut,
        responses=errors(401, 503),
        summary="The signed-in session (and its CSRF token)",
    )
    async def get_session(authorization: Authorization = None) -> Response:
        return JSONBody(session_json(await sessions.get_session(authorization)))

    @router.post(LOGOUT, status_code=204, responses=errors(401, 403, 503), summary="Sign out")
    async def sign_out(authorization: Authorization = None) -> Response:
        await sessions.sign_out(authorization)
        return signed_out()

    @router.post(
        PASSWORD,
        response_model=SessionOut,
        responses=errors(400, 401, 403, 503),
        summary="Change the password: a new session, every other one ends",
    )
    async def change_password(
        body: NewPasswordBody, authorization: Authorization = None
    ) -> Response:
        request = public_api_pb2.NewPasswordRequest(
            current_password=body.current_password, new_password=body.new_password
        )
        return signed_in(await sessions.change_password(authorization, request))

    @router.post(
        RESET,
        status_code=202,
        responses=errors(400, 403, 503),
        summary="Mail a password-reset link (the same answer for an unknown email)",
    )
    async def request_reset(body: ResetBody) -> Response:
        await sessions.request_password_reset(
            public_api_pb2.RequestPasswordResetRequest(email=body.email)
        )
        return Response(status_code=202)

    @router.post(
        RESET_CONFIRM,
        response_model=SessionOut,
        responses=errors(400, 503),
        summary="Set a new password with a mailed link: signed in, every other session ends",
    )
    async def reset(body: ResetConfirmBody) -> Response:
        request = public_api_pb2.ResetPasswordRequest(
            token=body.token, new_password=body.new_password
        )
        return signed_in(await sessions.reset_password(request))

    @router.post(
        VERIFY,
        response_model=LoginOut,
        responses=errors(400, 503),
        summary="Confirm the email with the mailed link (the sign-up grant follows)",
    )
    async def verify(body: VerifyBody) -> Response:
        login = await sessions.verify_email(public_api_pb2.VerifyEmailRequest(token=body.token))
        return JSONBody(login_json(login))

    return router
