"""Admin REST (/admin/v1): a translation of billing's admin gRPC calls, made with the
caller's own bearer as the admin credential (billing checks it against TRUSTED_CALLERS)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from pixelrelay.billing_client import BillingClient
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import admin_pb2, billing_pb2, public_api_pb2
from pixelrelay_gateway.core.admin import AdminAccess, admin_errors
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
    AccountCreateBody,
    AccountDeleteBody,
    AccountDeletionOut,
    AccountListOut,
    AccountOut,
    ChannelListOut,
    CreatedInviteOut,
    CreatedKeyOut,
    InviteCreateBody,
    InviteListOut,
    InviteOut,
    KeyCreateBody,
    KeyListOut,
    KeyOut,
    LedgerCheckOut,
    MarginOut,
    MoveCreditsBody,
    OperatorTaskOut,
    ResetLinkOut,
    Since,
    TaskUsageListOut,
    Until,
    UsageOut,
)

ERRORS = errors(400, 401, 404, 503)


def _access(request: Request) -> AdminAccess:
    access: AdminAccess | None = request.app.state.admin
    if access is None:
        raise ApiError(E.ADMIN_TOKEN_INVALID, "the admin API is not served here")
    return access


async def authorize(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> BillingClient:
    """Billing, called with the admin's bearer (core/admin.py); its refusal becomes 401."""
    return _access(request).billing_for(authorization)


class _AdminRoute(APIRoute):
    """Billing's refusal of the forwarded credential is the admin's 401."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            with admin_errors():
                return await handler(request)

        return guarded


Billing = Annotated[BillingClient, Depends(authorize)]
AdminAuth = Annotated[str | None, Header(alias="authorization")]


def admin_router() -> APIRouter:
    router = APIRouter(
        prefix="/admin/v1", tags=["admin"], responses=ERRORS, route_class=_AdminRoute
    )

    @router.post("/accounts", response_model=AccountOut, summary="Create an account")
    async def create_account(body: AccountCreateBody, billing: Billing) -> Response:
        return JSONBody(translate.account_json(await billing.create_account(body.name, body.grant)))

    @router.get(
        "/accounts",
        response_model=AccountListOut,
        summary="Accounts, newest first; search by part of the name or the whole id",
    )
    async def list_accounts(
        billing: Billing,
        search: Annotated[str, Query(max_length=200)] = "",
        cursor: str = "",
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Response:
        page = await billing.list_accounts(
            billing_pb2.ListAccountsRequest(search=search, cursor=cursor, limit=limit)
        )
        return JSONBody(translate.account_list_json(page))

    @router.get("/accounts/{account_id}", response_model=AccountOut, summary="An account")
    async def get_account(account_id: str, billing: Billing) -> Response:
        return JSONBody(translate.account_json(await billing.get_account(account_id)))

    @router.post(
        "/accounts/{account_id}/top-ups",
        response_model=AccountOut,
        summary="Add credits, with a reason",
    )
    async def top_up(account_id: str, body: MoveCreditsBody, billing: Billing) -> Response:
        account = await billing.top_up(account_id, body.amount, body.reason)
        return JSONBody(translate.account_json(account))

    @router.post(
        "/accounts/{account_id}/adjustments",
        response_model=AccountOut,
        summary="Correct a balance either way, with a reason",
    )
    async def adjust(account_id: str, body: MoveCreditsBody, billing: Billing) -> Response:
        account = await billing.adjust(account_id, body.amount, body.reason)
        return JSONBody(translate.account_json(account))

    @router.post(
        "/accounts/{account_id}/keys",
        response_model=CreatedKeyOut,
        summary="Issue an API key for an account",
    )
    async def create_key(account_id: str, body: KeyCreateBody, billing: Billing) -> Response:
        created = await billing.create_api_key(
            account_id,
            body.name,
            expires_at=body.expires_at or 0,
            credit_limit=body.credit_limit,
            rate_limit=body.rate_limit,
            scopes=body.scopes,
        )
        return JSONBody(translate.created_key_json(created))

    @router.get(
        "/accounts/{account_id}/keys", response_model=KeyListOut, summary="An account's keys"
    )
    async def list_keys(account_id: str, billing: Billing) -> Response:
        keys = await billing.list_api_keys(account_id)
        return JSONBody(translate.key_list_json(keys))

    @router.delete("/keys/{key_id}", response_model=KeyOut, summary="Revoke any key")
    async def revoke_key(
        key_id: str,
        billing: Billing,
        cascade: Annotated[
            bool, Query(description="also revoke every key created from it, at any depth")
        ] = False,
    ) -> Response:
        return JSONBody(translate.key_json(await billing.revoke_api_key(key_id, cascade=cascade)))

    @router.get(
        "/accounts/{account_id}/ledger",
        response_model=UsageOut,
        summary="An account's ledger entries, newest first",
    )
    async def ledger(
        account_id: str,
        billing: Billing,
        since: Since = 0,
        until: Until = 0,
        cursor: str = "",
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Response:
        page = await billing.list_ledger_entries(
            billing_pb2.ListLedgerEntriesRequest(
                account_id=account_id, since=since, until=until, cursor=cursor, limit=limit
            )
        )
        return JSONBody(translate.entries_json(page))

    @router.get(
        "/accounts/{account_id}/usage/tasks",
        response_model=TaskUsageListOut,
        summary="An account's usage, one line per task, newest first",
        description="What its customer sees in their dashboard (`GET /api/v1/usage/tasks`).",
    )
    async def task_usage(
        account_id: str,
        request: Request,
        authorization: AdminAuth = None,
        since: Since = 0,
        until: Until = 0,
        cursor: str = "",
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Response:
        page = public_api_pb2.ListTaskUsageRequest(
            since=since, until=until, cursor=cursor, limit=limit
        )
        usage = await _access(request).list_task_usage(
            authorization, admin_pb2.ListAccountTaskUsageRequest(account_id=account_id, page=page)
        )
        return JSONBody(translate.task_usage_list_json(usage))

    @router.post(
        "/accounts/{account_id}/delete",
        response_model=AccountDeletionOut,
        summary="Delete an account's data, keep its ledger (idempotent; run again to finish)",
    )
    async def delete_account(
        account_id: str, body: AccountDeleteBody, request: Request, authorization: AdminAuth = None
    ) -> Response:
        deletion = await _access(request).delete_account(authorization, account_id, body.reason)
        return JSONBody(translate.deletion_json(deletion))

    @router.get(
        "/accounts/{account_id}/export",
        responses=EXPORT_CONTENT,
        summary="An account's tasks and ledger, as JSON or CSV",
    )
    async def export_account(
        account_id: str,
        request: Request,
        authorization: AdminAuth = None,
        format: ExportFormat = "json",
        part: ExportPart = "tasks",
    ) -> Response:
        items = _access(request).export_account(authorization, account_id)
        return await export_download(items, account_id, format, part)

    @router.get(
        "/tasks/{task_id}",
        response_model=OperatorTaskOut,
        summary="Any account's task, with its account and key",
    )
    async def get_task(task_id: str, request: Request, authorization: AdminAuth = None) -> Response:
        found = await _access(request).get_task(authorization, task_id)
        return JSONBody(translate.operator_task_json(found))

    @router.get(
        "/channels",
        response_model=ChannelListOut,
        summary="Upstream channels' breakers, calls, errors and latency, from every dispatcher",
    )
    async def list_channels(request: Request, authorization: AdminAuth = None) -> Response:
        return JSONBody(
            translate.channels_json(await _access(request).list_channels(authorization))
        )

    @router.get(
        "/margin",
        response_model=MarginOut,
        summary="What the upstreams cost against the credits charged, for a period",
        description="Tasks made in [since, until) (unix seconds; until defaults to now), "
        "grouped by channel, model or account. Cost is each attempt's usage as the upstream "
        "reported it, at its channel's configured `price`; money in millionths of a dollar.",
    )
    async def get_margin(
        request: Request,
        authorization: AdminAuth = None,
        since: Since = 0,
        until: Until = 0,
        group_by: Annotated[str, Query(description="channel | model | account")] = "model",
    ) -> Response:
        report = await _access(request).get_margin(
            authorization, admin_pb2.MarginRequest(since=since, until=until, group_by=group_by)
        )
        return JSONBody(translate.margin_json(report))

    @router.get(
        "/ledger/check",
        response_model=LedgerCheckOut,
        summary="Recompute every balance from the ledger",
    )
    async def check(billing: Billing) -> Response:
        result = await billing.check_ledger()
        return JSONBody(
            {"ok": result.ok, "problems": list(result.problems), "entries": result.entries}
        )

    @router.post(
        "/invites",
        response_model=CreatedInviteOut,
        summary="Issue an invite code for sign-up (SIGNUP_MODE=invite); shown once",
    )
    async def create_invite(body: InviteCreateBody, billing: Billing) -> Response:
        created = await billing.create_invite(body.note, body.expires_at or 0)
        return JSONBody({"code": created.code, "invite": translate.invite_json(created.invite)})

    @router.get("/invites", response_model=InviteListOut, summary="Invite codes, newest first")
    async def list_invites(billing: Billing) -> Response:
        invites = (await billing.list_invites()).invites
        return JSONBody({"data": [translate.invite_json(i) for i in invites]})

    @router.delete("/invites/{invite_id}", response_model=InviteOut, summary="Revoke an invite")
    async def revoke_invite(invite_id: str, billing: Billing) -> Response:
        return JSONBody(translate.invite_json(await billing.revoke_invite(invite_id)))

    @router.post(
        "/accounts/{account_id}/password-reset",
        response_model=ResetLinkOut,
        summary="A one-use password-reset link to hand to the account's person (1 hour)",
        description="Where the platform mails no links (no SMTP_HOST), this is how a "
        "person who forgot their password gets back in. The link is in this answer only.",
    )
    async def reset_link(account_id: str, request: Request, billing: Billing) -> Response:
        issued = await billing.issue_login_token("reset", account_id=account_id)
        path = f"/login?reset={issued.token}"
        return JSONBody(
            {
                "email": issued.email,
                "expires_at": issued.expires_at,
                "url": f"{_access(request).public_url}{path}",
            }
        )

    return router
