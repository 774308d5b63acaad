"""Writes docs/api.md and docs/openapi.json from the gateway's served OpenAPI spec.

`python scripts/gen_api_docs.py` rewrites them; `--check` fails if they are stale
(the test suite runs the check).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

from pixelrelay import catalog
from pixelrelay.catalog import ModelSpec
from pixelrelay.errors import CATALOG
from pixelrelay_gateway.core.api import PublicApi
from pixelrelay_gateway.core.authenticator import Authenticator
from pixelrelay_gateway.core.sessions import Sessions
from pixelrelay_gateway.core.sizes import PIXELS, RATIOS, RESOLUTIONS
from pixelrelay_gateway.http.app import create_app
from pixelrelay_gateway.inputs.images import MAX_PIXELS
from pixelrelay_gateway.settings import GatewaySettings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def openapi_spec() -> dict[str, Any]:
    # Building the spec never calls the API or the sessions (present: their routes are in)
    return create_app(
        cast(PublicApi, None), cast(Authenticator, None), sessions=cast(Sessions, object())
    ).openapi()


def _schema_name(ref: dict[str, Any]) -> str:
    return str(ref.get("$ref", "")).rsplit("/", 1)[-1]


def _limits() -> list[str]:
    """The refusals a client can meet before its request does any work, with the
    gateway's default limits (operators may change them: docs/operations.md)."""
    g = GatewaySettings.model_fields
    mib = 1024 * 1024

    def default(name: str) -> Any:
        return g[name].default

    rows = [
        (
            "request headers",
            f"{default('max_header_bytes') // 1024} KiB, {default('max_headers')} headers",
            "431 (20011)",
        ),
        ("headers arriving", f"within {default('header_timeout'):g} s", "408 (20012)"),
        ("connections per gateway", f"{default('max_connections')}", "503 (90002)"),
        ("JSON body", f"{default('max_body_bytes') // mib} MiB", "413 (20006)"),
        (
            "an upload or reference image",
            f"{default('max_image_bytes') // mib} MiB, "
            f"{MAX_PIXELS:,} pixels (read from the header, before decoding)",
            "413 (20010)",
        ),
        (
            "reference downloads",
            f"{default('fetch_per_account')} at once per account, "
            f"{default('fetch_total_timeout'):g} s for all of a request's",
            "422 (20008)",
        ),
        (
            "credits",
            "checked for the cheapest possible price before any reference is fetched",
            "402 (30001)",
        ),
        ("requests per key", "the key's `rate_limit` per minute", "429 (50001)"),
        (
            "uploads kept per account",
            f"{default('upload_quota_count')} uploads, "
            f"{default('upload_quota_bytes') // mib} MiB (until each is deleted)",
            "429 (50003) with `Retry-After`; 413 (50004)",
        ),
        (
            "failed authentications",
            f"{default('auth_failures_per_minute')} per minute per "
            "client address; then every request with credentials from it, right key or not, "
            "until the minute ends",
            "429 (50002)",
        ),
    ]
    lines = [
        "## Limits",
        "",
        "Counted per gateway replica. The client address is the TCP peer, or behind a",
        "proxy listed in `TRUSTED_PROXIES` the nearest untrusted `X-Forwarded-For` hop.",
        "",
        "| limit | default | refusal (code) |",
        "|---|---|---|",
    ]
    lines += [f"| {what} | {value} | {refusal} |" for what, value, refusal in rows]
    return [*lines, ""]


def render(spec: dict[str, Any]) -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the gateway's OpenAPI spec (`/openapi.json`) by",
        "`scripts/gen_api_docs.py`; do not edit by hand. Every operation also exists on the",
        "gRPC service `pixelrelay.v1.PublicApi` (`protos/pixelrelay/v1/public_api.proto`) with",
        "the same authentication (metadata `authorization: Bearer <key>`) and rules.",
        "",
        f"Base URL: your gateway, e.g. `http://127.0.0.1:8080`. API version {spec['info']['version']}.",
        "",
        "## Keys and scopes",
        "",
        "Every operation needs a key with its scope; without it: 403, code 10006.",
        "",
        "| scope | operations |",
        "|---|---|",
        "| `generate` | submit, estimate, upload |",
        "| `read` | get a task, list tasks |",
        "| `billing:read` | balance, usage |",
        "| `read` and `billing:read` | the account's export |",
        "| `keys:manage` | create, list and revoke keys |",
        "",
        "A key issued by an operator has every scope unless issued with fewer. A key created",
        "with `POST /api/v1/keys` gets at most the creating key's scopes (by default all of",
        "them), expiry and rate limit (by default the same), and if the creating key has a",
        "credit limit, the new key must have one too (without it: 400, 20003), carved out of",
        "what the creating key has left: a chain of keys never spends more than its first key",
        "may. Asking for more is 403 (10006) naming the field. A key may revoke only keys that",
        "can do no more than",
        "itself (scopes, limits, expiry), never the key it was created from;",
        "`DELETE /api/v1/keys/{key_id}?cascade=true` also revokes every key created from it.",
        "",
        *_limits(),
        *_models(),
        "## OpenAI-compatible /v1",
        "",
        "The official `openai` SDK works unchanged with `base_url=<gateway>/v1` and one of our",
        "API keys: `client.images.generate(...)`, `client.images.edit(...)`,",
        "`client.models.list()`. A call submits an ordinary task (the same hold, failover,",
        "storage and attempts as `POST /api/v1/images/generations`), waits until it settles",
        "(at most `SYNC_WAIT_SECONDS`, 300) and answers with OpenAI's `ImagesResponse`:",
        "`created`, `data[].b64_json` plus `data[].url` (our 7-day link), `background`,",
        "`output_format`, `quality`, `size`, and `usage` (the upstream's token counts for the",
        "images delivered, as it reported them; absent if it reported none). The header",
        "`x-pixelrelay-task-id` names the task, readable with `GET /api/v1/tasks/{task_id}`;",
        "it is charged exactly as an async task.",
        "A client that disconnects while waiting does not cancel it: it completes, is charged",
        "once and stays readable by its id.",
        "",
        "| OpenAI field | here |",
        "|---|---|",
        "| `model` | `gpt-image-2` or `gpt-image-2-official` (`GET /v1/models`) |",
        "| `size` | `auto`, or `WIDTHxHEIGHT`: one of the ratio table's sizes (all `gpt-image-2` makes), any valid size on `gpt-image-2-official` |",
        "| `n`, `quality`, `background`, `moderation`, `output_format`, `output_compression` | as on `/api/v1`; on `gpt-image-2` only their defaults (`auto`, `png`) are accepted |",
        "| `image` / `image[]` (up to 16), `mask` (edits, multipart) | reference images and a mask, stored with the task like fetched ones; the whole request at most `MAX_EDIT_BYTES` (64 MiB), each image `MAX_IMAGE_BYTES` |",
        "| `user`, `safety_identifier` | accepted, not stored |",
        "| `response_format`, `style`, `input_fidelity` | refused (400, naming the param): GPT image models do not take them |",
        "| `stream`, `partial_images` | Server-Sent Events, below; `partial_images` 0-3, only with `stream: true` (else 400 naming it) |",
        "",
        "With `stream: true` the answer is OpenAI's event stream, which",
        "`client.images.generate(..., stream=True, partial_images=2)` iterates:",
        "`image_generation.partial_image` events (`b64_json`, `partial_image_index`), then one",
        "`image_generation.completed` per image (`b64_json`, `usage`, plus our `url`); edits send",
        "`image_edit.*`. Previews come from the upstream while it works, relayed to the waiting",
        "request over the bus and never stored or charged; there may be fewer than asked (the",
        "upstream decides, and a channel configured without previews sends none). Anything",
        "refused before the task exists (a bad key, bad input, no credits) is an ordinary error",
        "answer; once the stream has begun, a task that fails ends it with an `error` event in",
        "OpenAI's envelope, which the SDK raises as `openai.APIError` (nothing charged). Closing",
        "the stream early leaves the task to complete, charged once, readable by the",
        "`x-pixelrelay-task-id` header's id.",
        "",
        'Errors use OpenAI\'s envelope `{"error": {"message", "type", "param", "code"}}`',
        "(plus `pixelrelay_code`, ours) so the SDK raises its own classes: invalid input 400",
        "`BadRequestError`; a bad key 401 `AuthenticationError`; a missing scope 403",
        "`PermissionDeniedError`; insufficient credits 429 `RateLimitError` with",
        "`code: insufficient_quota` and `x-should-retry: false`, as OpenAI answers an exhausted",
        "quota (so the SDK does not retry it); rate limits 429 `RateLimitError`; a task that",
        "failed upstream 502, a platform fault 500/503 (`InternalServerError`); still",
        "processing after `SYNC_WAIT_SECONDS` 504 (the task goes on; poll it by the header's",
        "id).",
        "",
        "Retries: the SDK retries 408, 409, 429 and 5xx by itself and sends no idempotency key.",
        "An error answered before a task exists charged nothing and may be retried. An error",
        "about an existing task carries its id in `x-pixelrelay-task-id` and, unless the task",
        "failed (refunded, so a new try is wanted), `x-should-retry: false`: the SDK raises",
        "instead of starting a second task while the first may still complete and be charged.",
        "Only a connection lost while waiting (a gateway restarting) is retried blind and can",
        'make a second task; pass `extra_headers={"Idempotency-Key": "…"}` to make even',
        "that safe: the retry then waits for the first task, as on `/api/v1`.",
        "",
        "## When the charge is final",
        "",
        "A task is `completed` as soon as its images are stored; billing settles its credits",
        "from the bus right after (the same moment on an idle platform, milliseconds under",
        "load, longer while billing or its database is down). Until then the task reads",
        '`"credits": {"reserved": 7, "charged": 0, "settled": false, …}`; `settled: true`',
        "makes `charged` final (gRPC: `Task.credits_settled`). A failed task is refunded the",
        "same way. `/v1` and `GenerateImages` answer when the images are stored, without",
        "waiting for the charge, which cannot fail: the credits were held at submit.",
        "",
        "## How long things are kept",
        "",
        "A task's images and its stored inputs are deleted 7 days after they were made, uploads",
        "7 days after they were uploaded (the operator's `RESULT_TTL_DAYS`, `UPLOAD_TTL_DAYS`):",
        "mirror what you need longer. `expires_at` says when; once it has passed,",
        "`GET /api/v1/tasks/{task_id}` still answers with the task's metadata and credits, with",
        "`expired_at` set and `output.image_urls: []` (gRPC: `Task.expired_at`, no `images`), a",
        "download of an old URL fails at the object store, and an old upload used as a",
        "reference gets 404 (40006). Task records are kept 90 days (`TASK_RETENTION_DAYS`),",
        "then `GET` answers 404 (40001); the usage ledger keeps its entries for ever.",
        "`GET /api/v1/account/export` gives everything kept about the account, as JSON or CSV.",
        "",
        "## Operations",
        "",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            lines += [f"### `{method.upper()} {path}`", "", op.get("summary", ""), ""]
            if op.get("description"):
                lines += [op["description"], ""]
            if op.get("security"):
                lines += ["Authorization: `Bearer <key>`.", ""]
            params = op.get("parameters", [])
            if params:
                lines += ["| parameter | in | type |", "|---|---|---|"]
                for p in params:
                    lines.append(
                        f"| `{p['name']}` | {p['in']} | {p.get('schema', {}).get('type', '')} |"
                    )
                lines.append("")
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                lines += [f"Body: `{_schema_name(body['schema'])}`", ""]
            ok = op["responses"].get("200", {}).get("content", {}).get("application/json")
            if ok:
                lines += [
                    f"200: `{_schema_name(ok['schema'])}`; errors: "
                    + ", ".join(s for s in op["responses"] if s != "200"),
                    "",
                ]
    lines += ["## Schemas", ""]
    for name, schema in spec["components"]["schemas"].items():
        lines += [
            f"### {name}",
            "",
            "| field | type | required | description |",
            "|---|---|---|---|",
        ]
        required = set(schema.get("required", []))
        for field, prop in schema.get("properties", {}).items():
            lines.append(
                f"| `{field}` | {_type(prop)} | {'yes' if field in required else ''} | "
                f"{prop.get('description', '')} |"
            )
        lines.append("")
    lines += [
        "## Errors",
        "",
        'Every error has one shape: `{"error": {"code", "type", "message", "param", '
        '"request_id"}}`; the `x-request-id` header repeats the request id. Task failures',
        "(7xxxx) appear in a task's `error` field, not as HTTP errors.",
        "",
        "| code | type | HTTP | meaning |",
        "|---|---|---|---|",
    ]
    for code, kind in sorted(CATALOG.items()):
        lines.append(f"| {code} | `{kind.type}` | {kind.http_status} | {kind.description} |")
    return "\n".join(lines) + "\n"


def _values(values: list[Any]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def _models() -> list[str]:
    """Each model of the packaged catalog: what it takes and what it costs."""
    models = catalog.load(catalog.DEFAULT_CATALOG)
    lines = [
        "## Models and prices",
        "",
        "Generated from the packaged model catalog (`libs/pixelrelay/catalog.yaml`, version",
        f"{models.version}). An operator's catalog (`CATALOG_FILE`) may sell other models and",
        "prices: `GET /api/v1/models` lists what a platform serves. A request may name a",
        "model or one of its aliases; fields a model does not take are refused (400, 20004)",
        "naming the models that take them. Prices are credits per delivered image",
        "(1 credit = $0.001); the first row that matches a request prices it.",
        "",
    ]
    lines += [
        "A size is a ratio and a resolution (`1k` by default), which make these pixels (4k is",
        "made at the wide ratios only):",
        "",
        "| ratio | 1k | 2k | 4k |",
        "|---|---|---|---|",
    ]
    for ratio in RATIOS:
        cells = [
            f"{PIXELS[(ratio, r)][0]}x{PIXELS[(ratio, r)][1]}" if (ratio, r) in PIXELS else ""
            for r in RESOLUTIONS
        ]
        lines.append(f"| `{ratio}` | {' | '.join(cells)} |")
    lines.append("")
    for name, spec in models.models.items():
        aliases = sorted(a for a, target in models.aliases.items() if target == name)
        lines += [
            f"### `{name}`",
            "",
            spec.description[:1].upper() + spec.description[1:] + ".",
            "",
        ]
        if aliases:
            lines += [f"Also called: {_values(aliases)}.", ""]
        lines += ["| field | takes |", "|---|---|", *_capability_rows(spec), ""]
        lines += ["| price id | resolution | quality | credits | USD |", "|---|---|---|---|---|"]
        for row in spec.prices:
            lines.append(
                f"| `{row.id}` | {_values(sorted(row.resolutions or ())) or 'any'} | "
                f"{_values(sorted(row.qualities or ())) or 'any'} | {row.credits} | "
                f"${row.credits / 1000:.3f} |"
            )
        if spec.auto_quoted_as:
            lines += [
                "",
                f"`quality: auto` is held at `{spec.auto_quoted_as}` and charged at the tier "
                "the upstream reports.",
            ]
        lines.append("")
    return lines


def _capability_rows(spec: ModelSpec) -> list[str]:
    caps = spec.capabilities
    absent = "not taken"
    sizes = f"the ratios {_values(list(caps.ratios))}" if caps.ratios else "any ratio of the table"
    if caps.sizes == "any":
        sizes += ", or `WIDTHxHEIGHT` (edges multiples of 16, at most 3840, ratio up to 3:1)"
    return [
        f"| `n` | {'1' if caps.max_n == 1 else f'1-{caps.max_n}'} |",
        f"| `size` | `auto`, {sizes} |",
        f"| `resolution` | {_values(list(caps.resolutions))} |",
        f"| `quality` | {_values(list(caps.qualities)) or absent} |",
        f"| `background` | {_values(list(caps.backgrounds)) or absent} |",
        f"| `moderation` | {_values(list(caps.moderations)) or absent} |",
        f"| `output_format` | {_values(list(caps.formats)) if caps.chooses_format else absent} "
        f"(makes {_values(list(caps.formats))}) |",
        f"| `output_compression` | {'0-100 (jpeg, webp)' if caps.output_compression else absent} |",
        f"| `mask_url`, `mask` | {'yes' if caps.masks else absent} |",
        f"| reference images | up to {caps.max_references} |",
    ]


def _type(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    if "enum" in prop:
        return f"one of {_values(prop['enum'])}"
    if "pattern" in prop:
        return f"`{prop['pattern']}`"
    if "$ref" in prop:
        return _schema_name(prop)
    if prop.get("type") == "array":
        return f"array of {_type(prop.get('items', {}))}"
    return str(prop.get("type", "any"))


def main() -> int:
    spec = openapi_spec()
    outputs = {
        DOCS / "api.md": render(spec),
        DOCS / "openapi.json": json.dumps(spec, indent=2, sort_keys=True) + "\n",
    }
    if "--check" in sys.argv:
        stale = [p.name for p, text in outputs.items() if not p.exists() or p.read_text() != text]
        if stale:
            sys.stderr.write(f"stale: {', '.join(stale)} (run python scripts/gen_api_docs.py)\n")
            return 1
        return 0
    for path, text in outputs.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
