"""The public API over gRPC: metadata "authorization: Bearer <key>", then PublicApi."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from gateway.core.api import PublicApi
from gateway.core.auth_throttle import AuthThrottle
from pixelrelay.errors import ApiError
from pixelrelay.v1 import billing_pb2, public_api_pb2, public_api_pb2_grpc

Request = TypeVar("Request")
Reply = TypeVar("Reply")


def _metadata(context: grpc.aio.ServicerContext, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name and isinstance(value, str):
            return value
    return None


def _peer_host(peer: str) -> str:
    """``ipv4:1.2.3.4:5678`` / ``ipv6:[::1]:5678`` → the address alone."""
    _, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0]
    return host.strip("[]")


class PublicApiServicer(public_api_pb2_grpc.PublicApiServicer):
    def __init__(self, api: PublicApi, throttle: AuthThrottle):
        self.api = api
        self.throttle = throttle

    async def _call(
        self,
        context: grpc.aio.ServicerContext,
        method: Callable[[str | None, Request], Awaitable[Reply]],
        request: Request,
    ) -> Reply:
        """``method`` with the caller's key, throttled per address as on REST."""
        authorization = _metadata(context, "authorization")
        if authorization is None:
            return await method(None, request)
        client = self.throttle.client(
            _peer_host(context.peer()), _metadata(context, "x-forwarded-for")
        )
        self.throttle.check(client)
        try:
            return await method(authorization, request)
        except ApiError as err:
            if err.kind.http_status == 401:
                self.throttle.failed(client)
            raise

    async def CreateGeneration(
        self, request: public_api_pb2.CreateGenerationRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Task:
        return await self._call(context, self.api.create_generation, request)

    async def EstimateGeneration(
        self, request: public_api_pb2.CreateGenerationRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Estimate:
        return await self._call(context, self.api.estimate_generation, request)

    async def GetTask(
        self, request: public_api_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Task:
        return await self._call(context, self.api.get_task, request)

    async def ListTasks(
        self, request: public_api_pb2.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.ListTasksResponse:
        return await self._call(context, self.api.list_tasks, request)

    async def GetBalance(
        self, request: public_api_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.AccountBalance:
        return await self._call(context, self.api.get_balance, request)

    async def CreateUpload(
        self, request: public_api_pb2.CreateUploadRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Upload:
        return await self._call(context, self.api.create_upload, request)

    async def ListUsage(
        self, request: public_api_pb2.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListLedgerEntriesResponse:
        return await self._call(context, self.api.list_usage, request)

    async def CreateKey(
        self, request: public_api_pb2.CreateKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CreatedApiKey:
        return await self._call(context, self.api.create_key, request)

    async def ListKeys(
        self, request: public_api_pb2.ListKeysRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListApiKeysResponse:
        return await self._call(context, self.api.list_keys, request)

    async def RevokeKey(
        self, request: public_api_pb2.RevokeKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ApiKeyInfo:
        return await self._call(context, self.api.revoke_key, request)
