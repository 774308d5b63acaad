"""Typed client for the gateway's Admin service (admin.proto): what `pixelrelay admin`
asks of more than billing. The credential is the operator's admin token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pixelrelay.callers import credential_metadata
from pixelrelay.errors import peer_errors
from pixelrelay.grpc_server import call_options, insecure_channel
from pixelrelay.v1 import admin_pb2, admin_pb2_grpc, billing_pb2, public_api_pb2


class AdminClient:
    def __init__(self, addr: str, credential: str, timeout: float = 600.0):
        self.channel = insecure_channel(addr)
        self._stub = admin_pb2_grpc.AdminStub(self.channel)
        self._metadata = credential_metadata(credential)
        self.timeout = timeout

    def _options(self) -> dict[str, Any]:
        return call_options(self.timeout, self._metadata)

    async def delete_account(self, account_id: str, reason: str) -> admin_pb2.AccountDeletion:
        with peer_errors():
            reply: admin_pb2.AccountDeletion = await self._stub.DeleteAccount(
                billing_pb2.DeleteAccountRequest(account_id=account_id, reason=reason),
                **self._options(),
            )
        return reply

    async def export_account(self, account_id: str) -> AsyncIterator[public_api_pb2.ExportItem]:
        with peer_errors():
            async for item in self._stub.ExportAccount(
                public_api_pb2.ExportAccountRequest(account_id=account_id), **self._options()
            ):
                yield item

    async def get_task(self, task_id: str) -> admin_pb2.OperatorTask:
        with peer_errors():
            reply: admin_pb2.OperatorTask = await self._stub.GetTask(
                public_api_pb2.GetTaskRequest(id=task_id), **self._options()
            )
        return reply

    async def list_channels(self) -> admin_pb2.ListChannelsResponse:
        with peer_errors():
            reply: admin_pb2.ListChannelsResponse = await self._stub.ListChannels(
                admin_pb2.ListChannelsRequest(), **self._options()
            )
        return reply

    async def list_task_usage(
        self, account_id: str, page: public_api_pb2.ListTaskUsageRequest
    ) -> public_api_pb2.ListTaskUsageResponse:
        with peer_errors():
            reply: public_api_pb2.ListTaskUsageResponse = await self._stub.ListTaskUsage(
                admin_pb2.ListAccountTaskUsageRequest(account_id=account_id, page=page),
                **self._options(),
            )
        return reply

    async def get_margin(self, request: admin_pb2.MarginRequest) -> admin_pb2.MarginReport:
        with peer_errors():
            reply: admin_pb2.MarginReport = await self._stub.GetMargin(request, **self._options())
        return reply

    async def close(self) -> None:
        await self.channel.close()
