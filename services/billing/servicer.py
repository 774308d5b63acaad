"""gRPC ↔ ledger: unpack the proto, call the rule, pack the reply. Nothing else."""

from __future__ import annotations

import grpc

from billing.ledger import Ledger
from billing.models import Account, Hold, HoldState
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import billing_pb2, billing_pb2_grpc

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
        id=account.id, name=account.name, balance=account.balance, held=account.held
    )


def _require(value: str, name: str) -> str:
    if not value:
        raise ApiError(E.MISSING_PARAMETER, f"{name} is required", param=name)
    return value


class BillingServicer(billing_pb2_grpc.BillingServicer):
    def __init__(self, ledger: Ledger, db: Database):
        self.ledger = ledger
        self.db = db

    async def Authenticate(
        self, request: billing_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Principal:
        key = await self.db.run(self.ledger.authenticate, api_key=request.api_key)
        return billing_pb2.Principal(account_id=key.account_id, key_id=key.id)

    async def Quote(
        self, request: billing_pb2.QuoteRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.QuoteResponse:
        quote = self.ledger.prices.quote(request.item)
        return billing_pb2.QuoteResponse(
            unit_credits=quote.unit_credits, credits=quote.credits, price_id=quote.price_id
        )

    async def Reserve(
        self, request: billing_pb2.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Hold:
        hold = await self.db.run(
            self.ledger.reserve,
            task_id=_require(request.task_id, "task_id"),
            account_id=_require(request.account_id, "account_id"),
            item=request.item,
            expires_at=request.expires_at,
        )
        return hold_to_proto(hold)

    async def Capture(
        self, request: billing_pb2.CaptureRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Hold:
        hold = await self.db.run(
            self.ledger.capture,
            task_id=_require(request.task_id, "task_id"),
            delivered=request.delivered,
            quality=request.quality,
        )
        return hold_to_proto(hold)

    async def Release(
        self, request: billing_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Hold:
        hold = await self.db.run(self.ledger.release, task_id=_require(request.task_id, "task_id"))
        return hold_to_proto(hold)

    async def GetAccount(
        self, request: billing_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Account:
        account = await self.db.run(self.ledger.get_account, account_id=request.account_id)
        return account_to_proto(account)

    async def CreateAccount(
        self, request: billing_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Account:
        grant = request.signup_grant if request.HasField("signup_grant") else None
        account = await self.db.run(
            self.ledger.create_account, name=_require(request.name, "name"), grant=grant
        )
        return account_to_proto(account)

    async def CreateApiKey(
        self, request: billing_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CreatedApiKey:
        new = await self.db.run(
            self.ledger.create_api_key,
            account_id=_require(request.account_id, "account_id"),
            name=request.name,
            secret=request.secret,
        )
        return billing_pb2.CreatedApiKey(
            key_id=new.key.id, api_key=new.secret, prefix=new.key.prefix, last4=new.key.last4
        )

    async def CheckLedger(
        self, request: billing_pb2.CheckLedgerRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CheckLedgerResponse:
        result = await self.db.run(self.ledger.check)
        return billing_pb2.CheckLedgerResponse(
            ok=not result.problems, problems=result.problems, entries=result.entries
        )
