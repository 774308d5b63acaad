"""Writes docs/api.md and docs/openapi.json from the gateway's served OpenAPI spec.

`python scripts/gen_api_docs.py` rewrites them; `--check` fails if they are stale
(the test suite runs the check).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

from gateway.api import PublicApi
from gateway.rest import create_app
from pixelrelay.errors import CATALOG

DOCS = Path(__file__).resolve().parent.parent / "docs"


def openapi_spec() -> dict[str, Any]:
    # Building the spec never calls the API object.
    return create_app(cast(PublicApi, None)).openapi()


def _schema_name(ref: dict[str, Any]) -> str:
    return str(ref.get("$ref", "")).rsplit("/", 1)[-1]


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
        "| `keys:manage` | create, list and revoke keys |",
        "",
        "A key issued by an operator has every scope unless issued with fewer. A key created",
        "with `POST /api/v1/keys` gets at most the creating key's scopes (by default all of",
        "them), expiry and rate limit (by default the same), and if the creating key has a",
        "credit limit, the new key must have one too, carved out of what the creating key has",
        "left: a chain of keys never spends more than its first key may. Asking for more is",
        "403 (10006) naming the field. A key may revoke only keys that can do no more than",
        "itself (scopes, limits, expiry), never the key it was created from;",
        "`DELETE /api/v1/keys/{key_id}?cascade=true` also revokes every key created from it.",
        "",
        "## Operations",
        "",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            lines += [f"### `{method.upper()} {path}`", "", op.get("summary", ""), ""]
            params = [p for p in op.get("parameters", []) if p["name"] != "authorization"]
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


def _type(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
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
