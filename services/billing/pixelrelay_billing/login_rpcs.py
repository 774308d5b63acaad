"""The sign-in RPCs (ledger/logins.py), a part of the billing servicer: check the input,
hash or verify the password outside any transaction (passwords.py), call the rule."""

from __future__ import annotations

import grpc

from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.ids import checked_id
from pixelrelay.v1 import billing_pb2
from pixelrelay_billing.ledger import Ledger
from pixelrelay_billing.ledger.logins import SignedIn, normal_email
from pixelrelay_billing.models import Invite, Login
from pixelrelay_billing.passwords import Passwords, check_new
from pixelrelay_billing.to_proto import key_to_proto, moment, seconds

PURPOSES = ("verify", "reset")


def login_to_proto(login: Login) -> billing_pb2.LoginInfo:
    return billing_pb2.LoginInfo(
        account_id=login.account_id,
        email=login.email,
        email_verified=login.email_verified_at is not None,
        created_at=int(login.created_at.timestamp()),
    )


def signed_in_to_proto(signed: SignedIn) -> billing_pb2.SignedIn:
    reply = billing_pb2.SignedIn(
        login=login_to_proto(signed.login),
        session_token=signed.session.secret,
        session_key_id=signed.session.key.id,
        verify_token=signed.verify_token,
    )
    expires = signed.session.key.expires_at
    reply.session_expires_at = int(expires.timestamp()) if expires else 0
    if signed.first_key is not None:
        reply.first_key.CopyFrom(
            billing_pb2.CreatedApiKey(
                api_key=signed.first_key.secret, key=key_to_proto(signed.first_key.key)
            )
        )
    return reply


def invite_to_proto(invite: Invite) -> billing_pb2.InviteInfo:
    return billing_pb2.InviteInfo(
        id=invite.id,
        note=invite.note,
        created_at=seconds(invite.created_at),
        expires_at=seconds(invite.expires_at),
        revoked_at=seconds(invite.revoked_at),
        used_at=seconds(invite.used_at),
        used_by=invite.used_by or "",
    )


def _purpose(value: str) -> str:
    if value not in PURPOSES:
        raise ApiError(E.INVALID_PARAMETER, "purpose must be verify or reset", param="purpose")
    return value


class LoginRpcs:
    ledger: Ledger
    db: Database
    passwords: Passwords

    async def CreateLogin(
        self, request: billing_pb2.CreateLoginRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.SignedIn:
        email = normal_email(request.email)
        check_new(request.password, email)
        signed = await self.db.run(
            self.ledger.create_login,
            email=email,
            password_hash=await self.passwords.hash(request.password),
            invite_code=request.invite_code,
            require_invite=request.require_invite,
            verify_email=request.verify_email,
        )
        return signed_in_to_proto(signed)

    async def SignIn(
        self, request: billing_pb2.SignInRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.SignedIn:
        # Every path, a known email or not, reads the lock, reads the hash, runs argon2
        # and (unless right) writes a failure: the same work, the same time.
        try:
            email = normal_email(request.email)
        except ApiError:
            email = ""  # no account can have it; checked against the dummy hash all the same
        locked = await self.db.run(self.ledger.sign_in_locked_for, email=email)
        if locked is not None:
            raise ApiError(
                E.AUTH_THROTTLED, "too many failed sign-ins for this email", retry_after=locked
            )
        stored = await self.db.run(self.ledger.password_hash_of, email=email)
        if not await self.passwords.verify(stored, request.password[:1024]) or stored is None:
            await self.db.run(self.ledger.sign_in_failed, email=email)
            raise ApiError(E.INVALID_CREDENTIALS)
        rehashed = None
        if self.passwords.needs_rehash(stored):
            rehashed = await self.passwords.hash(request.password)
        signed = await self.db.run(self.ledger.start_session, email=email, rehashed=rehashed)
        return signed_in_to_proto(signed)

    async def SignOut(
        self, request: billing_pb2.SignOutRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.SignOutResponse:
        await self.db.run(
            self.ledger.end_session,
            account_id=checked_id(request.account_id, "acct", "account_id"),
            session_key_id=checked_id(request.session_key_id, "key", "session_key_id"),
        )
        return billing_pb2.SignOutResponse()

    async def GetLogin(
        self, request: billing_pb2.GetLoginRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.LoginInfo:
        login = await self.db.run(
            self.ledger.get_login, account_id=checked_id(request.account_id, "acct", "account_id")
        )
        return login_to_proto(login)

    async def ChangePassword(
        self, request: billing_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.SignedIn:
        account_id = checked_id(request.account_id, "acct", "account_id")
        login = await self.db.run(self.ledger.get_login, account_id=account_id)
        if not await self.passwords.verify(login.password_hash, request.current_password[:1024]):
            raise ApiError(E.WRONG_PASSWORD, param="current_password")
        check_new(request.new_password, login.email, param="new_password")
        signed = await self.db.run(
            self.ledger.replace_password,
            account_id=account_id,
            password_hash=await self.passwords.hash(request.new_password),
        )
        return signed_in_to_proto(signed)

    async def IssueLoginToken(
        self, request: billing_pb2.IssueLoginTokenRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.IssuedLoginToken:
        purpose = _purpose(request.purpose)
        if request.account_id:
            issued = await self.db.run(
                self.ledger.issue_link,
                purpose=purpose,
                account_id=checked_id(request.account_id, "acct", "account_id"),
            )
        else:
            issued = await self.db.run(
                self.ledger.issue_link, purpose=purpose, email=normal_email(request.email)
            )
        if issued is None:
            return billing_pb2.IssuedLoginToken()
        return billing_pb2.IssuedLoginToken(
            token=issued.token, email=issued.email, expires_at=int(issued.expires_at.timestamp())
        )

    async def UseLoginToken(
        self, request: billing_pb2.UseLoginTokenRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.SignedIn:
        purpose = _purpose(request.purpose)
        if purpose == "verify":
            account_id = await self.db.run(
                self.ledger.take_link, purpose=purpose, token=request.token
            )
            login = await self.db.run(self.ledger.get_login, account_id=account_id)
            return billing_pb2.SignedIn(login=login_to_proto(login))
        # a reset: the new password's rules first, so a weak one does not burn the link
        email = await self.db.run(self.ledger.email_of_link, token=request.token)
        check_new(request.new_password, email, param="new_password")
        password_hash = await self.passwords.hash(request.new_password)
        account_id = await self.db.run(self.ledger.take_link, purpose=purpose, token=request.token)
        signed = await self.db.run(
            self.ledger.replace_password,
            account_id=account_id,
            password_hash=password_hash,
            verified=True,
        )
        return signed_in_to_proto(signed)

    async def CreateInvite(
        self, request: billing_pb2.CreateInviteRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CreatedInvite:
        invite, code = await self.db.run(
            self.ledger.create_invite,
            note=request.note,
            expires_at=moment(request.expires_at, "expires_at"),
        )
        return billing_pb2.CreatedInvite(invite=invite_to_proto(invite), code=code)

    async def ListInvites(
        self, request: billing_pb2.ListInvitesRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListInvitesResponse:
        invites = await self.db.run(self.ledger.list_invites)
        return billing_pb2.ListInvitesResponse(invites=[invite_to_proto(i) for i in invites])

    async def RevokeInvite(
        self, request: billing_pb2.RevokeInviteRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.InviteInfo:
        invite = await self.db.run(
            self.ledger.revoke_invite, invite_id=checked_id(request.invite_id, "inv", "invite_id")
        )
        return invite_to_proto(invite)
