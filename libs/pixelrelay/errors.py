"""The one error catalog, shared by every service and both transports.

    ApiError                 raised by domain code; carries an ErrorKind
    └── kind: ErrorKind      stable 5-digit code, type name, HTTP and gRPC status

Codes are grouped by their first digit:
    1xxxx authentication (401, 403)  2xxxx invalid request (400, 413)
    3xxxx credits (402, 409)         4xxxx not found (404)
    5xxxx rate limits, quotas (429)  7xxxx task failures (shown on the task)
    9xxxx platform faults (500, 503)

Over gRPC an ApiError travels as the status code plus trailing metadata
``pixelrelay-error-code`` (and ``-param``), so a caller rebuilds the same ApiError.

Long because ``E`` is the catalog itself, six lines an error; the code around it is short.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from pixelrelay.v1 import common_pb2

__all__ = [
    "ApiError",
    "as_public",
    "ErrorKind",
    "CATALOG",
    "E",
    "error_from_rpc",
    "error_metadata",
    "error_to_detail",
    "error_from_detail",
    "insufficient_credits",
]


@dataclass(frozen=True)
class ErrorKind:
    code: int
    type: str
    http_status: int
    grpc_status: grpc.StatusCode
    description: str


class E:
    """Every error the platform answers with. Add here, and the docs table follows."""

    MISSING_API_KEY = ErrorKind(
        10001,
        "missing_api_key",
        401,
        grpc.StatusCode.UNAUTHENTICATED,
        "No `Authorization: Bearer <key>` header.",
    )
    INVALID_API_KEY = ErrorKind(
        10002,
        "invalid_api_key",
        401,
        grpc.StatusCode.UNAUTHENTICATED,
        "The key is unknown, revoked or expired.",
    )
    INVALID_CREDENTIALS = ErrorKind(
        10008,
        "invalid_credentials",
        401,
        grpc.StatusCode.UNAUTHENTICATED,
        "The email or the password is wrong (the same answer for an email without an account).",
    )
    SESSION_INVALID = ErrorKind(
        10009,
        "invalid_session",
        401,
        grpc.StatusCode.UNAUTHENTICATED,
        "No signed-in session: it ended, expired, or the call used an API key. Sign in again.",
    )
    CSRF_FAILED = ErrorKind(
        10010,
        "csrf_failed",
        403,
        grpc.StatusCode.PERMISSION_DENIED,
        "A state change with the session cookie lacked the session's `X-CSRF-Token`, or "
        "came from another site.",
    )
    SIGNUP_CLOSED = ErrorKind(
        10011,
        "signup_closed",
        403,
        grpc.StatusCode.PERMISSION_DENIED,
        "Self-service sign-up is off on this platform (SIGNUP_MODE=closed): ask its operator.",
    )
    EMAIL_RESET_OFF = ErrorKind(
        10012,
        "password_reset_by_operator",
        403,
        grpc.StatusCode.FAILED_PRECONDITION,
        "This platform sends no email: a password reset is done by its operator.",
    )
    INVALID_JSON = ErrorKind(
        20001,
        "invalid_json",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The body is not a JSON object.",
    )
    MISSING_PARAMETER = ErrorKind(
        20002,
        "missing_parameter",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "A required parameter is missing.",
    )
    INVALID_PARAMETER = ErrorKind(
        20003,
        "invalid_parameter",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "A parameter has a wrong type or value.",
    )
    UNKNOWN_PARAMETER = ErrorKind(
        20004,
        "unknown_parameter",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The body has a field the API does not define.",
    )
    UNSUPPORTED_PARAMETER = ErrorKind(
        20005,
        "unsupported_parameter",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The field exists, but not for this model variant.",
    )
    BODY_TOO_LARGE = ErrorKind(
        20006,
        "body_too_large",
        413,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The request body exceeds the size limit.",
    )
    INVALID_IMAGE = ErrorKind(
        20007,
        "invalid_image",
        422,
        grpc.StatusCode.INVALID_ARGUMENT,
        "A reference image or mask is not a usable PNG, JPEG or WebP image.",
    )
    IMAGE_FETCH_FAILED = ErrorKind(
        20008,
        "image_fetch_failed",
        422,
        grpc.StatusCode.INVALID_ARGUMENT,
        "A reference URL could not be downloaded.",
    )
    IMAGE_URL_FORBIDDEN = ErrorKind(
        20009,
        "image_url_forbidden",
        422,
        grpc.StatusCode.INVALID_ARGUMENT,
        "A reference URL is not a public http(s) address.",
    )
    IMAGE_TOO_LARGE = ErrorKind(
        20010,
        "image_too_large",
        413,
        grpc.StatusCode.INVALID_ARGUMENT,
        "A reference image or upload exceeds the size or pixel limit.",
    )
    HEADERS_TOO_LARGE = ErrorKind(
        20011,
        "headers_too_large",
        431,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The request's headers exceed the size or count limit.",
    )
    INVALID_MULTIPART = ErrorKind(
        20013,
        "invalid_multipart",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The body is not well-formed multipart/form-data.",
    )
    INVALID_HTTP = ErrorKind(
        20014,
        "invalid_http",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The request is not valid HTTP/1.1.",
    )
    IDEMPOTENCY_KEY_REUSED = ErrorKind(
        20015,
        "idempotency_key_reused",
        422,
        grpc.StatusCode.INVALID_ARGUMENT,
        "This Idempotency-Key was used with a different request in the last 24 hours.",
    )
    IDEMPOTENCY_IN_FLIGHT = ErrorKind(
        20016,
        "idempotency_key_in_flight",
        409,
        grpc.StatusCode.ABORTED,
        "A request with this Idempotency-Key is still being processed; retry shortly.",
    )
    REQUEST_TIMEOUT = ErrorKind(
        20012,
        "request_timeout",
        408,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "The request's headers or body did not arrive in time.",
    )
    EMAIL_TAKEN = ErrorKind(
        20017,
        "email_taken",
        409,
        grpc.StatusCode.ALREADY_EXISTS,
        "An account with this email exists: sign in, or reset its password.",
    )
    WEAK_PASSWORD = ErrorKind(
        20018,
        "weak_password",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The new password is too short, too long, too common or the email itself.",
    )
    INVALID_INVITE = ErrorKind(
        20019,
        "invalid_invite",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The invite code is unknown, used, revoked or expired (SIGNUP_MODE=invite).",
    )
    INVALID_LINK = ErrorKind(
        20020,
        "invalid_link",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The verification or reset link is unknown, used or expired: ask for a new one.",
    )
    WRONG_PASSWORD = ErrorKind(
        20021,
        "wrong_password",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The current password given with a password change is wrong (the session stays).",
    )
    INSUFFICIENT_CREDITS = ErrorKind(
        30001,
        "insufficient_credits",
        402,
        grpc.StatusCode.FAILED_PRECONDITION,
        "The account's balance does not cover the price.",
    )
    HOLD_CONFLICT = ErrorKind(
        30002,
        "hold_conflict",
        409,
        grpc.StatusCode.ALREADY_EXISTS,
        "A retry of a hold operation disagrees with the original.",
    )
    INVALID_AMOUNT = ErrorKind(
        30003,
        "invalid_amount",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "A credit amount is zero, negative or too large.",
    )
    KEY_CREDIT_LIMIT = ErrorKind(
        30004,
        "key_credit_limit",
        402,
        grpc.StatusCode.FAILED_PRECONDITION,
        "The API key's credit limit does not cover the price.",
    )
    TASK_NOT_FOUND = ErrorKind(
        40001,
        "task_not_found",
        404,
        grpc.StatusCode.NOT_FOUND,
        "No task with this id belongs to the caller.",
    )
    ACCOUNT_NOT_FOUND = ErrorKind(
        40002, "account_not_found", 404, grpc.StatusCode.NOT_FOUND, "No such account."
    )
    ACCOUNT_DELETED = ErrorKind(
        40008,
        "account_deleted",
        410,
        grpc.StatusCode.FAILED_PRECONDITION,
        "The account was deleted: it takes no new work, keys or credits.",
    )
    HOLD_NOT_FOUND = ErrorKind(
        40003, "hold_not_found", 404, grpc.StatusCode.NOT_FOUND, "No hold for this task."
    )
    NOT_FOUND = ErrorKind(40004, "not_found", 404, grpc.StatusCode.NOT_FOUND, "No such route.")
    METHOD_NOT_ALLOWED = ErrorKind(
        40005,
        "method_not_allowed",
        405,
        grpc.StatusCode.UNIMPLEMENTED,
        "The route exists, but not for this HTTP method.",
    )
    UPLOAD_NOT_FOUND = ErrorKind(
        40006,
        "upload_not_found",
        404,
        grpc.StatusCode.NOT_FOUND,
        "No such upload belongs to the caller.",
    )
    KEY_NOT_FOUND = ErrorKind(
        40007,
        "key_not_found",
        404,
        grpc.StatusCode.NOT_FOUND,
        "No such API key belongs to the caller.",
    )
    ADMIN_TOKEN_INVALID = ErrorKind(
        10003,
        "invalid_admin_token",
        401,
        grpc.StatusCode.UNAUTHENTICATED,
        "The admin API needs `Authorization: Bearer <ADMIN_TOKEN>`.",
    )
    INSUFFICIENT_SCOPE = ErrorKind(
        10006,
        "insufficient_scope",
        403,
        grpc.StatusCode.PERMISSION_DENIED,
        "The API key lacks the scope this operation needs, or asks for more than it has.",
    )
    SERVICE_CREDENTIAL_INVALID = ErrorKind(
        10004,
        "invalid_service_credential",
        401,
        grpc.StatusCode.UNAUTHENTICATED,
        "An internal call without a credential its server trusts (TRUSTED_CALLERS).",
    )
    CALLER_NOT_ALLOWED = ErrorKind(
        10005,
        "caller_not_allowed",
        403,
        grpc.StatusCode.PERMISSION_DENIED,
        "The calling service may not call this operation.",
    )
    TASK_CAPABILITY_INVALID = ErrorKind(
        10007,
        "invalid_task_capability",
        403,
        grpc.StatusCode.PERMISSION_DENIED,
        "An internal call for a task without the gateway's capability for that task.",
    )
    RESULTS_ALREADY_STORED = ErrorKind(
        40009,
        "results_already_stored",
        409,
        grpc.StatusCode.ALREADY_EXISTS,
        "The task's images are already stored; a task's results are never written again.",
    )
    RATE_LIMITED = ErrorKind(
        50001,
        "rate_limited",
        429,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "Too many requests; retry after the `Retry-After` header.",
    )
    AUTH_THROTTLED = ErrorKind(
        50002,
        "auth_throttled",
        429,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "Too many failed authentications from this address; retry after `Retry-After`.",
    )
    TOO_MANY_CONNECTIONS = ErrorKind(
        50005,
        "too_many_connections",
        429,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "This address holds the most connections one client may (`MAX_CONNECTIONS_PER_CLIENT`).",
    )
    UPLOAD_COUNT_QUOTA = ErrorKind(
        50003,
        "upload_count_quota",
        429,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "The account keeps its most uploads (`UPLOAD_QUOTA_COUNT`); retry after `Retry-After`, "
        "when the oldest is deleted.",
    )
    UPLOAD_STORAGE_QUOTA = ErrorKind(
        50004,
        "upload_storage_quota",
        413,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "The account's uploads would exceed their storage quota (`UPLOAD_QUOTA_BYTES`).",
    )
    UPSTREAM_FAILED = ErrorKind(
        70001,
        "upstream_failed",
        502,
        grpc.StatusCode.UNAVAILABLE,
        "Every upstream channel failed; credits were released.",
    )
    UPSTREAM_REJECTED = ErrorKind(
        70002,
        "upstream_rejected",
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The upstream refused the request (e.g. moderation).",
    )
    UPSTREAM_BAD_OUTPUT = ErrorKind(
        70003,
        "upstream_bad_output",
        502,
        grpc.StatusCode.DATA_LOSS,
        "The upstream answered with no valid image.",
    )
    STORAGE_FAILED = ErrorKind(
        70004,
        "storage_failed",
        502,
        grpc.StatusCode.UNAVAILABLE,
        "The images could not be stored; credits were released.",
    )
    TASK_EXPIRED = ErrorKind(
        70005,
        "task_expired",
        504,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "The task was not finished before its deadline; credits were released.",
    )
    JOB_ABANDONED = ErrorKind(
        70006,
        "job_abandoned",
        502,
        grpc.StatusCode.ABORTED,
        "The job failed on every delivery; credits were released.",
    )
    INTERNAL = ErrorKind(
        90001,
        "internal_error",
        500,
        grpc.StatusCode.INTERNAL,
        "A bug on our side; the request id helps us find it.",
    )
    UNAVAILABLE = ErrorKind(
        90002,
        "service_unavailable",
        503,
        grpc.StatusCode.UNAVAILABLE,
        "A platform component is down; nothing was charged or queued.",
    )
    TASK_STILL_PROCESSING = ErrorKind(
        90003,
        "task_still_processing",
        504,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "A synchronous call waited `SYNC_WAIT_SECONDS` and its task is still processing; "
        "it goes on: poll it by the id given.",
    )


log = logging.getLogger(__name__)

_KINDS = [kind for kind in vars(E).values() if isinstance(kind, ErrorKind)]
CATALOG: dict[int, ErrorKind] = {kind.code: kind for kind in _KINDS}
# A code is a client's contract: two kinds sharing one would answer each other's.
assert len(CATALOG) == len(_KINDS), "two errors share a code"

_CODE_KEY = "pixelrelay-error-code"
_PARAM_KEY = "pixelrelay-error-param"


class ApiError(Exception):
    """A failure with a stable code, safe to show to the client (no secrets in ``message``)."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str | None = None,
        *,
        param: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message or kind.description)
        self.kind = kind
        self.message = message or kind.description
        self.param = param
        # whole seconds, at least 1, as HTTP's Retry-After wants them (429, 503)
        self.retry_after = None if retry_after is None else max(1, math.ceil(retry_after))

    def __repr__(self) -> str:
        return f"ApiError({self.kind.code} {self.kind.type}: {self.message})"


def insufficient_credits(price: int, balance: int) -> ApiError:
    """The 402 of a request the balance cannot pay: both figures, wherever it is raised
    (the gateway's check before references are fetched, billing's hold), so a client can
    show what is missing."""
    return ApiError(
        E.INSUFFICIENT_CREDITS, f"this request costs {price} credits; the balance is {balance}"
    )


def as_public(err: ApiError) -> ApiError:
    """What a public client may see of an error. An internal call refused for its
    credential is a misconfigured platform (SERVICE_CREDENTIAL, TRUSTED_CALLERS): our
    fault, answered as 90001, never as a 401 the client would blame on its API key."""
    if err.kind in (E.SERVICE_CREDENTIAL_INVALID, E.CALLER_NOT_ALLOWED):
        log.error("an internal call was refused: %s", err.message)
        return ApiError(E.INTERNAL)
    return err


def error_metadata(err: ApiError) -> tuple[tuple[str, str], ...]:
    meta: tuple[tuple[str, str], ...] = ((_CODE_KEY, str(err.kind.code)),)
    if err.param:
        meta += ((_PARAM_KEY, err.param),)
    if err.retry_after is not None:
        meta += (("retry-after", f"{err.retry_after:g}"),)
    return meta


def error_from_rpc(exc: grpc.aio.AioRpcError) -> ApiError:
    """Rebuild the ApiError a peer raised; transport failures become 90002.

    Our servers attach an error code to every failure, a bug's included (grpc_server.py),
    so a failure without one never came from the peer's code: the peer died or the stream
    was reset mid-call (UNAVAILABLE, but also INTERNAL "RST_STREAM", CANCELLED, UNKNOWN).
    The caller may retry it, as any 90002; a soak that killed billing once saw 51 submits
    answered 500 for it."""
    meta = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
    kind = CATALOG.get(int(meta.get(_CODE_KEY, "0")))
    if kind is None:
        return ApiError(E.UNAVAILABLE)
    retry_after = meta.get("retry-after")
    return ApiError(
        kind,
        exc.details() or None,
        param=meta.get(_PARAM_KEY),
        retry_after=float(retry_after) if retry_after else None,
    )


@contextlib.contextmanager
def peer_errors() -> Iterator[None]:
    """Around a call to another service: its failure raises the ApiError it raised."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc) from exc


def error_to_detail(err: ApiError) -> common_pb2.ErrorDetail:
    """An ApiError as one item of a batch response (a whole call uses metadata instead)."""
    return common_pb2.ErrorDetail(code=err.kind.code, message=err.message, param=err.param or "")


def error_from_detail(detail: common_pb2.ErrorDetail) -> ApiError:
    return ApiError(
        CATALOG.get(detail.code, E.INTERNAL), detail.message, param=detail.param or None
    )
