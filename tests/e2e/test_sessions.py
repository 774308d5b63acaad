"""People's sessions over REST against the running platform: sign-up, the cookie, CSRF,
sign-out and in, password change, and the refusals (a taken email, a weak password, a
wrong password answered as an unknown email is, in the same time; the throttle)."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from pixelrelay.v1 import billing_pb2, public_api_pb2, public_api_pb2_grpc
from tests.e2e.conftest import Platform, this_tests_address
from tests.e2e.helpers import refusal

pytestmark = [pytest.mark.e2e, pytest.mark.security]

PASSWORD = "a long enough passphrase"
_emails = iter(range(1_000_000))


def new_email() -> str:
    return f"person{next(_emails)}.{time.time_ns()}@example.com"


@pytest.fixture
async def browser(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """A client with its own cookie jar, as one browser is."""
    async with httpx.AsyncClient(
        base_url=platform.config.base_url,
        timeout=30,
        headers={"x-forwarded-for": this_tests_address()},
    ) as client:
        yield client


async def sign_up(client: httpx.AsyncClient, email: str | None = None) -> dict[str, Any]:
    answer = await client.post(
        "/api/v1/auth/signup", json={"email": email or new_email(), "password": PASSWORD}
    )
    assert answer.status_code == 201, answer.text
    session: dict[str, Any] = answer.json()
    return session


def csrf(session: dict[str, Any]) -> dict[str, str]:
    return {"x-csrf-token": session["csrf_token"]}


async def test_sign_up_signs_in_with_a_strict_http_only_cookie_the_grant_and_a_first_key(
    browser: httpx.AsyncClient, platform: Platform
) -> None:
    email = new_email()
    answer = await browser.post(
        "/api/v1/auth/signup", json={"email": email.upper(), "password": PASSWORD}
    )
    assert answer.status_code == 201
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("pr_session=pr_sess_")
    for attribute in ["HttpOnly", "SameSite=strict", "Path=/", "Max-Age="]:
        assert attribute.lower() in cookie.lower()
    assert "secure" not in cookie.lower()  # make run's plain http; Secure by default
    session = answer.json()
    assert session["email"] == email and session["email_verified"]
    assert "session_token" not in session and "pr_sess_" not in answer.text
    # the cookie is the credential for the console's calls
    account = (await browser.get("/api/v1/account")).json()
    assert account["account_id"] == session["account_id"] and account["balance"] == 2000
    # and the first key, shown once, works on its own
    first = session["first_key"]["api_key"]
    alone = await platform.http.get("/api/v1/account", headers=platform.auth(first))
    assert alone.json()["account_id"] == session["account_id"]
    keys = (await browser.get("/api/v1/keys")).json()["data"]
    assert [k["id"] for k in keys] == [session["first_key"]["key"]["id"]]  # no session listed


async def test_a_state_change_with_the_cookie_needs_the_csrf_token_and_this_site(
    browser: httpx.AsyncClient,
) -> None:
    session = await sign_up(browser)
    refused = await browser.post("/api/v1/keys", json={"name": "x"})
    assert refusal(refused) == (403, 10010)
    forged = await browser.post("/api/v1/keys", json={"name": "x"}, headers={"x-csrf-token": "no"})
    assert refusal(forged) == (403, 10010)
    cross = await browser.post(
        "/api/v1/keys",
        json={"name": "x"},
        headers={**csrf(session), "origin": "https://evil.example"},
    )
    assert refusal(cross) == (403, 10010)
    fetch_site = await browser.post(
        "/api/v1/auth/logout", headers={**csrf(session), "sec-fetch-site": "cross-site"}
    )
    assert refusal(fetch_site) == (403, 10010)
    # a cross-site sign-in (login CSRF) as well
    login = await browser.post(
        "/api/v1/auth/login",
        json={"email": session["email"], "password": PASSWORD},
        headers={"origin": "https://evil.example"},
    )
    assert refusal(login) == (403, 10010)
    assert (await browser.get("/api/v1/keys")).json()["data"].__len__() == 1  # nothing made
    made = await browser.post("/api/v1/keys", json={"name": "ci"}, headers=csrf(session))
    assert made.status_code == 200, made.text


async def test_sign_out_ends_the_session_and_sign_in_starts_a_new_one(
    browser: httpx.AsyncClient, platform: Platform
) -> None:
    session = await sign_up(browser)
    old = browser.cookies["pr_session"]
    signed_out = await browser.post("/api/v1/auth/logout", headers=csrf(session))
    assert signed_out.status_code == 204
    assert "pr_session" not in browser.cookies
    # the old cookie, replayed, is dead
    replay = await platform.http.get("/api/v1/account", headers={"cookie": f"pr_session={old}"})
    assert refusal(replay)[0] == 401
    # and the browser is told to drop it
    assert replay.headers["set-cookie"].startswith("pr_session=; Max-Age=0")
    assert refusal(await browser.get("/api/v1/auth/session")) == (401, 10009)
    signed_in = await browser.post(
        "/api/v1/auth/login", json={"email": session["email"], "password": PASSWORD}
    )
    assert signed_in.status_code == 200
    assert browser.cookies["pr_session"] != old  # a new session id: no fixation


async def test_a_session_id_planted_before_sign_in_is_not_kept(
    browser: httpx.AsyncClient,
) -> None:
    session = await sign_up(browser)
    # an attacker's session id, set in the victim's browser before they sign in
    planted = "pr_sess_" + "A" * 40
    browser.cookies.clear()
    signed_in = await browser.post(
        "/api/v1/auth/login",
        json={"email": session["email"], "password": PASSWORD},
        headers={"cookie": f"pr_session={planted}"},
    )
    assert signed_in.status_code == 200
    issued = signed_in.cookies["pr_session"]
    assert issued.startswith("pr_sess_") and issued != planted


async def test_an_api_key_is_no_session(browser: httpx.AsyncClient, platform: Platform) -> None:
    answer = await platform.http.get("/api/v1/auth/session", headers=platform.auth())
    assert refusal(answer) == (401, 10009)


async def test_a_password_change_ends_the_other_sessions(
    browser: httpx.AsyncClient, platform: Platform
) -> None:
    session = await sign_up(browser)
    async with httpx.AsyncClient(base_url=platform.config.base_url) as elsewhere:
        other = await elsewhere.post(
            "/api/v1/auth/login", json={"email": session["email"], "password": PASSWORD}
        )
    other_cookie = other.cookies["pr_session"]
    wrong = await browser.post(
        "/api/v1/auth/password",
        json={"current_password": "not it at all", "new_password": "another passphrase"},
        headers=csrf(session),
    )
    assert refusal(wrong) == (400, 20021)  # the session stays
    weak = await browser.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=csrf(session),
    )
    assert refusal(weak) == (400, 20018) and weak.json()["error"]["param"] == "new_password"
    changed = await browser.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "another passphrase"},
        headers=csrf(session),
    )
    assert changed.status_code == 200
    assert (await browser.get("/api/v1/account")).status_code == 200  # the new cookie
    stale = await platform.http.get(
        "/api/v1/account", headers={"cookie": f"pr_session={other_cookie}"}
    )
    assert stale.status_code == 401


async def test_bad_sign_ups_create_nothing(browser: httpx.AsyncClient) -> None:
    taken = (await sign_up(browser))["email"]
    cases = [
        ({"email": taken, "password": PASSWORD}, (409, 20017), "email"),
        ({"email": new_email(), "password": "short"}, (400, 20018), "password"),
        ({"email": new_email(), "password": "1234567890"}, (400, 20018), "password"),
        ({"email": "nobody", "password": PASSWORD}, (400, 20003), "email"),
        ({"email": new_email()}, (400, 20002), "password"),
        ({"email": new_email(), "password": PASSWORD, "admin": True}, (400, 20004), "admin"),
    ]
    fresh = httpx.AsyncClient(
        base_url=str(browser.base_url), headers={"x-forwarded-for": this_tests_address()}
    )
    async with fresh:
        for body, expected, param in cases:
            answer = await fresh.post("/api/v1/auth/signup", json=body)
            assert refusal(answer) == expected, (body, answer.text)
            assert answer.json()["error"]["param"] == param
            assert "set-cookie" not in answer.headers


async def test_a_wrong_password_and_an_unknown_email_answer_alike_and_in_the_same_time(
    browser: httpx.AsyncClient,
) -> None:
    known = (await sign_up(browser))["email"]

    async def attempt(email: str) -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        answer = await browser.post(
            "/api/v1/auth/login", json={"email": email, "password": "wrong password!"}
        )
        return time.perf_counter() - started, answer

    wrong_times, unknown_times = [], []
    for _ in range(7):  # under both the per-email lock (10) and the per-address one (20)
        took, wrong = await attempt(known)
        wrong_times.append(took)
        took, unknown = await attempt(new_email())
        unknown_times.append(took)
        assert refusal(wrong) == refusal(unknown) == (401, 10008)
        assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    # argon2 dominates both (tens of ms); the medians differ by noise only
    ratio = statistics.median(wrong_times) / statistics.median(unknown_times)
    assert 0.6 < ratio < 1.6, (wrong_times, unknown_times)


async def test_failed_sign_ins_from_one_address_are_throttled(
    browser: httpx.AsyncClient,
) -> None:
    codes = []
    for _ in range(22):
        answer = await browser.post(
            "/api/v1/auth/login", json={"email": new_email(), "password": "wrong password!"}
        )
        codes.append(refusal(answer))
    assert codes[0] == (401, 10008)
    assert codes[-1] == (429, 50002)


async def test_one_email_is_locked_after_its_failures_from_any_address(
    platform: Platform, browser: httpx.AsyncClient
) -> None:
    email = (await sign_up(browser))["email"]
    for n in range(10):
        async with httpx.AsyncClient(
            base_url=platform.config.base_url,
            headers={"x-forwarded-for": f"192.0.2.{n + 101}"},  # none other uses
        ) as elsewhere:
            answer = await elsewhere.post(
                "/api/v1/auth/login", json={"email": email, "password": "wrong password!"}
            )
            assert refusal(answer) == (401, 10008)
    locked = await browser.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert refusal(locked) == (429, 50002)
    assert int(locked.headers["retry-after"]) > 0


async def test_the_same_sessions_over_grpc(platform: Platform) -> None:
    """The REST routes are a translation of the Sessions service: sign up and in over gRPC,
    use the session as the bearer credential, sign out."""
    email = new_email()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.config.grpc_port}") as channel:
        sessions = public_api_pb2_grpc.SessionsStub(channel)
        made = await sessions.SignUp(public_api_pb2.SignUpRequest(email=email, password=PASSWORD))
        assert made.first_key.api_key.startswith("pr_live_")
        signed = await sessions.SignIn(billing_pb2.SignInRequest(email=email, password=PASSWORD))
        assert signed.session_token != made.session_token
        bearer = (("authorization", f"Bearer {signed.session_token}"),)
        balance = await public_api_pb2_grpc.PublicApiStub(channel).GetBalance(
            public_api_pb2.GetBalanceRequest(), metadata=bearer
        )
        assert balance.balance == 2000
        current = await sessions.GetSession(public_api_pb2.GetSessionRequest(), metadata=bearer)
        assert current.login.email == email and current.csrf_token
        await sessions.SignOut(public_api_pb2.GetSessionRequest(), metadata=bearer)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await sessions.GetSession(public_api_pb2.GetSessionRequest(), metadata=bearer)
        assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await sessions.SignIn(billing_pb2.SignInRequest(email=email, password="nope"))
        assert wrong.value.code() is grpc.StatusCode.UNAUTHENTICATED
