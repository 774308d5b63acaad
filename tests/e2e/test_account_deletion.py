"""Deleting an account (an operator's act): first its export holds every task and ledger
entry; after it, no object under its prefixes, no usable key, no pending work, and its
balance and ledger intact and balanced. Work in flight at the time is canceled, refunded,
and its late images deleted too."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest

from pixelrelay.callers import GATEWAY
from pixelrelay.errors import ApiError, E
from pixelrelay.storage_client import StorageClient
from pixelrelay_sim.render import render_image
from tests.e2e.conftest import Platform
from tests.e2e.helpers import (
    admin,
    bucket_keys,
    eventually,
    faults,
    ledger_ok,
    new_account,
    poll_until_done,
    upstream_requests,
)

pytestmark = pytest.mark.e2e


async def submit(platform: Platform, key: str, body: dict[str, Any]) -> str:
    answer = await platform.http.post(
        "/api/v1/images/generations", headers=platform.auth(key), json=body
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


async def ledger_entries(platform: Platform, account_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await platform.http.get(
            f"/admin/v1/accounts/{account_id}/ledger",
            params={"limit": 200, **({"cursor": cursor} if cursor else {})},
            headers=admin(platform),
        )
        assert page.status_code == 200, page.text
        entries += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return entries


def cli(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GATEWAY_ADDR": f"127.0.0.1:{platform.config.grpc_port}",
        "PIXELRELAY_ADMIN_TOKEN": platform.config.admin_token,
    }
    return subprocess.run(
        [sys.executable, "-m", "pixelrelay_cli", "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_an_exported_then_deleted_account_keeps_only_its_ledger(platform: Platform) -> None:
    key = await new_account(platform, grant=1000)
    account_id = (await platform.http.get("/api/v1/account", headers=platform.auth(key))).json()[
        "account_id"
    ]
    uploaded = await platform.http.post(
        "/api/v1/uploads",
        headers=platform.auth(key),
        files={"file": ("u.png", render_image("mine", 256, 256, "png"), "image/png")},
    )
    assert uploaded.status_code == 200, uploaded.text
    done = await submit(
        platform,
        key,
        {"model": "gpt-image-2", "prompt": "kept", "image_urls": [uploaded.json()["url"]]},
    )
    completed = await poll_until_done(platform.http, done, platform.auth(key))
    assert completed["status"] == "completed"
    # A task still at the upstream when the account is deleted.
    slow = f"in flight {uuid.uuid4().hex}"
    await faults(platform, {"kind": "latency", "match": slow, "seconds": 3})
    in_flight = await submit(platform, key, {"model": "gpt-image-2", "prompt": slow})

    async def at_upstream() -> bool:
        return await upstream_requests(platform, slow) == 1

    await eventually(at_upstream, "the slow task reaches the upstream", within=15)

    # The export first: every task and every ledger entry, as JSON and as CSV, REST and CLI.
    exported = await platform.http.get(
        f"/admin/v1/accounts/{account_id}/export", headers=admin(platform)
    )
    assert exported.status_code == 200, exported.text
    document = exported.json()
    assert document["account"]["id"] == account_id
    assert {t["id"] for t in document["tasks"]} == {done, in_flight}
    entries = await ledger_entries(platform, account_id)
    assert sorted(e["id"] for e in document["ledger"]) == sorted(e["id"] for e in entries)
    assert {e["kind"] for e in document["ledger"]} >= {"signup_grant", "reserve", "capture"}
    as_csv = cli(platform, "export-account", account_id, "--format", "csv", "--part", "ledger")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert sorted(int(r["id"]) for r in rows) == sorted(e["id"] for e in entries)
    mine = await platform.http.get(
        "/api/v1/account/export", params={"format": "csv"}, headers=platform.auth(key)
    )
    assert mine.status_code == 200 and mine.headers["content-type"].startswith("text/csv")
    assert {r["id"] for r in csv.DictReader(io.StringIO(mine.text))} == {done, in_flight}
    assert "kept" not in exported.text and slow not in exported.text  # prompts were never kept

    deleted = await platform.http.post(
        f"/admin/v1/accounts/{account_id}/delete",
        json={"reason": "the customer asked"},
        headers=admin(platform),
    )
    assert deleted.status_code == 200, deleted.text
    report = deleted.json()
    assert report["keys_revoked"] == 1 and report["holds_released"] == 1
    assert (report["tasks_deleted"], report["uploads_deleted"]) == (2, 1)
    assert report["objects_deleted"] >= 3  # the upload, the result, the stored reference
    assert report["account"]["deleted_reason"] == "the customer asked"

    async def key_refused() -> bool:
        answer = await platform.http.get("/api/v1/account", headers=platform.auth(key))
        return answer.status_code == 401

    await eventually(key_refused, "the key stops working", within=2)

    # The in-flight task's images arrive after the deletion: billing refuses their capture
    # (the hold was released) and the gateway, finding no task record, deletes them.
    async def late_images_handled() -> bool:
        return any(
            '"images arrived for a failed task"' in line and in_flight in line
            for log in platform.stack.logs.glob("gateway*.log")
            for line in log.read_text().splitlines()
        )

    await eventually(late_images_handled, "the in-flight task's images arrive", within=20)
    prefixes = [f"uploads/{account_id}/", f"tasks/{done}/", f"tasks/{in_flight}/"]

    async def nothing_stored() -> bool:
        return not any(bucket_keys(platform, p) for p in prefixes)

    await eventually(nothing_stored, "no object under the account's prefixes", within=5)
    charged = completed["credits"]["charged"]
    account = (
        await platform.http.get(f"/admin/v1/accounts/{account_id}", headers=admin(platform))
    ).json()
    assert (account["balance"], account["held"]) == (1000 - charged, 0)
    assert account["deleted_at"] is not None
    assert len(await ledger_entries(platform, account_id)) == len(entries) + 2  # the release
    await ledger_ok(platform)

    # Deleted means no new keys or credits; deleting again finds nothing more to do.
    for path, body in (("keys", {"name": "again"}), ("top-ups", {"amount": 5, "reason": "x"})):
        refused = await platform.http.post(
            f"/admin/v1/accounts/{account_id}/{path}", json=body, headers=admin(platform)
        )
        assert refused.status_code == 410, refused.text
        assert refused.json()["error"]["type"] == "account_deleted"
    again = cli(platform, "delete-account", account_id, "--reason", "again")
    assert again.returncode == 0, again.stderr
    assert {k: json.loads(again.stdout)[k] for k in ("keys_revoked", "tasks_deleted")} == {
        "keys_revoked": 0,
        "tasks_deleted": 0,
    }


@pytest.mark.security
async def test_the_export_is_the_callers_own_and_needs_read_scopes(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.config.base_url) as anonymous:
        assert (await anonymous.get("/api/v1/account/export")).status_code == 401
    made = await platform.http.post(
        "/api/v1/keys", headers=platform.auth(), json={"name": "gen", "scopes": ["generate"]}
    )
    narrow = made.json()["api_key"]
    refused = await platform.http.get("/api/v1/account/export", headers=platform.auth(narrow))
    assert refused.status_code == 403, refused.text
    own = await platform.http.get("/api/v1/account/export", headers=platform.auth())
    assert own.status_code == 200
    assert own.json()["account"]["id"] == platform.account_id


@pytest.mark.security
async def test_storage_deletes_only_one_owners_prefix(platform: Platform) -> None:
    key = await new_account(platform, grant=100)
    task_id = await submit(platform, key, {"model": "gpt-image-2", "prompt": "stay"})
    await poll_until_done(platform.http, task_id, platform.auth(key))
    credential = platform.config.credentials[GATEWAY]
    storage = StorageClient(f"127.0.0.1:{platform.config.storage_port}", credential)
    try:
        for prefixes in ([""], ["uploads/"], ["tasks/"], ["uploads/acct_x"], ["../", "tasks/x/"]):
            with pytest.raises(ApiError) as caught:
                await storage.delete_prefixes(prefixes)
            assert caught.value.kind is E.INVALID_PARAMETER, prefixes
    finally:
        await storage.close()
    assert bucket_keys(platform, f"tasks/{task_id}/")  # nothing went


@pytest.mark.security
@pytest.mark.parametrize("token", ["", "pxs_" + "x" * 40, "{gateway}", "{api_key}"])
async def test_the_admin_grpc_service_needs_the_admin_token(platform: Platform, token: str) -> None:
    """Admin.DeleteAccount and ExportAccount over gRPC (the CLI's path), with no token, a
    wrong one, the gateway's own credential or an API key: 401 (10003), nothing deleted."""
    token = token.format(gateway=platform.config.credentials[GATEWAY], api_key=platform.api_key)
    env = {**os.environ, "PIXELRELAY_DATA_DIR": "/nonexistent", "PIXELRELAY_ADMIN_TOKEN": token}
    for args in (
        ("delete-account", platform.account_id, "--reason", "intruder"),
        ("export-account", platform.account_id),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "pixelrelay_cli", "admin", *args],
            env={**env, "GATEWAY_ADDR": f"127.0.0.1:{platform.config.grpc_port}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, (args, done.stdout)
        assert "error 10003" in done.stderr and not done.stdout, done.stderr
    account = (
        await platform.http.get(
            f"/admin/v1/accounts/{platform.account_id}", headers=admin(platform)
        )
    ).json()
    assert account["deleted_at"] is None
