"""Sign-up by invite with mailed links, against a platform with SIGNUP_MODE=invite and a
real SMTP server (aiosmtpd) as its mailer: the invite, the withheld grant, the
verification and reset links, and the operator's invite and reset-link routes."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage

import httpx
import pytest
from aiosmtpd.controller import Controller

from pixelrelay_dev.ports import lease_ports
from tests.e2e.conftest import Platform, running_platform, this_tests_address
from tests.e2e.helpers import admin, eventually, new_account, refusal

pytestmark = [pytest.mark.e2e, pytest.mark.security]

PASSWORD = "a long enough passphrase"
PUBLIC_URL = "https://console.example"


def text(mail: EmailMessage) -> str:
    return str(mail.get_content())  # quoted-printable decoded: long links are wrapped


@dataclass
class Inbox:
    mails: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        content = envelope.content  # type: ignore[attr-defined]
        self.mails.append(email.message_from_bytes(content, policy=email.policy.default))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mails if m["To"] == address]

    def link(self, address: str, kind: str) -> str:
        [mail] = [m for m in self.to(address) if f"?{kind}=" in text(m)]
        found = re.search(rf"{re.escape(PUBLIC_URL)}/login\?{kind}=(\S+)", text(mail))
        assert found, text(mail)
        return found.group(1)


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    with lease_ports(1) as lease:
        port = lease.ports[0]
        lease.release()
        box = Inbox()
        controller = Controller(box, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            yield box, port
        finally:
            controller.stop()


@pytest.fixture(scope="module")
async def mail_platform(
    tmp_path_factory: pytest.TempPathFactory, inbox: tuple[Inbox, int]
) -> AsyncIterator[Platform]:
    async with running_platform(
        tmp_path_factory.mktemp("mail"),
        allow_private=False,
        env={
            "SIGNUP_MODE": "invite",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(inbox[1]),
            "SMTP_SECURITY": "none",
            "MAIL_FROM": "PixelRelay <no-reply@console.example>",
            "PUBLIC_URL": PUBLIC_URL,
        },
    ) as running:
        yield running


@pytest.fixture
async def browser(mail_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=mail_platform.config.base_url,
        timeout=30,
        headers={"x-forwarded-for": this_tests_address()},
    ) as client:
        yield client


async def invite(platform: Platform, note: str = "") -> str:
    answer = await platform.http.post(
        "/admin/v1/invites", headers=admin(platform), json={"note": note}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["code"])


async def test_the_options_say_how_to_sign_up(browser: httpx.AsyncClient) -> None:
    options = (await browser.get("/api/v1/auth/options")).json()
    assert options == {
        "signup_mode": "invite",
        "email_verification": True,
        "password_reset_by_email": True,
        "min_password_length": 10,
    }


async def test_sign_up_needs_an_invite_and_the_grant_waits_for_the_mailed_link(
    mail_platform: Platform, browser: httpx.AsyncClient, inbox: tuple[Inbox, int]
) -> None:
    address = "grace@example.com"
    body = {"email": address, "password": PASSWORD}
    for code in [None, "pr_inv_nope"]:
        refused = await browser.post(
            "/api/v1/auth/signup", json=body | ({"invite_code": code} if code else {})
        )
        assert refusal(refused) == (400, 20019)
        assert refused.json()["error"]["param"] == "invite_code"
    code = await invite(mail_platform, "for Grace")
    signed = await browser.post("/api/v1/auth/signup", json=body | {"invite_code": code})
    assert signed.status_code == 201, signed.text
    assert not signed.json()["email_verified"]
    assert (await browser.get("/api/v1/account")).json()["balance"] == 0
    # the code is spent
    again = await browser.post(
        "/api/v1/auth/signup",
        json={"email": "other@example.com", "password": PASSWORD, "invite_code": code},
    )
    assert refusal(again) == (400, 20019)

    box = inbox[0]
    await eventually(lambda: asyncio.sleep(0, box.to(address)), "the verification mail")
    mail = box.to(address)[0]
    assert mail["Subject"] == "Confirm your email for PixelRelay"
    token = box.link(address, "verify")
    verified = await browser.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.json()["email_verified"] is True
    assert (await browser.get("/api/v1/account")).json()["balance"] == 2000
    replay = await browser.post("/api/v1/auth/verify-email", json={"token": token})
    assert refusal(replay) == (400, 20020)
    assert (await browser.get("/api/v1/account")).json()["balance"] == 2000


async def test_a_reset_link_is_mailed_to_a_known_email_only_and_works_once(
    mail_platform: Platform, browser: httpx.AsyncClient, inbox: tuple[Inbox, int]
) -> None:
    box = inbox[0]
    address = "ada@example.com"
    code = await invite(mail_platform)
    await browser.post(
        "/api/v1/auth/signup", json={"email": address, "password": PASSWORD, "invite_code": code}
    )
    for who in [address, "nobody@example.com"]:
        asked = await browser.post("/api/v1/auth/password-reset", json={"email": who})
        assert (asked.status_code, asked.content) == (202, b"")
    await eventually(
        lambda: asyncio.sleep(0, [m for m in box.to(address) if "reset" in text(m)]),
        "the reset mail",
    )
    await asyncio.sleep(0.3)
    assert box.to("nobody@example.com") == []
    token = box.link(address, "reset")
    weak = await browser.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "short"}
    )
    assert refusal(weak) == (400, 20018)
    reset = await browser.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": token, "new_password": "a brand new passphrase"},
    )
    assert reset.status_code == 200 and reset.json()["email"] == address
    reused = await browser.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": token, "new_password": "yet another passphrase"},
    )
    assert refusal(reused) == (400, 20020)
    old = await browser.post("/api/v1/auth/login", json={"email": address, "password": PASSWORD})
    assert refusal(old) == (401, 10008)


async def test_the_operator_issues_and_revokes_invites_and_hands_out_reset_links(
    mail_platform: Platform, browser: httpx.AsyncClient
) -> None:
    made = (
        await mail_platform.http.post(
            "/admin/v1/invites", headers=admin(mail_platform), json={"note": "for Linus"}
        )
    ).json()
    assert made["code"].startswith("pr_inv_") and made["invite"]["note"] == "for Linus"
    listed = (
        await mail_platform.http.get("/admin/v1/invites", headers=admin(mail_platform))
    ).json()
    assert made["invite"]["id"] in [i["id"] for i in listed["data"]]
    assert "code" not in listed["data"][0]
    revoked = await mail_platform.http.delete(
        f"/admin/v1/invites/{made['invite']['id']}", headers=admin(mail_platform)
    )
    assert revoked.json()["revoked_at"]
    refused = await browser.post(
        "/api/v1/auth/signup",
        json={"email": "linus@example.com", "password": PASSWORD, "invite_code": made["code"]},
    )
    assert refusal(refused) == (400, 20019)

    signed = await browser.post(
        "/api/v1/auth/signup",
        json={
            "email": "linus@example.com",
            "password": PASSWORD,
            "invite_code": await invite(mail_platform),
        },
    )
    account_id = signed.json()["account_id"]
    link = await mail_platform.http.post(
        f"/admin/v1/accounts/{account_id}/password-reset", headers=admin(mail_platform)
    )
    assert link.json()["url"].startswith(f"{PUBLIC_URL}/login?reset=pr_reset_")
    assert link.json()["email"] == "linus@example.com"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/v1/invites"),
        ("GET", "/admin/v1/invites"),
        ("DELETE", "/admin/v1/invites/inv_0000000000000000000000"),
        ("POST", "/admin/v1/accounts/acct_0000000000000000000000/password-reset"),
    ],
)
async def test_the_operator_routes_take_the_operators_token_only(
    mail_platform: Platform, method: str, path: str
) -> None:
    customer = await new_account(mail_platform, 10)
    for headers in [{}, {"Authorization": f"Bearer {customer}"}, {"Authorization": "Bearer nope"}]:
        answer = await mail_platform.http.request(method, path, headers=headers, json={})
        assert refusal(answer) == (401, 10003), (headers, answer.text)
