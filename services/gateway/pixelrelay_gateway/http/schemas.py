"""REST shapes (reAPI-compatible), used for request parsing and the OpenAPI spec.

They only fix JSON types; value rules live in validation.py, shared with gRPC.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from pixelrelay import catalog
from pixelrelay.image_formats import FORMATS
from pixelrelay.limits import MAX_CREDITS, MAX_RATE_LIMIT, MAX_UNIX_SECONDS
from pixelrelay.scopes import ALL as SCOPES
from pixelrelay_gateway.core.sizes import RATIOS, RESOLUTIONS
from pixelrelay_gateway.core.validation import (
    BACKGROUNDS,
    MAX_PROMPT_CHARS,
    MAX_REFERENCE_IMAGES,
    MODERATIONS,
    QUALITIES,
)

# A period's bounds on a list (query parameters), as every list with a period takes them.
Since = Annotated[
    int, Query(ge=0, le=MAX_UNIX_SECONDS, description="unix seconds, inclusive; 0 = any")
]
Until = Annotated[
    int, Query(ge=0, le=MAX_UNIX_SECONDS, description="unix seconds, exclusive; 0 = any")
]

Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]

# The spec shows the catalog the gateway serves (the packaged one in docs/openapi.json).
try:
    MODELS = catalog.load()
except catalog.CatalogError:  # the gateway's main() refuses to start, listing why
    MODELS = catalog.load(catalog.DEFAULT_CATALOG)
MODEL_NAMES: list[JsonValue] = [*MODELS.names(), *MODELS.aliases]


def documented(description: str, **schema: Any) -> Any:
    """A field whose allowed values are shown in the spec but enforced by validation.py
    (one rulebook for REST and gRPC, with our error codes)."""
    return Field(None, description=description, json_schema_extra=schema)


class GenerationBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(
        description="a model or an alias of one (GET /api/v1/models lists them with what "
        "each takes and costs): gpt-image-2 (basic) or gpt-image-2-official (stable)",
        json_schema_extra={"enum": MODEL_NAMES},
    )
    prompt: str | None = documented(
        f"1-{MAX_PROMPT_CHARS} characters; optional when image_urls is given",
        maxLength=MAX_PROMPT_CHARS,
    )
    size: str | None = documented(
        "auto, a ratio, or WIDTHxHEIGHT (stable only); default 1:1",
        anyOf=[{"enum": ["auto", *RATIOS]}, {"pattern": r"^\d{2,5}x\d{2,5}$"}],
    )
    resolution: str | None = documented(
        "default 1k; 4k only with wide ratios", enum=list(RESOLUTIONS)
    )
    n: Int32 | None = documented(
        "images per task, up to the model's max_n: 1 on basic, 1-4 on stable",
        minimum=1,
        maximum=max(m.capabilities.max_n for m in MODELS.models.values()),
    )
    image_urls: list[str] | None = documented(
        f"up to {MAX_REFERENCE_IMAGES} reference image URLs (http/https, or an upload's url)",
        maxItems=MAX_REFERENCE_IMAGES,
    )
    quality: str | None = documented("stable only", enum=list(QUALITIES))
    background: str | None = documented(
        "stable only; transparent needs png or webp", enum=list(BACKGROUNDS)
    )
    moderation: str | None = documented("stable only", enum=list(MODERATIONS))
    mask_url: str | None = documented(
        "stable only: PNG with alpha, the first image's size (alpha 0 = edit here)"
    )
    output_format: str | None = documented("stable only; default png", enum=list(FORMATS))
    output_compression: Int32 | None = documented("stable only, jpeg/webp", minimum=0, maximum=100)


class SubmitOut(BaseModel):
    id: str
    model: str
    status: str
    created_at: int


class ImageOut(BaseModel):
    url: str
    width: int
    height: int
    format: str
    content_type: str
    bytes: int
    sha256: str


class OutputOut(BaseModel):
    image_urls: list[str]
    images: list[ImageOut]


class TaskErrorOut(BaseModel):
    code: int
    type: str
    message: str


class ParamsOut(BaseModel):
    size: str
    resolution: str
    width: int
    height: int
    n: int
    quality: str | None = None
    background: str | None = None
    moderation: str | None = None
    output_format: str
    output_compression: int | None = None
    image_urls: list[str] | None = None
    mask_url: str | None = None


class CreditsOut(BaseModel):
    reserved: int
    charged: int = Field(description="final once settled is true")
    settled: bool = Field(
        description="billing has settled the task's credits: false until its settled event "
        "is recorded, milliseconds after the task completes or fails"
    )
    price_id: str = Field(description="the price-list row the task was charged under")


class TimingsOut(BaseModel):
    queued_ms: int | None = Field(None, description="accepted → a dispatcher took it")
    processing_ms: int | None = Field(None, description="taken → result visible")
    total_ms: int | None = Field(None, description="accepted → result visible")
    upstream_ms: int | None = Field(None, description="the successful upstream call")


class AttemptOut(BaseModel):
    channel: str
    outcome: str = Field(
        description="ok; upstream_unavailable (refused, 429, 5xx), upstream_auth_failed (the "
        "channel's key refused), upstream_no_answer (timeout, cut), upstream_bad_output, "
        "upstream_rejected (the request refused: no failover); or skipped_open / skipped_busy "
        "(the channel's breaker open, or full)"
    )
    latency_ms: int


class TaskOut(BaseModel):
    id: str
    model: str
    status: str = Field(description="processing | completed | failed")
    created_at: int
    output: OutputOut | None = None
    error: TaskErrorOut | None = None
    params: ParamsOut
    credits: CreditsOut
    expires_at: int | None = Field(None, description="when the image URLs stop working")
    expired_at: int | None = Field(
        None,
        description="when the images and inputs were deleted (RESULT_TTL_DAYS after they "
        "were stored); output.image_urls is empty from then on",
    )
    attempts: list[AttemptOut] = Field(description="each upstream channel tried, in order")
    timings: TimingsOut


class TaskListOut(BaseModel):
    data: list[TaskOut]
    next_cursor: str | None


class EstimateOut(BaseModel):
    model: str
    credits: int
    unit_credits: int
    params: ParamsOut


class UploadOut(BaseModel):
    id: str
    url: str = Field(description="use in image_urls or mask_url")
    format: str
    width: int
    height: int
    bytes: int
    expires_at: int = Field(
        description="when the URL stops working; the upload is deleted UPLOAD_TTL_DAYS after it "
        "was made"
    )


class BalanceOut(BaseModel):
    account_id: str
    balance: int
    held: int


class ErrorBody(BaseModel):
    code: int
    type: str
    message: str
    param: str | None
    request_id: str


class ErrorOut(BaseModel):
    error: ErrorBody


class UsageEntryOut(BaseModel):
    id: int
    created_at: int
    kind: str = Field(
        description="signup_grant, reserve, capture, refund (what a capture gave back), "
        "release (a failed task: all of it back), top_up, adjustment"
    )
    book: str = Field(description="available or held")
    amount: int = Field(description="signed credits")
    task_id: str | None
    memo: str | None


class UsageOut(BaseModel):
    data: list[UsageEntryOut]
    next_cursor: str | None


class TaskUsageOut(BaseModel):
    task_id: str
    created_at: int
    model: str
    size: str
    resolution: str
    n: int = Field(description="images asked")
    quality: str | None = Field(description="stable only")
    reserved: int = Field(description="credits held at submit")
    charged: int = Field(description="credits captured for the images delivered")
    refunded: int = Field(
        description="credits given back: the rest of a capture, all of a failed task's"
    )
    status: str = Field(description="processing | completed | failed")
    price_id: str = Field(description="the price row charged (or held, until charged)")


class TaskUsageListOut(BaseModel):
    data: list[TaskUsageOut]
    next_cursor: str | None


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    last4: str
    created_at: int
    revoked_at: int | None
    expires_at: int | None
    credit_limit: int | None
    rate_limit: int | None = Field(description="requests per minute")
    spent: int = Field(description="credits held or charged through this key")
    scopes: list[str] = Field(description="what the key may do")
    parent_id: str | None = Field(description="the key that created it; null: an operator")


class KeyListOut(BaseModel):
    data: list[KeyOut]


class CreatedKeyOut(BaseModel):
    api_key: str = Field(description="shown once; store it now")
    key: KeyOut


class KeyCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field("", max_length=100)
    expires_at: int | None = Field(
        None, ge=0, le=MAX_UNIX_SECONDS, description="unix seconds; none = never"
    )
    credit_limit: int | None = Field(None, ge=1, le=MAX_CREDITS)
    rate_limit: int | None = Field(None, ge=1, le=MAX_RATE_LIMIT, description="requests per minute")
    scopes: list[str] | None = Field(
        None,
        description="what the new key may do; none: the creating key's scopes "
        "(a key can grant only scopes it has)",
        json_schema_extra={"items": {"enum": list(SCOPES)}},
    )


class AccountCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    grant: int | None = Field(
        None, ge=0, le=MAX_CREDITS, description="credits; default the signup grant"
    )


class MoveCreditsBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    amount: int = Field(
        description="top-ups: positive; adjustments: either sign",
        ge=-MAX_CREDITS,
        le=MAX_CREDITS,
    )
    reason: str = Field(min_length=1, max_length=500)


class AccountOut(BaseModel):
    id: str
    name: str
    balance: int
    held: int
    created_at: int = Field(description="unix seconds")
    deleted_at: int | None = Field(None, description="unix seconds; null unless deleted")
    deleted_reason: str | None = None


class AccountListOut(BaseModel):
    data: list[AccountOut] = Field(description="newest first, deleted accounts included")
    next_cursor: str | None


class AccountDeleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(min_length=1, max_length=500, description="kept on the account")


class AccountDeletionOut(BaseModel):
    account: AccountOut
    keys_revoked: int
    holds_released: int = Field(description="pending tasks canceled, their credits returned")
    objects_deleted: int = Field(description="uploads, results and inputs deleted")
    tasks_deleted: int
    uploads_deleted: int


class LedgerCheckOut(BaseModel):
    ok: bool
    problems: list[str]
    entries: int


class InviteCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    note: str = Field("", max_length=200, description="who it is for")
    expires_at: int | None = Field(
        None, ge=0, le=MAX_UNIX_SECONDS, description="unix seconds; none = never"
    )


class InviteOut(BaseModel):
    id: str
    note: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    used_at: int | None
    used_by: str | None = Field(description="the account it created")


class CreatedInviteOut(BaseModel):
    code: str = Field(description="shown once: give it to the person signing up")
    invite: InviteOut


class InviteListOut(BaseModel):
    data: list[InviteOut]


class ResetLinkOut(BaseModel):
    email: str
    expires_at: int
    url: str = Field(description="PUBLIC_URL's /login?reset=…, or a path without PUBLIC_URL")


class AttemptUsageOut(BaseModel):
    input_text_tokens: int
    input_image_tokens: int
    output_tokens: int


class OperatorAttemptOut(AttemptOut):
    usage: AttemptUsageOut | None = Field(description="what the upstream reported (an ok one)")
    cost_micros: int | None = Field(
        description="its usage at the channel's price, millionths of a dollar; null: the "
        "channel has no price"
    )


class OperatorTaskOut(TaskOut):
    account_id: str = Field(description="the account the task belongs to")
    key_id: str = Field(description="the key that submitted it")
    attempts: list[OperatorAttemptOut]  # type: ignore[assignment]


class ChannelStatusOut(BaseModel):
    name: str
    breaker: str = Field(
        description="closed | half_open | open: the worst of the dispatchers' (each keeps its own)"
    )
    replicas: int = Field(description="dispatchers that reported the channel")
    replicas_not_closed: int = Field(description="of which with the breaker open or half-open")
    requests: int = Field(description="upstream calls in the window")
    errors: int
    error_rate: float = Field(description="errors / requests; 0 without requests")
    errors_by_class: dict[str, int]
    p50_ms: int | None = Field(
        description="latency of the calls that returned images (within 10 %); null without any"
    )
    p95_ms: int | None


class ChannelListOut(BaseModel):
    data: list[ChannelStatusOut] = Field(description="by name")
    replicas: int = Field(description="dispatchers heard from lately (each reports every few s)")
    window_seconds: int = Field(description="the counts are of the calls in this last window")


class ModelCapabilitiesOut(BaseModel):
    max_n: int = Field(description="images per task")
    sizes: str = Field(description="ratios (a ratio and a resolution) or any (also WIDTHxHEIGHT)")
    ratios: list[str] | None = Field(description="the ratios it makes; null: every ratio")
    resolutions: list[str]
    qualities: list[str] = Field(description="empty: quality is not taken")
    backgrounds: list[str] = Field(description="empty: background is not taken")
    moderations: list[str] = Field(description="empty: moderation is not taken")
    formats: list[str] = Field(description="one: output_format is not taken")
    output_compression: bool
    masks: bool
    max_references: int
    partial_images: bool = Field(description="previews while streaming (/v1)")


class ModelPriceOut(BaseModel):
    id: str = Field(description="the price_id of a task charged at it")
    credits: int = Field(description="per delivered image (1 credit = $0.001)")
    resolutions: list[str] | None = Field(description="null: any")
    qualities: list[str] | None = Field(description="null: any")


class ModelOut(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str
    description: str
    aliases: list[str] = Field(description="other names a request may use for it")
    capabilities: ModelCapabilitiesOut
    auto_quoted_as: str | None = Field(
        description="quality auto is held (quoted) at this tier and charged at the one used"
    )
    prices: list[ModelPriceOut] = Field(description="the first row that matches prices a request")


class ModelListOut(BaseModel):
    object: str = "list"
    data: list[ModelOut]


class MarginLineOut(BaseModel):
    key: str = Field(description="the channel, model or account")
    tasks: int = Field(description="completed tasks (by channel: the one that delivered)")
    credits_charged: int
    revenue_micros: int = Field(description="credits_charged x 1,000: millionths of a dollar")
    cost_micros: int = Field(
        description="the attempts' reported usage at their channels' prices, millionths of a dollar"
    )
    margin_micros: int = Field(description="revenue_micros - cost_micros")
    unpriced_tasks: int = Field(
        description="delivered by a channel without a price: their cost is unknown (0 here)"
    )


class MarginOut(BaseModel):
    group_by: str
    since: int
    until: int
    data: list[MarginLineOut]
    total: MarginLineOut
