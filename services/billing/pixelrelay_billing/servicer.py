"""gRPC ↔ ledger: unpack the proto, call the rule, pack the reply. Nothing else."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import grpc

from pixelrelay import task_events
from pixelrelay.crashpoints import crash_point
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E, error_to_detail
from pixelrelay.ids import checked_id
from pixelrelay.limits import page_limit
from pixelrelay.v1 import billing_pb2, billing_pb2_grpc, events_pb2
from pixelrelay_billing.ledger import HoldRequest, Ledger
from pixelrelay_billing.login_rpcs import LoginRpcs
from pixelrelay_billing.models import Account, Hold, HoldState, LedgerEntry
from pixelrelay_billing.passwords import Passwords
from pixelrelay_billing.ratelimits import RateBuckets, Take
from pixelrelay_billing.to_proto import key_to_proto, moment, seconds

log = logging.getLogger(__name__)

MAX_ENTRIES_PAGE = 200
MAX_ACCOUNTS_PAGE = 200
MAX_SEARCH = 200  # a name is at most 200 characters (the admin REST's AccountCreateBody)
_STATES = {
    HoldState.PENDING: billing_pb2.HOLD_STATE_PENDING,
    HoldState.CAPTURED: billing_pb2.HOLD_STATE_CAPTURED,
    HoldState.RELEASED: billing_pb2.HOLD_STATE_RELEASED,
}


def hold_to_proto(hold: Hold) -> billing_pb2.Hold:
    return billing_pb2.Hold(
        task_id=hold.task_id,
        account_id=hold.account_id,
        amount=hold.amount,
        captured=hold.captured,
        state=_STATES[hold.state],
        price_id=hold.price_id,
    )


def account_to_proto(account: Account) -> billing_pb2.Account:
    return billing_pb2.Account(
        id=account.id,
        name=account.name,
        balance=account.balance,
        held=account.held,
        deleted_at=seconds(account.deleted_at),
        deleted_reason=account.deleted_reason or "",
        created_at=seconds(account.created_at),
    )


def entry_to_proto(entry: LedgerEntry) -> billing_pb2.LedgerEntryInfo:
    return billing_pb2.LedgerEntryInfo(
        id=entry.id or 0,
        txn_id=entry.txn_id,
        kind=entry.kind,
        book=str(entry.book),
        amount=entry.amount,
        task_id=entry.task_id or "",
        memo=entry.memo or "",
        created_at=seconds(entry.created_at),
    )


def _require(value: str, name: str) -> str:
    if not value:
        raise ApiError(E.MISSING_PARAMETER, f"{name} is required", param=name)
    return value


def _optional_id(value: str, prefix: str, param: str) -> str | None:
    """None for an id not given, else the id if it is well formed (ids.checked_id)."""
    return checked_id(value, prefix, param) if value else None


def _positive(value: int, name: str) -> int:
    if value <= 0:
        raise ApiError(E.INVALID_PARAMETER, f"{name} must be positive", param=name)
    return value


class BillingServicer(LoginRpcs, billing_pb2_grpc.BillingServicer):
    def __init__(
        self,
        ledger: Ledger,
        db: Database,
        submit_hold_seconds: int,
        passwords: Passwords,
        announce: Callable[[events_pb2.TaskEvent], Awaitable[None]] | None = None,
    ):
        self.announce = announce  # the settled event of a Release (settlement.py otherwise)
        self.ledger = ledger
        self.passwords = passwords
        self.db = db
        self.submit_hold_seconds = submit_hold_seconds
        self.buckets = RateBuckets(db.engine)

    async def TakeRequests(
        self, request: billing_pb2.TakeRequestsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.TakeRequestsResponse:
        takes = [
            Take(checked_id(t.key_id, "key", "key_id"), _positive(t.per_minute, "per_minute"))
            for t in request.takes
        ]
        verdicts = await self.db.run(self.buckets.take_many, takes)
        return billing_pb2.TakeRequestsResponse(
            results=[
                billing_pb2.TakeResult(allowed=v.allowed, retry_after_s=v.retry_after_s)
                for v in verdicts
            ]
        )

    async def Authenticate(
        self, request: billing_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Principal:
        key = await self.db.run(self.ledger.authenticate, api_key=request.api_key)
        return billing_pb2.Principal(
            account_id=key.account_id,
            key_id=key.id,
            rate_limit=key.rate_limit or 0,
            scopes=key.scopes.split(),
            kind=key.kind,
        )

    async def Quote(
        self, request: billing_pb2.QuoteRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.QuoteResponse:
        quote = self.ledger.prices.quote(request.item)
        return billing_pb2.QuoteResponse(
            unit_credits=quote.unit_credits, credits=quote.credits, price_id=quote.price_id
        )

    async def ReserveMany(
        self, request: billing_pb2.ReserveManyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ReserveManyResponse:
        # Short until the job is known to be queued (the sweeper extends it then), so a
        # submit that dies before its job is queued frees the credits within a minute.
        deadline = int(time.time()) + self.submit_hold_seconds
        holds = await self.db.run(
            self.ledger.reserve_many,
            [
                HoldRequest(
                    task_id=checked_id(r.task_id, "task", "task_id"),
                    account_id=checked_id(r.account_id, "acct", "account_id"),
                    item=r.item,
                    expires_at=deadline,
                    key_id=r.key_id,
                )
                for r in request.requests
            ],
        )
        crash_point("billing.after_reserve")  # committed, not yet answered
        return billing_pb2.ReserveManyResponse(
            results=[
                billing_pb2.ReserveResult(error=error_to_detail(h))
                if isinstance(h, ApiError)
                else billing_pb2.ReserveResult(hold=hold_to_proto(h))
                for h in holds
            ]
        )

    async def Release(
        self, request: billing_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Hold:
        task_id = checked_id(request.task_id, "task", "task_id")
        hold = await self.db.run(self.ledger.release, task_id=task_id, reason=request.reason)
        await self._announce_released(task_id, hold.amount, request.reason)
        return hold_to_proto(hold)

    async def _announce_released(self, task_id: str, credits: int, reason: str) -> None:
        """A release made here, not from the bus (settlement.py): its settled event tells a
        dispatcher that takes the task's job (a publish that reached the queue after its
        submit was refused) to drop it unpaid. Released all the same if the bus is down:
        such a job then runs and its images are not charged (their capture is refused)."""
        if self.announce is None:
            return
        body = events_pb2.TaskSettled(refunded=credits, reason=reason)
        try:
            await self.announce(task_events.settled(task_id, body))
        except ApiError:
            log.warning("settled event not published", extra={"task_id": task_id})

    async def GetAccount(
        self, request: billing_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Account:
        account = await self.db.run(
            self.ledger.get_account,
            account_id=checked_id(request.account_id, "acct", "account_id"),
        )
        return account_to_proto(account)

    async def DeleteAccount(
        self, request: billing_pb2.DeleteAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.DeletedAccount:
        deleted = await self.db.run(
            self.ledger.delete_account,
            account_id=checked_id(request.account_id, "acct", "account_id"),
            reason=request.reason,
        )
        for task_id, credits in zip(
            deleted.released_task_ids, deleted.released_credits, strict=True
        ):
            await self._announce_released(task_id, credits, "account_deleted")
        log.info(
            "account deleted",
            extra={
                "account_id": request.account_id,
                "keys_revoked": deleted.keys_revoked,
                "holds_released": len(deleted.released_task_ids),
            },
        )
        return billing_pb2.DeletedAccount(
            account=account_to_proto(deleted.account),
            keys_revoked=deleted.keys_revoked,
            released_task_ids=deleted.released_task_ids,
        )

    async def CreateAccount(
        self, request: billing_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Account:
        grant = request.signup_grant if request.HasField("signup_grant") else None
        account = await self.db.run(
            self.ledger.create_account, name=_require(request.name, "name"), grant=grant
        )
        return account_to_proto(account)

    async def ListAccounts(
        self, request: billing_pb2.ListAccountsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListAccountsResponse:
        if len(request.search) > MAX_SEARCH:
            raise ApiError(
                E.INVALID_PARAMETER, f"search is at most {MAX_SEARCH} characters", param="search"
            )
        accounts, next_cursor = await self.db.run(
            self.ledger.list_accounts,
            search=request.search.strip(),
            limit=page_limit(request.limit, default=50, maximum=MAX_ACCOUNTS_PAGE),
            cursor=request.cursor,
        )
        return billing_pb2.ListAccountsResponse(
            accounts=[account_to_proto(a) for a in accounts], next_cursor=next_cursor
        )

    async def CreateApiKey(
        self, request: billing_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CreatedApiKey:
        new = await self.db.run(
            self.ledger.create_api_key,
            account_id=checked_id(request.account_id, "acct", "account_id"),
            name=request.name,
            secret=request.secret,
            expires_at=moment(request.expires_at, "expires_at"),
            credit_limit=request.credit_limit if request.HasField("credit_limit") else None,
            rate_limit=request.rate_limit if request.HasField("rate_limit") else None,
            scopes=list(request.scopes),
            parent_key_id=_optional_id(request.parent_key_id, "key", "parent_key_id") or "",
        )
        return billing_pb2.CreatedApiKey(api_key=new.secret, key=key_to_proto(new.key))

    async def ListApiKeys(
        self, request: billing_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListApiKeysResponse:
        keys = await self.db.run(
            self.ledger.list_api_keys,
            account_id=checked_id(request.account_id, "acct", "account_id"),
        )
        return billing_pb2.ListApiKeysResponse(keys=[key_to_proto(k) for k in keys])

    async def RevokeApiKey(
        self, request: billing_pb2.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ApiKeyInfo:
        key = await self.db.run(
            self.ledger.revoke_api_key,
            key_id=checked_id(request.key_id, "key", "key_id"),
            account_id=_optional_id(request.account_id, "acct", "account_id"),
            by_key_id=_optional_id(request.by_key_id, "key", "by_key_id") or "",
            cascade=request.cascade,
        )
        return key_to_proto(key)

    async def TopUp(
        self, request: billing_pb2.MoveCreditsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Account:
        return await self._move(self.ledger.top_up, request)

    async def Adjust(
        self, request: billing_pb2.MoveCreditsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Account:
        return await self._move(self.ledger.adjust, request)

    async def _move(
        self, move: Callable[..., Account], request: billing_pb2.MoveCreditsRequest
    ) -> billing_pb2.Account:
        account = await self.db.run(
            move,
            account_id=checked_id(request.account_id, "acct", "account_id"),
            amount=request.amount,
            reason=request.reason,
        )
        return account_to_proto(account)

    async def ListLedgerEntries(
        self, request: billing_pb2.ListLedgerEntriesRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListLedgerEntriesResponse:
        entries, next_cursor = await self.db.run(
            self.ledger.entries,
            account_id=checked_id(request.account_id, "acct", "account_id"),
            limit=page_limit(request.limit, default=50, maximum=MAX_ENTRIES_PAGE),
            cursor=request.cursor,
            since=moment(request.since, "since"),
            until=moment(request.until, "until"),
        )
        return billing_pb2.ListLedgerEntriesResponse(
            entries=[entry_to_proto(e) for e in entries], next_cursor=next_cursor
        )

    async def VerifyAdmin(
        self, request: billing_pb2.VerifyAdminRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.VerifyAdminResponse:
        return billing_pb2.VerifyAdminResponse()  # the access table let only the operator in

    async def CheckLedger(
        self, request: billing_pb2.CheckLedgerRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CheckLedgerResponse:
        result = await self.db.run(self.ledger.check)
        return billing_pb2.CheckLedgerResponse(
            ok=not result.problems, problems=result.problems, entries=result.entries
        )
