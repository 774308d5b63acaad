"""reAPI's REST contract (/api/v1): each route a translation of one PublicApi call, made
for the caller its Authorization header names (authenticated for the operation's scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Header, Query, UploadFile
from fastapi.responses import Response

from pixelrelay import scopes
from pixelrelay.v1 import public_api_pb2
from pixelrelay_gateway.core.api import PublicApi
from pixelrelay_gateway.core.authenticator import Authenticator
from pixelrelay_gateway.http import translate
from pixelrelay_gateway.http.errors import errors
from pixelrelay_gateway.http.exports import (
    EXPORT_CONTENT,
    ExportFormat,
    ExportPart,
    export_download,
)
from pixelrelay_gateway.http.responses import JSONBody
from pixelrelay_gateway.http.schemas import (
    BalanceOut,
    CreatedKeyOut,
    EstimateOut,
    GenerationBody,
    KeyCreateBody,
    KeyListOut,
    KeyOut,
    ModelListOut,
    Since,
    SubmitOut,
    TaskListOut,
    TaskOut,
    TaskUsageListOut,
    Until,
    UploadOut,
    UsageOut,
)

# The route table: every path of the family, spelled once.
GENERATIONS = "/api/v1/images/generations"
ESTIMATE = "/api/v1/images/estimate"
TASKS = "/api/v1/tasks"
TASK = "/api/v1/tasks/{task_id}"
UPLOADS = "/api/v1/uploads"
USAGE = "/api/v1/usage"
TASK_USAGE = "/api/v1/usage/tasks"
KEYS = "/api/v1/keys"
KEY = "/api/v1/keys/{key_id}"
ACCOUNT = "/api/v1/account"
MODELS = "/api/v1/models"
ACCOUNT_EXPORT = "/api/v1/account/export"

Authorization = Annotated[str | None, Header(description="Bearer <api key>")]
IdempotencyKey = Annotated[
    str | None, Header(description="makes a retried submit safe: the same key, the same task")
]


def reapi_router(api: PublicApi, authenticator: Authenticator) -> APIRouter:
    router = APIRouter()

    @router.post(
        GENERATIONS,
        response_model=SubmitOut,
        responses=errors(400, 401, 403, 402, 404, 409, 413, 422, 429, 503),
        tags=["images"],
        summary="Submit an image generation task",
        description="With `Idempotency-Key` (1-255 printable ASCII characters, e.g. a UUID), "
        "the same key and body again within 24 hours answer the task the first request "
        "made, reserved and charged once: a safe retry after a lost answer. The same key "
        "with another body: 422 (20015); while the first is still being processed: 409 "
        "(20016).",
    )
    async def create_generation(
        body: GenerationBody,
        authorization: Authorization = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        request = translate.generation_request(body, idempotency_key)
        principal = await authenticator.authenticate(authorization, scopes.GENERATE)
        task = await api.create_generation(request, principal=principal)
        return JSONBody(translate.submit_json(task))

    @router.post(
        ESTIMATE,
        response_model=EstimateOut,
        responses=errors(400, 401, 403, 413, 429, 503),
        tags=["images"],
        summary="Price a request without submitting it",
    )
    async def estimate_generation(
        body: GenerationBody, authorization: Authorization = None
    ) -> Response:
        request = translate.generation_request(body)
        principal = await authenticator.authenticate(authorization, scopes.GENERATE)
        estimate = await api.estimate_generation(request, principal=principal)
        return JSONBody(translate.estimate_json(estimate))

    @router.get(
        MODELS,
        response_model=ModelListOut,
        responses=errors(401, 403, 429, 503),
        tags=["images"],
        summary="The models served: what each takes, its aliases and its prices",
        description="From the model catalog the platform runs with (`CATALOG_FILE`). A "
        "request may name a model or any of its aliases; the task shows the model.",
    )
    async def list_models(authorization: Authorization = None) -> Response:
        principal = await authenticator.authenticate(authorization, scopes.GENERATE)
        served = await api.list_models(public_api_pb2.ListModelsRequest(), principal=principal)
        return JSONBody(translate.model_list_json(served))

    @router.get(
        TASK,
        response_model=TaskOut,
        responses=errors(400, 401, 403, 404, 429, 503),
        tags=["tasks"],
        summary="Get a task (poll until completed or failed)",
    )
    async def get_task(task_id: str, authorization: Authorization = None) -> Response:
        principal = await authenticator.authenticate(authorization, scopes.READ)
        task = await api.get_task(public_api_pb2.GetTaskRequest(id=task_id), principal=principal)
        return JSONBody(translate.task_json(task))

    @router.get(
        TASKS,
        response_model=TaskListOut,
        responses=errors(400, 401, 403, 429, 503),
        tags=["tasks"],
        summary="List the caller's tasks, newest first",
    )
    async def list_tasks(
        authorization: Authorization = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: str = "",
        status: str = "",
    ) -> Response:
        principal = await authenticator.authenticate(authorization, scopes.READ)
        page = await api.list_tasks(
            public_api_pb2.ListTasksRequest(limit=limit, cursor=cursor, status=status),
            principal=principal,
        )
        return JSONBody(
            {
                "data": [translate.task_json(t) for t in page.tasks],
                "next_cursor": page.next_cursor or None,
            }
        )

    @router.post(
        UPLOADS,
        response_model=UploadOut,
        responses=errors(400, 401, 403, 413, 422, 429, 503),
        tags=["uploads"],
        summary="Upload an image for image_urls or mask_url (multipart field 'file')",
        description="PNG, JPEG or WebP. Stored as the image alone: metadata (EXIF, XMP, "
        "text chunks, comments) and bytes after the image's end are removed, colour "
        "profiles kept; a photo with an EXIF orientation is turned upright. References "
        "fetched from `image_urls` are treated the same before they go upstream. An upload "
        "is named by its content: sending the same file again (a retry after a lost answer) "
        "answers the same upload, stored once.",
    )
    async def create_upload(
        file: Annotated[UploadFile, File()], authorization: Authorization = None
    ) -> Response:
        request = public_api_pb2.CreateUploadRequest(
            data=await file.read(), content_type=file.content_type or ""
        )
        principal = await authenticator.authenticate(authorization, scopes.GENERATE)
        upload = await api.create_upload(request, principal=principal)
        return JSONBody(translate.upload_json(upload))

    @router.get(
        USAGE,
        response_model=UsageOut,
        responses=errors(400, 401, 403, 429, 503),
        tags=["account"],
        summary="The caller's ledger entries, newest first",
    )
    async def list_usage(
        authorization: Authorization = None,
        since: Since = 0,
        until: Until = 0,
        cursor: str = "",
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Response:
        principal = await authenticator.authenticate(authorization, scopes.BILLING_READ)
        page = await api.list_usage(
            public_api_pb2.ListUsageRequest(since=since, until=until, cursor=cursor, limit=limit),
            principal=principal,
        )
        return JSONBody(translate.entries_json(page))

    @router.get(
        TASK_USAGE,
        response_model=TaskUsageListOut,
        responses=errors(400, 401, 403, 429, 503),
        tags=["account"],
        summary="The caller's usage, one line per task, newest first",
        description="What each task held, was charged and got back, with what it asked "
        "for. The ledger behind it (double entry, for accountants) is `GET /api/v1/usage`.",
    )
    async def list_task_usage(
        authorization: Authorization = None,
        since: Since = 0,
        until: Until = 0,
        cursor: str = "",
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Response:
        principal = await authenticator.authenticate(authorization, scopes.BILLING_READ)
        page = await api.list_task_usage(
            public_api_pb2.ListTaskUsageRequest(
                since=since, until=until, cursor=cursor, limit=limit
            ),
            principal=principal,
        )
        return JSONBody(translate.task_usage_list_json(page))

    @router.post(
        KEYS,
        response_model=CreatedKeyOut,
        responses=errors(400, 401, 403, 429, 503),
        tags=["keys"],
        summary="Create an API key (its secret is shown once)",
    )
    async def create_key(body: KeyCreateBody, authorization: Authorization = None) -> Response:
        request = public_api_pb2.CreateKeyRequest(
            name=body.name, expires_at=body.expires_at or 0, scopes=body.scopes or []
        )
        if body.credit_limit is not None:
            request.credit_limit = body.credit_limit
        if body.rate_limit is not None:
            request.rate_limit = body.rate_limit
        principal = await authenticator.authenticate(authorization, scopes.KEYS_MANAGE)
        created = await api.create_key(request, principal=principal)
        return JSONBody(translate.created_key_json(created))

    @router.get(
        KEYS,
        response_model=KeyListOut,
        responses=errors(401, 403, 429, 503),
        tags=["keys"],
        summary="The caller's API keys (prefix and last four only)",
    )
    async def list_keys(authorization: Authorization = None) -> Response:
        principal = await authenticator.authenticate(authorization, scopes.KEYS_MANAGE)
        keys = await api.list_keys(public_api_pb2.ListKeysRequest(), principal=principal)
        return JSONBody({"data": [translate.key_json(k) for k in keys.keys]})

    @router.delete(
        KEY,
        response_model=KeyOut,
        responses=errors(400, 401, 403, 404, 429, 503),
        tags=["keys"],
        summary="Revoke an API key (it stops working at once)",
    )
    async def revoke_key(
        key_id: str,
        authorization: Authorization = None,
        cascade: Annotated[
            bool, Query(description="also revoke every key created from it, at any depth")
        ] = False,
    ) -> Response:
        principal = await authenticator.authenticate(authorization, scopes.KEYS_MANAGE)
        key = await api.revoke_key(
            public_api_pb2.RevokeKeyRequest(key_id=key_id, cascade=cascade), principal=principal
        )
        return JSONBody(translate.key_json(key))

    @router.get(
        ACCOUNT,
        response_model=BalanceOut,
        responses=errors(401, 403, 429, 503),
        tags=["account"],
        summary="The caller's balance and held credits",
    )
    async def get_account(authorization: Authorization = None) -> Response:
        principal = await authenticator.authenticate(authorization, scopes.BILLING_READ)
        balance = await api.get_balance(public_api_pb2.GetBalanceRequest(), principal=principal)
        return JSONBody(
            {"account_id": balance.account_id, "balance": balance.balance, "held": balance.held}
        )

    @router.get(
        ACCOUNT_EXPORT,
        responses={**EXPORT_CONTENT, **errors(400, 401, 403, 429, 503)},
        tags=["account"],
        summary="Everything kept about the caller's account: its tasks and ledger",
    )
    async def export_account(
        authorization: Authorization = None,
        format: ExportFormat = "json",
        part: ExportPart = "tasks",
    ) -> Response:
        # Both the ledger and the tasks: billing:read here, read too in the operation.
        principal = await authenticator.authenticate(authorization, scopes.BILLING_READ)
        items = api.export_account(public_api_pb2.ExportAccountRequest(), principal=principal)
        return await export_download(items, "account", format, part)

    return router
