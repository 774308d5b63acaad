"""The public API over gRPC: metadata "authorization: Bearer <key>" authenticated for the
operation's scope, then the PublicApi operation with that principal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

import grpc

from pixelrelay import scopes
from pixelrelay.errors import ApiError
from pixelrelay.grpc_server import Admit
from pixelrelay.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    billing_pb2,
    public_api_pb2,
    public_api_pb2_grpc,
)
from pixelrelay_gateway.core.admin import AdminAccess
from pixelrelay_gateway.core.api import PublicApi
from pixelrelay_gateway.core.auth_throttle import AuthThrottle
from pixelrelay_gateway.core.authenticator import Authenticator
from pixelrelay_gateway.core.sessions import Sessions

Request = TypeVar("Request")
Reply = TypeVar("Reply")
Request_contra = TypeVar("Request_contra", contravariant=True)
Reply_co = TypeVar("Reply_co", covariant=True)


class Operation(Protocol[Request_contra, Reply_co]):
    """A PublicApi operation: ``api.get_task(request, principal=principal)``."""

    def __call__(
        self, request: Request_contra, /, *, principal: billing_pb2.Principal
    ) -> Awaitable[Reply_co]: ...


class StreamOperation(Protocol[Request_contra, Reply_co]):
    """A PublicApi operation that answers a stream."""

    def __call__(
        self, request: Request_contra, /, *, principal: billing_pb2.Principal
    ) -> AsyncIterator[Reply_co]: ...


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


def client_of(throttle: AuthThrottle, context: grpc.aio.ServicerContext) -> str:
    return throttle.client(_peer_host(context.peer()), _metadata(context, "x-forwarded-for"))


async def throttled(
    throttle: AuthThrottle,
    context: grpc.aio.ServicerContext,
    call: Callable[[str | None], Awaitable[Reply]],
) -> Reply:
    """``call(authorization)``, counted by the failed-auth throttle of the caller's address
    (as on REST): its 401s count against the address, which is refused once over."""
    authorization = _metadata(context, "authorization")
    if authorization is None:
        return await call(None)
    client = client_of(throttle, context)
    throttle.check(client, authorization)
    try:
        return await call(authorization)
    except ApiError as err:
        if err.kind.http_status == 401:
            throttle.failed(client)
        raise


async def throttled_stream(
    throttle: AuthThrottle,
    context: grpc.aio.ServicerContext,
    open_stream: Callable[[str | None], AsyncIterator[Reply]],
) -> AsyncIterator[Reply]:
    """A server stream whose first item (where authentication happens) is throttled as
    ``throttled`` calls are; the rest follows as it comes."""
    stream = open_stream(_metadata(context, "authorization"))
    yield await throttled(throttle, context, lambda _auth: anext(stream))
    async for item in stream:
        yield item


ADMIN_PREFIX = "/pixelrelay.v1.Admin/"
SESSIONS_PREFIX = "/pixelrelay.v1.Sessions/"
# Sessions methods that take no credential (the rest take the session's).
CREDENTIAL_FREE = frozenset(
    SESSIONS_PREFIX + name
    for name in [
        "GetSignUpOptions",
        "SignUp",
        "SignIn",
        "RequestPasswordReset",
        "ResetPassword",
        "VerifyEmail",
    ]
)


def admitter(authenticator: Authenticator, admin: AdminAccess, throttle: AuthThrottle) -> Admit:
    """The check every call to the gateway's gRPC API passes before its message is read
    (grpc_server.py): a valid API key, or for Admin a well-formed operator token (billing
    judges it, and the call's message is small); throttled per address as on REST."""

    async def admit(path: str, context: grpc.aio.ServicerContext) -> None:
        if path in CREDENTIAL_FREE:
            throttle.check(client_of(throttle, context))  # an address over its failures
            return

        async def check(authorization: str | None) -> None:
            if path.startswith(ADMIN_PREFIX):
                admin.billing_for(authorization)
            else:
                await authenticator.admit(authorization)

        await throttled(throttle, context, check)

    return admit


class PublicApiServicer(public_api_pb2_grpc.PublicApiServicer):
    def __init__(self, api: PublicApi, authenticator: Authenticator, throttle: AuthThrottle):
        self.api = api
        self.authenticator = authenticator
        self.throttle = throttle

    async def _call(
        self,
        context: grpc.aio.ServicerContext,
        scope: str,
        operation: Operation[Request, Reply],
        request: Request,
    ) -> Reply:
        """``operation`` for the caller authenticated for ``scope``, throttled per address
        as on REST."""

        async def call(authorization: str | None) -> Reply:
            principal = await self.authenticator.authenticate(authorization, scope)
            return await operation(request, principal=principal)

        return await throttled(self.throttle, context, call)

    def _stream(
        self,
        context: grpc.aio.ServicerContext,
        scope: str,
        operation: StreamOperation[Request, Reply],
        request: Request,
    ) -> AsyncIterator[Reply]:
        """``_call`` for a stream: the caller is authenticated for its first item."""

        async def stream(authorization: str | None) -> AsyncIterator[Reply]:
            principal = await self.authenticator.authenticate(authorization, scope)
            async for item in operation(request, principal=principal):
                yield item

        return throttled_stream(self.throttle, context, stream)

    async def ExportAccount(
        self, request: public_api_pb2.ExportAccountRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[public_api_pb2.ExportItem]:
        # Both the ledger and the tasks: billing:read here, read too in the operation.
        stream = self._stream(context, scopes.BILLING_READ, self.api.export_account, request)
        async for item in stream:
            yield item

    async def ListModels(
        self, request: public_api_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.ListModelsResponse:
        return await self._call(context, scopes.GENERATE, self.api.list_models, request)

    async def GenerateImages(
        self, request: public_api_pb2.GenerateImagesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[public_api_pb2.GenerationEvent]:
        stream = self._stream(context, scopes.GENERATE, self.api.generate_images, request)
        async for event in stream:
            yield event

    async def CreateGeneration(
        self, request: public_api_pb2.CreateGenerationRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Task:
        return await self._call(context, scopes.GENERATE, self.api.create_generation, request)

    async def EstimateGeneration(
        self, request: public_api_pb2.CreateGenerationRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Estimate:
        return await self._call(context, scopes.GENERATE, self.api.estimate_generation, request)

    async def GetTask(
        self, request: public_api_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Task:
        return await self._call(context, scopes.READ, self.api.get_task, request)

    async def ListTasks(
        self, request: public_api_pb2.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.ListTasksResponse:
        return await self._call(context, scopes.READ, self.api.list_tasks, request)

    async def GetBalance(
        self, request: public_api_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.AccountBalance:
        return await self._call(context, scopes.BILLING_READ, self.api.get_balance, request)

    async def CreateUpload(
        self, request: public_api_pb2.CreateUploadRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Upload:
        return await self._call(context, scopes.GENERATE, self.api.create_upload, request)

    async def ListUsage(
        self, request: public_api_pb2.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListLedgerEntriesResponse:
        return await self._call(context, scopes.BILLING_READ, self.api.list_usage, request)

    async def ListTaskUsage(
        self, request: public_api_pb2.ListTaskUsageRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.ListTaskUsageResponse:
        return await self._call(context, scopes.BILLING_READ, self.api.list_task_usage, request)

    async def CreateKey(
        self, request: public_api_pb2.CreateKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CreatedApiKey:
        return await self._call(context, scopes.KEYS_MANAGE, self.api.create_key, request)

    async def ListKeys(
        self, request: public_api_pb2.ListKeysRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListApiKeysResponse:
        return await self._call(context, scopes.KEYS_MANAGE, self.api.list_keys, request)

    async def RevokeKey(
        self, request: public_api_pb2.RevokeKeyRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ApiKeyInfo:
        return await self._call(context, scopes.KEYS_MANAGE, self.api.revoke_key, request)


class AdminServicer(admin_pb2_grpc.AdminServicer):
    """The operator's account operations (core/admin.py)."""

    def __init__(self, admin: AdminAccess, throttle: AuthThrottle):
        self.admin = admin
        self.throttle = throttle

    async def DeleteAccount(
        self, request: billing_pb2.DeleteAccountRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.AccountDeletion:
        return await throttled(
            self.throttle,
            context,
            lambda auth: self.admin.delete_account(auth, request.account_id, request.reason),
        )

    async def ExportAccount(
        self, request: public_api_pb2.ExportAccountRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[public_api_pb2.ExportItem]:
        async for item in throttled_stream(
            self.throttle, context, lambda auth: self.admin.export_account(auth, request.account_id)
        ):
            yield item

    async def GetTask(
        self, request: public_api_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.OperatorTask:
        return await throttled(
            self.throttle, context, lambda auth: self.admin.get_task(auth, request.id)
        )

    async def ListChannels(
        self, request: admin_pb2.ListChannelsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListChannelsResponse:
        return await throttled(self.throttle, context, self.admin.list_channels)

    async def ListTaskUsage(
        self, request: admin_pb2.ListAccountTaskUsageRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.ListTaskUsageResponse:
        return await throttled(
            self.throttle, context, lambda auth: self.admin.list_task_usage(auth, request)
        )

    async def GetMargin(
        self, request: admin_pb2.MarginRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.MarginReport:
        return await throttled(
            self.throttle, context, lambda auth: self.admin.get_margin(auth, request)
        )


class SessionsServicer(public_api_pb2_grpc.SessionsServicer):
    """People's sessions (core/sessions.py). A failed sign-in counts against the caller's
    address in the failed-auth throttle, as a bad key does."""

    def __init__(self, sessions: Sessions, throttle: AuthThrottle):
        self.sessions = sessions
        self.throttle = throttle

    async def GetSignUpOptions(
        self, request: public_api_pb2.GetSignUpOptionsRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.SignUpOptions:
        return self.sessions.options()

    async def SignUp(
        self, request: public_api_pb2.SignUpRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Session:
        return await self.sessions.sign_up(request, client_of(self.throttle, context))

    async def SignIn(
        self, request: billing_pb2.SignInRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Session:
        try:
            return await self.sessions.sign_in(request)
        except ApiError as err:
            if err.kind.http_status == 401:
                self.throttle.failed(client_of(self.throttle, context))
            raise

    async def GetSession(
        self, request: public_api_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Session:
        return await throttled(self.throttle, context, self.sessions.get_session)

    async def SignOut(
        self, request: public_api_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.SignOutResponse:
        await throttled(self.throttle, context, self.sessions.sign_out)
        return billing_pb2.SignOutResponse()

    async def ChangePassword(
        self, request: public_api_pb2.NewPasswordRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Session:
        return await throttled(
            self.throttle, context, lambda auth: self.sessions.change_password(auth, request)
        )

    async def RequestPasswordReset(
        self,
        request: public_api_pb2.RequestPasswordResetRequest,
        context: grpc.aio.ServicerContext,
    ) -> public_api_pb2.PasswordResetRequested:
        await self.sessions.request_password_reset(request)
        return public_api_pb2.PasswordResetRequested()

    async def ResetPassword(
        self, request: public_api_pb2.ResetPasswordRequest, context: grpc.aio.ServicerContext
    ) -> public_api_pb2.Session:
        return await self.sessions.reset_password(request)

    async def VerifyEmail(
        self, request: public_api_pb2.VerifyEmailRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.LoginInfo:
        return await self.sessions.verify_email(request)
