"""People's ways into their accounts: email and password logins, sessions, one-use links
and the per-email sign-in throttle. Passwords are hashed before these run (passwords.py:
CPU-heavy, outside any transaction); only hashes reach the database.

A session is an ``ApiKey`` of kind "session": its secret authenticates like a key's (one
lookup, the same revocation), as the account's owner with every scope; keys it makes
belong to the account (no parent: they outlive the session), and it is never listed
among the keys. Sign-in always makes a new one (no session fixation); sign-out revokes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select, update

from pixelrelay.errors import ApiError, E
from pixelrelay.ids import new_id, random_token
from pixelrelay_billing.ledger.invites import use_invite
from pixelrelay_billing.ledger.keys import NewKey, aware, hash_key, insert_key
from pixelrelay_billing.ledger.postings import post
from pixelrelay_billing.models import (
    PLATFORM,
    Account,
    ApiKey,
    Book,
    Login,
    LoginToken,
    SignInFailures,
    utcnow,
)

LINK_TTL = {"verify": timedelta(days=7), "reset": timedelta(hours=1)}
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
MAX_EMAIL = 254


def normal_email(email: str) -> str:
    """The form stored and compared: trimmed, lower-case; 20003 when it is no address."""
    email = email.strip().lower()
    if len(email) > MAX_EMAIL or not _EMAIL.match(email):
        raise ApiError(E.INVALID_PARAMETER, "email: not an email address", param="email")
    return email


@dataclass(frozen=True)
class SignedIn:
    login: Login
    session: NewKey
    first_key: NewKey | None = None
    verify_token: str = ""


@dataclass(frozen=True)
class IssuedLink:
    token: str
    email: str
    expires_at: datetime


class Logins:
    engine: Engine
    signup_grant: int
    session_ttl: timedelta = timedelta(hours=12)
    sign_in_failures: int = 10  # per email and window; then locked until the window ends
    sign_in_window: int = 900  # seconds

    def create_login(
        self,
        *,
        email: str,
        password_hash: str,
        invite_code: str = "",
        require_invite: bool = False,
        verify_email: bool = False,
    ) -> SignedIn:
        """Sign-up, all or nothing: the account (its grant now, or on verification when
        the platform mails), its login, the invite used, a session and the first key."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            if s.exec(select(Login.account_id).where(Login.email == email)).first():
                raise ApiError(E.EMAIL_TAKEN, param="email")
            account = Account(id=new_id("acct"), name=email)
            s.add(account)
            s.flush()
            if require_invite:
                use_invite(s, invite_code, account.id)
            now = utcnow()
            login = Login(
                account_id=account.id,
                email=email,
                password_hash=password_hash,
                email_verified_at=None if verify_email else now,
            )
            s.add(login)
            if not verify_email:
                self._grant(s, account)
            token = self._new_link(s, account.id, "verify") if verify_email else ""
            session = self._new_session(s, account.id)
            first = insert_key(s, account.id, "first key")
            s.flush()
            return SignedIn(
                login=_detached(s, login), session=session, first_key=first, verify_token=token
            )

    def _grant(self, s: Session, account: Account) -> None:
        if self.signup_grant:
            account.balance += self.signup_grant
            post(
                s,
                f"signup:{account.id}",
                "signup_grant",
                None,
                [
                    (PLATFORM, Book.FUNDING, -self.signup_grant),
                    (account.id, Book.AVAILABLE, self.signup_grant),
                ],
            )

    def _new_session(self, s: Session, account_id: str) -> NewKey:
        return insert_key(s, account_id, "session", "session", utcnow() + self.session_ttl)

    def _new_link(self, s: Session, account_id: str, purpose: str) -> str:
        token = f"pr_{purpose}_{random_token(32)}"
        s.add(
            LoginToken(
                token_hash=hash_key(token),
                account_id=account_id,
                purpose=purpose,
                expires_at=utcnow() + LINK_TTL[purpose],
            )
        )
        return token

    # -- sign-in ------------------------------------------------------------------

    def sign_in_locked_for(self, *, email: str) -> float | None:
        """Seconds until ``email`` may try again, or None when it may now."""
        with Session(self.engine) as s:
            row = s.get(SignInFailures, hash_key(email))
        now = utcnow().timestamp()
        if row is None or row.failures < self.sign_in_failures:
            return None
        left = row.window_started + self.sign_in_window - now
        return left if left > 0 else None

    def password_hash_of(self, *, email: str) -> str | None:
        with Session(self.engine) as s:
            return s.exec(select(Login.password_hash).where(Login.email == email)).first()

    def sign_in_failed(self, *, email: str) -> None:
        now = int(utcnow().timestamp())
        with Session(self.engine) as s, s.begin():
            row = s.get(SignInFailures, hash_key(email), with_for_update=True)
            if row is None:
                s.add(SignInFailures(email_hash=hash_key(email), window_started=now, failures=1))
            elif now - row.window_started >= self.sign_in_window:
                row.window_started, row.failures = now, 1
            else:
                row.failures += 1

    def start_session(self, *, email: str, rehashed: str | None = None) -> SignedIn:
        """A new session for the person whose password was just checked (their failures
        forgotten; ``rehashed`` replaces a hash made with older parameters)."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            login = s.exec(select(Login).where(Login.email == email)).one()
            _usable(s, login.account_id)
            if rehashed:
                login.password_hash = rehashed
            failures = s.get(SignInFailures, hash_key(email))
            if failures is not None:
                s.delete(failures)
            session = self._new_session(s, login.account_id)
            return SignedIn(login=_detached(s, login), session=session)

    def end_session(self, *, account_id: str, session_key_id: str) -> None:
        with Session(self.engine) as s, s.begin():
            key = s.get(ApiKey, session_key_id)
            if key is None or key.account_id != account_id or key.kind != "session":
                raise ApiError(E.SESSION_INVALID)
            if key.revoked_at is None:
                key.revoked_at = utcnow()

    def get_login(self, *, account_id: str) -> Login:
        with Session(self.engine, expire_on_commit=False) as s:
            login = s.get(Login, account_id)
            if login is None:
                raise ApiError(E.SESSION_INVALID, "this account has no sign-in (an operator's)")
            return _detached(s, login)

    def replace_password(
        self, *, account_id: str, password_hash: str, verified: bool = False
    ) -> SignedIn:
        """The new hash, every session of the account ended, a new one started."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            login = s.get(Login, account_id, with_for_update=True)
            if login is None:
                raise ApiError(E.SESSION_INVALID)
            _usable(s, account_id)
            login.password_hash = password_hash
            login.password_changed_at = utcnow()
            if verified and login.email_verified_at is None:  # the reset link was mailed
                self._verify(s, login)
            _end_sessions(s, account_id)
            return SignedIn(login=_detached(s, login), session=self._new_session(s, account_id))

    # -- one-use links ------------------------------------------------------------

    def issue_link(
        self, *, purpose: str, email: str = "", account_id: str = ""
    ) -> IssuedLink | None:
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            query = select(Login).where(
                Login.email == email if email else Login.account_id == account_id
            )
            login = s.exec(query).first()
            if login is None:
                if account_id:
                    raise ApiError(E.ACCOUNT_NOT_FOUND, "the account has no sign-in")
                return None
            account = s.get(Account, login.account_id)
            if account is None or account.deleted_at is not None:
                return None
            token = self._new_link(s, login.account_id, purpose)
            return IssuedLink(token, login.email, utcnow() + LINK_TTL[purpose])

    def email_of_link(self, *, token: str) -> str:
        """The email a usable link was issued for; 20020 when there is none."""
        with Session(self.engine) as s:
            link = s.get(LoginToken, hash_key(token))
            login = s.get(Login, link.account_id) if link is not None else None
            if login is None or link is None or link.used_at is not None:
                raise ApiError(E.INVALID_LINK, param="token")
            return login.email

    def take_link(self, *, purpose: str, token: str) -> str:
        """Marks the link used and answers its account; 20020 when it is not usable."""
        with Session(self.engine) as s, s.begin():
            link = s.get(LoginToken, hash_key(token), with_for_update=True)
            if (
                link is None
                or link.purpose != purpose
                or link.used_at is not None
                or aware(link.expires_at) <= utcnow()
            ):
                raise ApiError(E.INVALID_LINK, param="token")
            link.used_at = utcnow()
            if purpose == "verify":
                login = s.get(Login, link.account_id, with_for_update=True)
                if login is not None and login.email_verified_at is None:
                    self._verify(s, login)
            return link.account_id

    def _verify(self, s: Session, login: Login) -> None:
        login.email_verified_at = utcnow()
        account = s.get(Account, login.account_id, with_for_update=True)
        if account is not None and account.deleted_at is None:
            self._grant(s, account)  # withheld until now


def _usable(s: Session, account_id: str) -> None:
    account = s.get(Account, account_id)
    if account is None or account.deleted_at is not None:
        raise ApiError(E.INVALID_CREDENTIALS)


def _end_sessions(s: Session, account_id: str) -> None:
    s.exec(  # type: ignore[call-overload]
        update(ApiKey)
        .where(
            col(ApiKey.account_id) == account_id,
            col(ApiKey.kind) == "session",
            col(ApiKey.revoked_at).is_(None),
        )
        .values(revoked_at=utcnow())
    )


def _detached(s: Session, row: Login) -> Login:
    s.flush()
    s.expunge(row)
    return row
