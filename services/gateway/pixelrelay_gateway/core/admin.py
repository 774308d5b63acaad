"""The operator's side of the gateway: who is an admin is billing's decision.

The bearer an admin call carries is forwarded as the credential of the billing calls it
makes, so billing alone knows the admin credential (TRUSTED_CALLERS) and refuses anyone
else; the gateway's own credential is never accepted as an admin's. /admin/v1 (REST) and
the Admin gRPC service both start here.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from pixelrelay.billing_client import BillingClient
from pixelrelay.errors import ApiError, E
from pixelrelay.ids import checked_id
from pixelrelay.limits import unix_seconds
from pixelrelay.v1 import admin_pb2, public_api_pb2
from pixelrelay_gateway.core import margin
from pixelrelay_gateway.core.accounts import AccountData
from pixelrelay_gateway.core.channel_health import ChannelHealthBoard
from pixelrelay_gateway.core.usage import usage_page


@contextlib.contextmanager
def admin_errors() -> Iterator[None]:
    """Billing's refusal of the forwarded credential is the admin's 401 (10003)."""
    try:
        yield
    except ApiError as err:
        if err.kind in (E.SERVICE_CREDENTIAL_INVALID, E.CALLER_NOT_ALLOWED):
            raise ApiError(E.ADMIN_TOKEN_INVALID) from None
        raise


@dataclass(frozen=True)
class AdminAccess:
    billing: BillingClient
    own_credential: str  # the gateway's: never accepted as an admin's
    accounts: AccountData
    channels: ChannelHealthBoard
    public_url: str = ""  # where the console is (PUBLIC_URL), for the links it hands out

    def billing_for(self, authorization: str | None) -> BillingClient:
        """Billing, called with the admin's bearer as the credential."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme != "Bearer" or not token or hmac.compare_digest(token, self.own_credential):
            raise ApiError(E.ADMIN_TOKEN_INVALID)
        return self.billing.acting_as(token)

    async def verified(self, authorization: str | None) -> None:
        """For what the gateway answers itself: billing is asked whether the bearer is the
        operator's before anything is read."""
        billing = self.billing_for(authorization)
        with admin_errors():
            await billing.verify_admin()

    async def get_task(self, authorization: str | None, task_id: str) -> admin_pb2.OperatorTask:
        await self.verified(authorization)
        checked_id(task_id, "task", "task_id")
        return await self.accounts.db.run(self.accounts.tasks.get_for_operator, task_id)

    async def list_channels(self, authorization: str | None) -> admin_pb2.ListChannelsResponse:
        await self.verified(authorization)
        return self.channels.channels()

    async def list_task_usage(
        self, authorization: str | None, request: admin_pb2.ListAccountTaskUsageRequest
    ) -> public_api_pb2.ListTaskUsageResponse:
        await self.verified(authorization)
        account_id = checked_id(request.account_id, "acct", "account_id")
        return await usage_page(self.accounts.db, self.accounts.tasks, account_id, request.page)

    async def get_margin(
        self, authorization: str | None, request: admin_pb2.MarginRequest
    ) -> admin_pb2.MarginReport:
        await self.verified(authorization)
        group_by = margin.group(request.group_by)
        since = unix_seconds(request.since, "since")
        until = unix_seconds(request.until, "until") or int(time.time()) + 1
        if until <= since:
            raise ApiError(E.INVALID_PARAMETER, "until must be after since", param="until")
        tasks = await self.accounts.db.run(self.accounts.tasks.costs, since * 1000, until * 1000)
        lines = margin.margin(tasks, group_by)
        return admin_pb2.MarginReport(
            lines=lines, total=margin.total(lines), since=since, until=until, group_by=group_by
        )

    async def delete_account(
        self, authorization: str | None, account_id: str, reason: str
    ) -> admin_pb2.AccountDeletion:
        billing = self.billing_for(authorization)
        with admin_errors():
            return await self.accounts.delete(billing, account_id, reason)

    async def export_account(
        self, authorization: str | None, account_id: str
    ) -> AsyncIterator[public_api_pb2.ExportItem]:
        billing = self.billing_for(authorization)
        with admin_errors():
            async for item in self.accounts.export(billing, account_id):
                yield item
