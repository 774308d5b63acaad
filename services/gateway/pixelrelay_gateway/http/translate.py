"""proto ↔ REST JSON. The REST API is this translation of PublicApi, nothing more."""

from __future__ import annotations

from typing import Any

from pixelrelay import export
from pixelrelay.errors import ApiError
from pixelrelay.v1 import admin_pb2, billing_pb2, common_pb2, public_api_pb2
from pixelrelay_gateway.core.store import TaskStatus
from pixelrelay_gateway.http.schemas import GenerationBody


def generation_request(
    body: GenerationBody, idempotency_key: str | None = None
) -> public_api_pb2.CreateGenerationRequest:
    request = public_api_pb2.CreateGenerationRequest(**body.model_dump(exclude_none=True))
    if idempotency_key is not None:
        request.idempotency_key = idempotency_key
    return request


def params_json(spec: common_pb2.ImageSpec) -> dict[str, Any]:
    params: dict[str, Any] = {
        "size": spec.size,
        "resolution": spec.resolution,
        "width": spec.width,
        "height": spec.height,
        "n": spec.n,
        "output_format": spec.output_format,
    }
    for name in ("quality", "background", "moderation"):
        if value := getattr(spec, name):
            params[name] = value
    if spec.HasField("output_compression"):
        params["output_compression"] = spec.output_compression
    if spec.image_urls:
        params["image_urls"] = list(spec.image_urls)
    if spec.mask_url:
        params["mask_url"] = spec.mask_url
    return params


def submit_json(task: public_api_pb2.Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "model": task.model,
        "status": task.status,
        "created_at": task.created_at,
    }


def _span(start: int, end: int) -> int | None:
    return end - start if start and end else None


def task_json(task: public_api_pb2.Task) -> dict[str, Any]:
    images = [
        {
            "url": i.url,
            "width": i.width,
            "height": i.height,
            "format": i.format,
            "content_type": i.content_type,
            "bytes": i.bytes,
            "sha256": i.sha256,
        }
        for i in task.images
    ]
    return {
        "id": task.id,
        "model": task.model,
        "status": task.status,
        "created_at": task.created_at,
        "output": {"image_urls": [i["url"] for i in images], "images": images}
        if task.status == TaskStatus.COMPLETED
        else None,
        "error": {"code": task.error.code, "type": task.error.type, "message": task.error.message}
        if task.HasField("error")
        else None,
        "params": params_json(task.spec),
        "credits": {
            "reserved": task.credits_reserved,
            "charged": task.credits_charged,
            # False until billing's settled event is recorded (milliseconds after the
            # task completes or fails); charged is final once true.
            "settled": task.credits_settled,
            "price_id": task.price_id,
        },
        # Until when the URLs work; once the images are deleted, when that was.
        "expires_at": min((i.expires_at for i in task.images), default=None)
        or _optional(task.expired_at),
        "expired_at": _optional(task.expired_at),
        "attempts": [
            {"channel": a.channel, "outcome": a.outcome, "latency_ms": a.latency_ms}
            for a in task.attempts
        ],
        "timings": {
            "queued_ms": _span(task.created_at_ms, task.started_at_ms),
            "processing_ms": _span(task.started_at_ms, task.finished_at_ms),
            "total_ms": _span(task.created_at_ms, task.finished_at_ms),
            "upstream_ms": task.upstream_ms or None,
        },
    }


def task_list_json(page: public_api_pb2.ListTasksResponse) -> dict[str, Any]:
    return {"data": [task_json(t) for t in page.tasks], "next_cursor": page.next_cursor or None}


def estimate_json(estimate: public_api_pb2.Estimate) -> dict[str, Any]:
    return {
        "model": estimate.model,
        "credits": estimate.credits,
        "unit_credits": estimate.unit_credits,
        "params": params_json(estimate.spec),
    }


def upload_json(upload: public_api_pb2.Upload) -> dict[str, Any]:
    return {
        "id": upload.id,
        "url": upload.url,
        "format": upload.format,
        "width": upload.width,
        "height": upload.height,
        "bytes": upload.bytes,
        "expires_at": upload.expires_at,
    }


def _optional(seconds: int) -> int | None:
    return seconds or None


def key_json(key: billing_pb2.ApiKeyInfo) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "last4": key.last4,
        "created_at": key.created_at,
        "revoked_at": _optional(key.revoked_at),
        "expires_at": _optional(key.expires_at),
        "credit_limit": key.credit_limit if key.HasField("credit_limit") else None,
        "rate_limit": key.rate_limit if key.HasField("rate_limit") else None,
        "spent": key.spent,
        "scopes": list(key.scopes),
        "parent_id": key.parent_id or None,
    }


def key_list_json(keys: billing_pb2.ListApiKeysResponse) -> dict[str, Any]:
    return {"data": [key_json(k) for k in keys.keys]}


def created_key_json(created: billing_pb2.CreatedApiKey) -> dict[str, Any]:
    return {"api_key": created.api_key, "key": key_json(created.key)}


def entries_json(page: billing_pb2.ListLedgerEntriesResponse) -> dict[str, Any]:
    return {
        "data": [
            {
                "id": e.id,
                "created_at": e.created_at,
                "kind": e.kind,
                "book": e.book,
                "amount": e.amount,
                "task_id": e.task_id or None,
                "memo": e.memo or None,
            }
            for e in page.entries
        ],
        "next_cursor": page.next_cursor or None,
    }


def task_usage_list_json(page: public_api_pb2.ListTaskUsageResponse) -> dict[str, Any]:
    return {
        "data": [
            {
                "task_id": u.task_id,
                "created_at": u.created_at,
                "model": u.model,
                "size": u.size,
                "resolution": u.resolution,
                "n": u.n,
                "quality": u.quality or None,
                "reserved": u.reserved,
                "charged": u.charged,
                "refunded": u.refunded,
                "status": u.status,
                "price_id": u.price_id,
            }
            for u in page.tasks
        ],
        "next_cursor": page.next_cursor or None,
    }


def account_json(account: billing_pb2.Account) -> dict[str, Any]:
    return export.account_json(account)  # one shape, in exports too


def account_list_json(page: billing_pb2.ListAccountsResponse) -> dict[str, Any]:
    return {
        "data": [account_json(a) for a in page.accounts],
        "next_cursor": page.next_cursor or None,
    }


def deletion_json(deletion: admin_pb2.AccountDeletion) -> dict[str, Any]:
    return {
        "account": account_json(deletion.account),
        "keys_revoked": deletion.keys_revoked,
        "holds_released": deletion.holds_released,
        "objects_deleted": deletion.objects_deleted,
        "tasks_deleted": deletion.tasks_deleted,
        "uploads_deleted": deletion.uploads_deleted,
    }


def operator_task_json(found: admin_pb2.OperatorTask) -> dict[str, Any]:
    """The customer's task, with its owner and what each attempt cost (never shown to
    customers)."""
    return {
        **task_json(found.task),
        "account_id": found.account_id,
        "key_id": found.key_id,
        "attempts": [
            {
                "channel": a.channel,
                "outcome": a.outcome,
                "latency_ms": a.latency_ms,
                "usage": {
                    "input_text_tokens": a.usage.input_text_tokens,
                    "input_image_tokens": a.usage.input_image_tokens,
                    "output_tokens": a.usage.output_tokens,
                }
                if a.HasField("usage")
                else None,
                "cost_micros": a.cost_micros if a.priced else None,
            }
            for a in found.task.attempts
        ],
    }


def channels_json(health: admin_pb2.ListChannelsResponse) -> dict[str, Any]:
    return {
        "data": [
            {
                "name": c.name,
                "breaker": c.breaker,
                "replicas": c.replicas,
                "replicas_not_closed": c.replicas_not_closed,
                "requests": c.requests,
                "errors": c.errors,
                "error_rate": round(c.error_rate, 4),
                "errors_by_class": dict(sorted(c.errors_by_class.items())),
                "p50_ms": c.p50_ms or None,
                "p95_ms": c.p95_ms or None,
            }
            for c in health.channels
        ],
        "replicas": health.replicas,
        "window_seconds": health.window_seconds,
    }


def balance_json(balance: public_api_pb2.AccountBalance) -> dict[str, Any]:
    return {"account_id": balance.account_id, "balance": balance.balance, "held": balance.held}


def error_json(err: ApiError, request_id: str) -> dict[str, Any]:
    """The error envelope, for every answer that is an error (HTTP-level ones included)."""
    return {
        "error": {
            "code": err.kind.code,
            "type": err.kind.type,
            "message": err.message,
            "param": err.param,
            "request_id": request_id,
        }
    }


def invite_json(invite: billing_pb2.InviteInfo) -> dict[str, Any]:
    return {
        "id": invite.id,
        "note": invite.note,
        "created_at": invite.created_at,
        "expires_at": invite.expires_at or None,
        "revoked_at": invite.revoked_at or None,
        "used_at": invite.used_at or None,
        "used_by": invite.used_by or None,
    }


def model_json(model: public_api_pb2.Model) -> dict[str, Any]:
    caps = model.capabilities
    return {
        "id": model.id,
        "object": "model",  # OpenAI's list shape, which /v1/models answers too
        "created": model.created,
        "owned_by": model.owned_by,
        "description": model.description,
        "aliases": list(model.aliases),
        "capabilities": {
            "max_n": caps.max_n,
            "sizes": caps.sizes,
            "ratios": list(caps.ratios) or None,
            "resolutions": list(caps.resolutions),
            "qualities": list(caps.qualities),
            "backgrounds": list(caps.backgrounds),
            "moderations": list(caps.moderations),
            "formats": list(caps.formats),
            "output_compression": caps.output_compression,
            "masks": caps.masks,
            "max_references": caps.max_references,
            "partial_images": caps.partial_images,
        },
        "auto_quoted_as": model.auto_quoted_as or None,
        "prices": [
            {
                "id": p.id,
                "credits": p.credits,
                "resolutions": list(p.resolutions) or None,
                "qualities": list(p.qualities) or None,
            }
            for p in model.prices
        ],
    }


def model_list_json(served: public_api_pb2.ListModelsResponse) -> dict[str, Any]:
    return {"object": "list", "data": [model_json(m) for m in served.models]}


def margin_line_json(line: admin_pb2.MarginLine) -> dict[str, Any]:
    return {
        "key": line.key,
        "tasks": line.tasks,
        "credits_charged": line.credits_charged,
        "revenue_micros": line.revenue_micros,
        "cost_micros": line.cost_micros,
        "margin_micros": line.margin_micros,
        "unpriced_tasks": line.unpriced_tasks,
    }


def margin_json(report: admin_pb2.MarginReport) -> dict[str, Any]:
    return {
        "group_by": report.group_by,
        "since": report.since,
        "until": report.until,
        "data": [margin_line_json(line) for line in report.lines],
        "total": margin_line_json(report.total),
    }
