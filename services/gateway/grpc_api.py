"""The public API over gRPC: metadata "authorization: Bearer <key>", then PublicApi."""

from __future__ import annotations

import grpc

from gateway.api import PublicApi
from pixelrelay.v1 import billing_pb2, public_api_pb2, public_api_pb2_grpc


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    return None


class PublicApiServicer(public_api_pb2_grpc.PublicApiServicer):
    def __init__(self, api: PublicApi):
        self.api = api

    async def CreateGeneration(
        self, request: public_api_pb2.CreateGenerationRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Task:
        return await self.api.create_generation(_authorization(context), request)

    async def EstimateGeneration(
        self, request: public_api_pb2.CreateGenerationRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Estimate:
        return await self.api.estimate_generation(_authorization(context), request)

    async def GetTask(
        self, request: public_api_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Task:
        return await self.api.get_task(_authorization(context), request)

    async def ListTasks(
        self, request: public_api_pb2.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.ListTasksResponse:
        return await self.api.list_tasks(_authorization(context), request)

    async def GetBalance(
        self, request: public_api_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.AccountBalance:
        return await self.api.get_balance(_authorization(context), request)

    async def CreateUpload(
        self, request: public_api_pb2.CreateUploadRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Upload:
        return await self.api.create_upload(_authorization(context), request)

    async def ListUsage(
        self, request: public_api_pb2.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListLedgerEntriesResponse:
        return await self.api.list_usage(_authorization(context), request)

    async def CreateKey(
        self, request: public_api_pb2.CreateKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CreatedApiKey:
        return await self.api.create_key(_authorization(context), request)

    async def ListKeys(
        self, request: public_api_pb2.ListKeysRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListApiKeysResponse:
        return await self.api.list_keys(_authorization(context), request)

    async def RevokeKey(
        self, request: public_api_pb2.RevokeKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ApiKeyInfo:
        return await self.api.revoke_key(_authorization(context), request)
