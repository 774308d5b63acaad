"""A task never lists a URL that cannot work: images lost before their lifetime ended
(here deleted from the object store behind the platform's back, as deleting `var/s3` by
hand would) are found by the gateway's object audit, and the task answers as an expired
one; the others keep their URLs. Storage answers the audit only for result keys, and only
to the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pixelrelay.callers import DISPATCHER, GATEWAY
from pixelrelay.errors import ApiError, E
from pixelrelay.storage_client import StorageClient
from tests.e2e.conftest import Platform, running_platform
from tests.e2e.helpers import eventually, poll_until_done

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def audited(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    data_dir = tmp_path_factory.mktemp("audited")
    async with running_platform(
        data_dir, allow_private=False, env={"OBJECT_AUDIT_INTERVAL": "1"}
    ) as running:
        yield running


async def completed(platform: Platform, prompt: str) -> dict[str, Any]:
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": prompt, "resolution": "1k"},
    )
    task = await poll_until_done(platform.http, submitted.json()["id"], platform.auth())
    assert task["status"] == "completed", task
    return task


async def test_a_task_whose_images_are_gone_answers_as_expired(audited: Platform) -> None:
    lost, kept = await completed(audited, "to be lost"), await completed(audited, "to be kept")
    store = audited.config.object_store()
    store.remove_object("pixelrelay", f"tasks/{lost['id']}/0.png")
    async with httpx.AsyncClient() as download:
        assert (await download.get(lost["output"]["image_urls"][0])).status_code == 404

    async def answers_as_expired() -> bool:
        task = (
            await audited.http.get(f"/api/v1/tasks/{lost['id']}", headers=audited.auth())
        ).json()
        return task["expired_at"] is not None

    await eventually(answers_as_expired, "the lost images' task answers as expired", within=15)
    task = (await audited.http.get(f"/api/v1/tasks/{lost['id']}", headers=audited.auth())).json()
    assert task["output"]["image_urls"] == [] and task["credits"]["charged"] == 7
    still = (await audited.http.get(f"/api/v1/tasks/{kept['id']}", headers=audited.auth())).json()
    assert still["expired_at"] is None and still["output"]["image_urls"]
    async with httpx.AsyncClient() as download:
        assert (await download.get(still["output"]["image_urls"][0])).status_code == 200


@pytest.mark.security
async def test_storage_answers_the_audit_for_result_keys_and_the_gateway_only(
    audited: Platform,
) -> None:
    task = await completed(audited, "audit refusals")
    credentials = audited.config.credentials
    address = f"127.0.0.1:{audited.config.storage_port}"
    gateway = StorageClient(address, credentials[GATEWAY])
    try:
        assert await gateway.find_missing([f"tasks/{task['id']}/0.png"]) == []
        for keys in (["uploads/acct_x/upl_y.png"], ["tasks/../secrets"], ["x"] * 501):
            with pytest.raises(ApiError) as refused:
                await gateway.find_missing(keys)
            assert refused.value.kind is E.INVALID_PARAMETER
    finally:
        await gateway.close()
    for caller, kind in (("", E.SERVICE_CREDENTIAL_INVALID), (DISPATCHER, E.CALLER_NOT_ALLOWED)):
        intruder = StorageClient(address, credentials.get(caller, ""))
        try:
            with pytest.raises(ApiError) as refused:
                await intruder.find_missing([f"tasks/{task['id']}/0.png"])
            assert refused.value.kind is kind
        finally:
            await intruder.close()
