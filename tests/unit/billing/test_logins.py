"""People's sign-in to their accounts (billing's logins and its RPCs), on SQLite and
PostgreSQL: sign-up all or nothing, sessions as the owner's keys, the per-email lock,
password change and one-use links. Argon2 runs with cheap parameters here (the rules,
not the cost, are under test; the e2e tests run the real profile)."""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlmodel import Session, func, select

from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E, ErrorKind
from pixelrelay.v1 import billing_pb2
from pixelrelay_billing.ledger import Ledger
from pixelrelay_billing.ledger.deletion import DELETED_NAME
from pixelrelay_billing.login_rpcs import LoginRpcs
from pixelrelay_billing.models import Account, Login
from pixelrelay_billing.passwords import Passwords
from pixelrelay_billing.prices import PriceList

GOOD = "correct horse battery"
GRANT = 100


class Logins(LoginRpcs):
    def __init__(self, ledger: Ledger, db: Database):
        self.ledger, self.db = ledger, db
        self.passwords = Passwords(
            hasher=PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
        )

    async def call(self, method: str, **fields: Any) -> Any:
        request_type = {
            "CreateLogin": billing_pb2.CreateLoginRequest,
            "SignIn": billing_pb2.SignInRequest,
            "SignOut": billing_pb2.SignOutRequest,
            "ChangePassword": billing_pb2.ChangePasswordRequest,
            "IssueLoginToken": billing_pb2.IssueLoginTokenRequest,
            "UseLoginToken": billing_pb2.UseLoginTokenRequest,
        }[method]
        return await getattr(self, method)(request_type(**fields), None)


@pytest.fixture
def ledger(database: Database) -> Ledger:
    ledger = Ledger(database.engine, PriceList.load(), signup_grant=GRANT)
    ledger.sign_in_failures = 3
    return ledger


@pytest.fixture
def logins(ledger: Ledger, database: Database) -> Logins:
    return Logins(ledger, database)


async def refused(kind: ErrorKind, call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call
    assert caught.value.kind is kind, caught.value.message
    return caught.value


def accounts(ledger: Ledger) -> int:
    with Session(ledger.engine) as s:
        return s.exec(select(func.count()).select_from(Account)).one()


async def sign_up(logins: Logins, email: str = "Ada@Example.com", **more: Any) -> Any:
    return await logins.call("CreateLogin", email=email, password=GOOD, **more)


async def test_sign_up_makes_the_account_its_grant_a_session_and_the_first_key(
    logins: Logins, ledger: Ledger
) -> None:
    signed = await sign_up(logins)
    assert signed.login.email == "ada@example.com" and signed.login.email_verified
    account = ledger.get_account(account_id=signed.login.account_id)
    assert account.balance == GRANT
    session = ledger.authenticate(api_key=signed.session_token)
    first = ledger.authenticate(api_key=signed.first_key.api_key)
    assert (session.kind, first.kind) == ("session", "api")
    assert session.account_id == first.account_id == account.id
    assert session.expires_at is not None and first.expires_at is None
    # the session is never listed among the keys
    assert [k.id for k in ledger.list_api_keys(account_id=account.id)] == [first.id]
    assert ledger.check().problems == []


async def test_a_taken_email_a_weak_password_or_a_bad_address_create_nothing(
    logins: Logins, ledger: Ledger
) -> None:
    await sign_up(logins)
    before = accounts(ledger)
    err = await refused(E.EMAIL_TAKEN, sign_up(logins, email=" ADA@example.com "))
    assert err.param == "email"
    for weak in ["short", "1234567890", "aaaaaaaaaaaaaa", "grace@example.com"]:
        err = await refused(
            E.WEAK_PASSWORD,
            logins.call("CreateLogin", email="grace@example.com", password=weak),
        )
        assert err.param == "password"
    await refused(
        E.INVALID_PARAMETER, logins.call("CreateLogin", email="not-an-email", password=GOOD)
    )
    assert accounts(ledger) == before


async def test_an_invite_is_needed_when_required_and_good_for_one_sign_up(
    logins: Logins, ledger: Ledger
) -> None:
    _, code = ledger.create_invite(note="for Grace")
    before = accounts(ledger)
    for wrong in ["", "pr_inv_nope"]:
        await refused(E.INVALID_INVITE, sign_up(logins, require_invite=True, invite_code=wrong))
    assert accounts(ledger) == before
    signed = await sign_up(logins, require_invite=True, invite_code=code)
    await refused(
        E.INVALID_INVITE, sign_up(logins, "b@example.com", require_invite=True, invite_code=code)
    )
    [invite] = ledger.list_invites()
    assert invite.used_by == signed.login.account_id
    _, revoked = ledger.create_invite()
    ledger.revoke_invite(invite_id=ledger.list_invites()[0].id)
    await refused(
        E.INVALID_INVITE, sign_up(logins, "c@example.com", require_invite=True, invite_code=revoked)
    )


async def test_with_a_mailer_the_grant_waits_for_the_verification_link(
    logins: Logins, ledger: Ledger
) -> None:
    signed = await sign_up(logins, verify_email=True)
    account_id = signed.login.account_id
    assert not signed.login.email_verified and signed.verify_token
    assert ledger.get_account(account_id=account_id).balance == 0
    verified = await logins.call("UseLoginToken", purpose="verify", token=signed.verify_token)
    assert verified.login.email_verified
    assert ledger.get_account(account_id=account_id).balance == GRANT
    await refused(
        E.INVALID_LINK, logins.call("UseLoginToken", purpose="verify", token=signed.verify_token)
    )
    assert ledger.get_account(account_id=account_id).balance == GRANT  # granted once
    assert ledger.check().problems == []


async def test_sign_in_starts_a_new_session_each_time_and_sign_out_ends_it(
    logins: Logins, ledger: Ledger
) -> None:
    first = await sign_up(logins)
    again = await logins.call("SignIn", email="ada@EXAMPLE.com", password=GOOD)
    assert again.session_token != first.session_token  # no fixation: always a new one
    await logins.call(
        "SignOut", account_id=again.login.account_id, session_key_id=again.session_key_id
    )
    with pytest.raises(ApiError):
        ledger.authenticate(api_key=again.session_token)
    ledger.authenticate(api_key=first.session_token)  # another session lives on


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer_then_a_lock(
    logins: Logins,
) -> None:
    await sign_up(logins)
    wrong = await refused(
        E.INVALID_CREDENTIALS, logins.call("SignIn", email="ada@example.com", password="nope")
    )
    unknown = await refused(
        E.INVALID_CREDENTIALS, logins.call("SignIn", email="who@example.com", password="nope")
    )
    assert wrong.message == unknown.message
    for email in ["ada@example.com", "who@example.com"]:
        for _ in range(2):  # each failed once already: 3 in all
            await refused(E.INVALID_CREDENTIALS, logins.call("SignIn", email=email, password="x"))
        # locked: even the right password waits, and an unknown email locks the same way
        locked = await refused(E.AUTH_THROTTLED, logins.call("SignIn", email=email, password=GOOD))
        assert locked.retry_after is not None and locked.retry_after > 0


async def test_a_session_acts_as_the_owner_for_keys(logins: Logins, ledger: Ledger) -> None:
    signed = await sign_up(logins)
    account_id = signed.login.account_id
    made = ledger.create_api_key(
        account_id=account_id, name="ci", parent_key_id=signed.session_key_id
    )
    # the account's key: no parent, and it does not end with the session
    assert made.key.parent_id is None and made.key.expires_at is None
    narrow = ledger.create_api_key(
        account_id=account_id, scopes=["read"], parent_key_id=made.key.id
    )
    # the owner may revoke any key, even one a narrower key could not
    ledger.revoke_api_key(key_id=made.key.id, by_key_id=signed.session_key_id, cascade=True)
    assert ledger.list_api_keys(account_id=account_id)[-1].id == narrow.key.id
    # and a session is no key to revoke through the keys API
    with pytest.raises(ApiError) as caught:
        ledger.revoke_api_key(key_id=signed.session_key_id, account_id=account_id)
    assert caught.value.kind is E.KEY_NOT_FOUND


async def test_a_password_change_ends_every_other_session(logins: Logins, ledger: Ledger) -> None:
    signed = await sign_up(logins)
    other = await logins.call("SignIn", email="ada@example.com", password=GOOD)
    ids = {"account_id": signed.login.account_id, "session_key_id": signed.session_key_id}
    await refused(
        E.WRONG_PASSWORD,
        logins.call(
            "ChangePassword", current_password="wrong", new_password="a new passphrase", **ids
        ),
    )
    err = await refused(
        E.WEAK_PASSWORD,
        logins.call("ChangePassword", current_password=GOOD, new_password="short", **ids),
    )
    assert err.param == "new_password"
    changed = await logins.call(
        "ChangePassword", current_password=GOOD, new_password="a new passphrase", **ids
    )
    for ended in [signed.session_token, other.session_token]:
        with pytest.raises(ApiError):
            ledger.authenticate(api_key=ended)
    ledger.authenticate(api_key=changed.session_token)
    ledger.authenticate(api_key=signed.first_key.api_key)  # API keys are not sessions
    await refused(
        E.INVALID_CREDENTIALS, logins.call("SignIn", email="ada@example.com", password=GOOD)
    )
    await logins.call("SignIn", email="ada@example.com", password="a new passphrase")


async def test_a_reset_link_works_once_and_a_weak_password_does_not_burn_it(
    logins: Logins, ledger: Ledger
) -> None:
    signed = await sign_up(logins)
    nobody = await logins.call("IssueLoginToken", purpose="reset", email="who@example.com")
    assert nobody.token == ""
    issued = await logins.call("IssueLoginToken", purpose="reset", email="ADA@example.com")
    assert issued.email == "ada@example.com"
    await refused(
        E.WEAK_PASSWORD,
        logins.call("UseLoginToken", purpose="reset", token=issued.token, new_password="short"),
    )
    reset = await logins.call(
        "UseLoginToken", purpose="reset", token=issued.token, new_password="another passphrase"
    )
    with pytest.raises(ApiError):
        ledger.authenticate(api_key=signed.session_token)
    ledger.authenticate(api_key=reset.session_token)
    await refused(
        E.INVALID_LINK,
        logins.call(
            "UseLoginToken", purpose="reset", token=issued.token, new_password="third passphrase"
        ),
    )
    await refused(
        E.INVALID_LINK,
        logins.call("UseLoginToken", purpose="verify", token=issued.token),
    )


async def test_deleting_the_account_forgets_the_email(logins: Logins, ledger: Ledger) -> None:
    signed = await sign_up(logins)
    ledger.delete_account(account_id=signed.login.account_id, reason="asked to")
    with Session(ledger.engine) as s:
        assert s.get(Login, signed.login.account_id) is None
    # the account (kept, with its ledger) was named by the email: no longer
    assert ledger.get_account(account_id=signed.login.account_id).name == DELETED_NAME
    with pytest.raises(ApiError):
        ledger.authenticate(api_key=signed.session_token)
    await refused(
        E.INVALID_CREDENTIALS, logins.call("SignIn", email="ada@example.com", password=GOOD)
    )
    again = await sign_up(logins)
    assert again.login.account_id != signed.login.account_id
