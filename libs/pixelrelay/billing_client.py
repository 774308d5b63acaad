"""Typed client for the billing service: gRPC errors come back as ApiError."""

from __future__ import annotations

import copy
from collections.abc import Awaitable
from typing import Any, TypeVar

from pixelrelay.batching import Batcher
from pixelrelay.callers import credential_metadata
from pixelrelay.errors import ApiError, error_from_detail, peer_errors
from pixelrelay.grpc_server import call_options, insecure_channel
from pixelrelay.v1 import billing_pb2, billing_pb2_grpc, common_pb2

T = TypeVar("T")


async def _call(call: Awaitable[T]) -> T:
    with peer_errors():
        return await call


class BillingClient:
    """Calls wait for the channel to be ready up to ``timeout`` (a restarting billing is
    ridden out), then fail with 90002. Each call presents ``credential`` (callers.py)."""

    def __init__(self, addr: str, credential: str, timeout: float = 3.0):
        self.channel = insecure_channel(addr)
        self._stub = billing_pb2_grpc.BillingStub(self.channel)
        self._metadata = credential_metadata(credential)
        self.timeout = timeout
        self._holds: Batcher[billing_pb2.ReserveRequest, billing_pb2.Hold] = Batcher(
            "billing_holds", self._hold_batch, max_size=256
        )
        self._takes: Batcher[billing_pb2.RequestTake, billing_pb2.TakeResult] = Batcher(
            "rate_limits", self._take_batch, max_size=256
        )

    def acting_as(self, credential: str) -> BillingClient:
        """The same channel, presenting another credential: the gateway's admin REST
        forwards the operator's, so billing alone decides what an admin may do."""
        other = copy.copy(self)
        other._metadata = credential_metadata(credential)
        return other

    def _options(self, timeout: float | None = None) -> dict[str, Any]:
        return call_options(timeout or self.timeout, self._metadata)

    async def close(self) -> None:
        await self.channel.close()

    async def authenticate(self, api_key: str) -> billing_pb2.Principal:
        return await _call(
            self._stub.Authenticate(
                billing_pb2.AuthenticateRequest(api_key=api_key),
                **self._options(),
            )
        )

    async def quote(self, item: common_pb2.PriceItem) -> billing_pb2.QuoteResponse:
        return await _call(
            self._stub.Quote(
                billing_pb2.QuoteRequest(item=item),
                **self._options(),
            )
        )

    async def reserve(
        self,
        *,
        task_id: str,
        account_id: str,
        item: common_pb2.PriceItem,
        key_id: str = "",
    ) -> billing_pb2.Hold:
        """Hold a task's price (billing sets its deadline)."""
        return await self._holds.submit(
            billing_pb2.ReserveRequest(
                task_id=task_id, account_id=account_id, item=item, key_id=key_id
            )
        )

    async def take_request(self, key_id: str, per_minute: int) -> billing_pb2.TakeResult:
        """Spend one request of a limited key's shared per-minute budget."""
        return await self._takes.submit(
            billing_pb2.RequestTake(key_id=key_id, per_minute=per_minute)
        )

    async def _take_batch(
        self, takes: list[billing_pb2.RequestTake]
    ) -> list[billing_pb2.TakeResult]:
        response = await _call(
            self._stub.TakeRequests(billing_pb2.TakeRequestsRequest(takes=takes), **self._options())
        )
        return list(response.results)

    async def _hold_batch(
        self, requests: list[billing_pb2.ReserveRequest]
    ) -> list[billing_pb2.Hold | ApiError]:
        """Holds requested together travel in one ReserveMany call (one transaction)."""
        response = await _call(
            self._stub.ReserveMany(
                billing_pb2.ReserveManyRequest(requests=requests), **self._options()
            )
        )
        return [
            result.hold
            if result.WhichOneof("outcome") == "hold"
            else error_from_detail(result.error)
            for result in response.results
        ]

    async def release(self, *, task_id: str, reason: str = "") -> billing_pb2.Hold:
        return await _call(
            self._stub.Release(
                billing_pb2.ReleaseRequest(task_id=task_id, reason=reason),
                **self._options(),
            )
        )

    async def get_account(self, account_id: str) -> billing_pb2.Account:
        return await _call(
            self._stub.GetAccount(
                billing_pb2.GetAccountRequest(account_id=account_id),
                **self._options(),
            )
        )

    async def create_account(self, name: str, grant: int | None = None) -> billing_pb2.Account:
        request = billing_pb2.CreateAccountRequest(name=name)
        if grant is not None:
            request.signup_grant = grant
        return await _call(self._stub.CreateAccount(request, **self._options()))

    async def list_accounts(
        self, request: billing_pb2.ListAccountsRequest
    ) -> billing_pb2.ListAccountsResponse:
        return await _call(self._stub.ListAccounts(request, **self._options()))

    async def create_api_key(
        self,
        account_id: str,
        name: str = "",
        secret: str = "",
        *,
        expires_at: int = 0,
        credit_limit: int | None = None,
        rate_limit: int | None = None,
        scopes: list[str] | None = None,
        parent_key_id: str = "",
    ) -> billing_pb2.CreatedApiKey:
        request = billing_pb2.CreateApiKeyRequest(
            account_id=account_id,
            name=name,
            secret=secret,
            expires_at=expires_at,
            scopes=scopes or [],
            parent_key_id=parent_key_id,
        )
        if credit_limit is not None:
            request.credit_limit = credit_limit
        if rate_limit is not None:
            request.rate_limit = rate_limit
        return await _call(self._stub.CreateApiKey(request, **self._options()))

    async def list_api_keys(self, account_id: str) -> billing_pb2.ListApiKeysResponse:
        return await _call(
            self._stub.ListApiKeys(
                billing_pb2.ListApiKeysRequest(account_id=account_id),
                **self._options(),
            )
        )

    async def revoke_api_key(
        self, key_id: str, account_id: str = "", *, by_key_id: str = "", cascade: bool = False
    ) -> billing_pb2.ApiKeyInfo:
        return await _call(
            self._stub.RevokeApiKey(
                billing_pb2.RevokeApiKeyRequest(
                    key_id=key_id, account_id=account_id, by_key_id=by_key_id, cascade=cascade
                ),
                **self._options(),
            )
        )

    async def top_up(self, account_id: str, amount: int, reason: str) -> billing_pb2.Account:
        return await _call(
            self._stub.TopUp(
                billing_pb2.MoveCreditsRequest(account_id=account_id, amount=amount, reason=reason),
                **self._options(),
            )
        )

    async def adjust(self, account_id: str, amount: int, reason: str) -> billing_pb2.Account:
        return await _call(
            self._stub.Adjust(
                billing_pb2.MoveCreditsRequest(account_id=account_id, amount=amount, reason=reason),
                **self._options(),
            )
        )

    async def list_ledger_entries(
        self, request: billing_pb2.ListLedgerEntriesRequest
    ) -> billing_pb2.ListLedgerEntriesResponse:
        return await _call(self._stub.ListLedgerEntries(request, **self._options()))

    async def verify_admin(self) -> None:
        """Raises unless this client's credential is the operator's (billing decides)."""
        await _call(self._stub.VerifyAdmin(billing_pb2.VerifyAdminRequest(), **self._options()))

    async def check_ledger(self) -> billing_pb2.CheckLedgerResponse:
        return await _call(
            self._stub.CheckLedger(billing_pb2.CheckLedgerRequest(), **self._options(60))
        )

    async def delete_account(self, account_id: str, reason: str) -> billing_pb2.DeletedAccount:
        return await _call(
            self._stub.DeleteAccount(
                billing_pb2.DeleteAccountRequest(account_id=account_id, reason=reason),
                **self._options(60),
            )
        )

    # -- people's sign-in (billing's ledger/logins.py) -----------------------------

    async def create_login(self, request: billing_pb2.CreateLoginRequest) -> billing_pb2.SignedIn:
        # argon2 runs in billing: allow it its time when several sign-ups queue
        return await _call(self._stub.CreateLogin(request, **self._options(15)))

    async def sign_in(self, email: str, password: str) -> billing_pb2.SignedIn:
        return await _call(
            self._stub.SignIn(
                billing_pb2.SignInRequest(email=email, password=password), **self._options(15)
            )
        )

    async def sign_out(self, account_id: str, session_key_id: str) -> None:
        await _call(
            self._stub.SignOut(
                billing_pb2.SignOutRequest(account_id=account_id, session_key_id=session_key_id),
                **self._options(),
            )
        )

    async def get_login(self, account_id: str) -> billing_pb2.LoginInfo:
        return await _call(
            self._stub.GetLogin(
                billing_pb2.GetLoginRequest(account_id=account_id), **self._options()
            )
        )

    async def change_password(
        self, request: billing_pb2.ChangePasswordRequest
    ) -> billing_pb2.SignedIn:
        return await _call(self._stub.ChangePassword(request, **self._options(15)))

    async def issue_login_token(
        self, purpose: str, *, email: str = "", account_id: str = ""
    ) -> billing_pb2.IssuedLoginToken:
        return await _call(
            self._stub.IssueLoginToken(
                billing_pb2.IssueLoginTokenRequest(
                    purpose=purpose, email=email, account_id=account_id
                ),
                **self._options(),
            )
        )

    async def use_login_token(
        self, purpose: str, token: str, new_password: str = ""
    ) -> billing_pb2.SignedIn:
        return await _call(
            self._stub.UseLoginToken(
                billing_pb2.UseLoginTokenRequest(
                    purpose=purpose, token=token, new_password=new_password
                ),
                **self._options(15),
            )
        )

    async def create_invite(self, note: str, expires_at: int = 0) -> billing_pb2.CreatedInvite:
        return await _call(
            self._stub.CreateInvite(
                billing_pb2.CreateInviteRequest(note=note, expires_at=expires_at),
                **self._options(),
            )
        )

    async def list_invites(self) -> billing_pb2.ListInvitesResponse:
        return await _call(
            self._stub.ListInvites(billing_pb2.ListInvitesRequest(), **self._options())
        )

    async def revoke_invite(self, invite_id: str) -> billing_pb2.InviteInfo:
        return await _call(
            self._stub.RevokeInvite(
                billing_pb2.RevokeInviteRequest(invite_id=invite_id), **self._options()
            )
        )
