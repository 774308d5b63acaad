"""Internal services check who calls them: every RPC of billing and storage, without a
credential, with a wrong one, and with a real one of a service that may not call it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from pixelrelay.callers import ADMIN, DISPATCHER, GATEWAY, AccessPolicy, credential_metadata
from pixelrelay.errors import ApiError, E, ErrorKind
from pixelrelay.grpc_server import insecure_channel
from pixelrelay.storage_client import ImageBytes, StorageClient
from pixelrelay.v1 import billing_pb2, storage_pb2
from pixelrelay_billing.access import BILLING_ACCESS
from pixelrelay_sim.render import render_image
from pixelrelay_storage.access import STORAGE_ACCESS
from tests.e2e.conftest import Platform
from tests.e2e.helpers import new_account, poll_until_done

pytestmark = [pytest.mark.e2e, pytest.mark.security]

BOGUS = "pxs_" + "x" * 40


def services(platform: Platform) -> list[tuple[str, ServiceDescriptor, AccessPolicy]]:
    c = platform.config
    return [
        (
            f"127.0.0.1:{c.billing_port}",
            billing_pb2.DESCRIPTOR.services_by_name["Billing"],
            BILLING_ACCESS,
        ),
        (
            f"127.0.0.1:{c.storage_port}",
            storage_pb2.DESCRIPTOR.services_by_name["Storage"],
            STORAGE_ACCESS,
        ),
    ]


async def call(
    channel: grpc.aio.Channel, service: ServiceDescriptor, method: MethodDescriptor, credential: str
) -> None:
    """One call of ``method`` with an empty request, whatever its kind."""
    path = f"/{service.full_name}/{method.name}"
    request = message_factory.GetMessageClass(method.input_type)()
    kwargs: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": message_factory.GetMessageClass(method.output_type).FromString,
    }
    options = {"metadata": credential_metadata(credential), "timeout": 10}

    async def one() -> AsyncIterator[Any]:
        yield request

    if method.client_streaming:
        await channel.stream_unary(path, **kwargs)(one(), **options)
    elif method.server_streaming:
        async for _ in channel.unary_stream(path, **kwargs)(request, **options):
            pass
    else:
        await channel.unary_unary(path, **kwargs)(request, **options)


async def test_every_internal_rpc_refuses_callers_it_does_not_trust(platform: Platform) -> None:
    credentials = platform.config.credentials
    checked = 0
    for addr, service, policy in services(platform):
        async with insecure_channel(addr) as channel:
            for method in service.methods:
                allowed = policy.rules[method.name]
                attempts = [
                    ("", E.SERVICE_CREDENTIAL_INVALID),
                    (BOGUS, E.SERVICE_CREDENTIAL_INVALID),
                ]
                attempts += [
                    (credentials[caller], E.CALLER_NOT_ALLOWED)
                    for caller in (GATEWAY, DISPATCHER, ADMIN)
                    if caller not in allowed
                ]
                for credential, kind in attempts:
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await call(channel, service, method, credential)
                    assert caught.value.code() == kind.grpc_status, (method.name, credential[:8])
                    meta = dict(caught.value.trailing_metadata() or ())
                    assert meta["pixelrelay-error-code"] == str(kind.code), method.name
                    checked += 1
    assert checked >= 2 * 22  # every method, at least without and with a wrong credential


def test_each_rpc_allows_only_the_callers_that_need_it() -> None:
    """The access matrix, spelled out: a change to it must change this test too."""
    assert {m: sorted(c) for m, c in BILLING_ACCESS.rules.items()} == {
        "Authenticate": ["gateway"],
        "Quote": ["gateway"],
        "ReserveMany": ["gateway"],
        "Release": ["gateway"],
        "TakeRequests": ["gateway"],
        "GetAccount": ["admin", "gateway"],
        "CreateApiKey": ["admin", "gateway"],
        "ListApiKeys": ["admin", "gateway"],
        "RevokeApiKey": ["admin", "gateway"],
        "ListLedgerEntries": ["admin", "gateway"],
        "CreateAccount": ["admin"],
        "ListAccounts": ["admin"],
        "TopUp": ["admin"],
        "Adjust": ["admin"],
        "CheckLedger": ["admin"],
        "DeleteAccount": ["admin"],
        "VerifyAdmin": ["admin"],
        "CreateLogin": ["gateway"],
        "SignIn": ["gateway"],
        "SignOut": ["gateway"],
        "GetLogin": ["admin", "gateway"],
        "ChangePassword": ["gateway"],
        "IssueLoginToken": ["admin", "gateway"],
        "UseLoginToken": ["gateway"],
        "CreateInvite": ["admin"],
        "ListInvites": ["admin"],
        "RevokeInvite": ["admin"],
    }
    assert {m: sorted(c) for m, c in STORAGE_ACCESS.rules.items()} == {
        "PutObject": ["gateway"],
        "GetObject": ["dispatcher", "gateway"],
        "StoreImages": ["dispatcher"],
        "Reannounce": ["dispatcher"],
        "DeletePrefixes": ["gateway"],
        "FindMissing": ["gateway"],
    }
    for service, policy in (
        (billing_pb2.DESCRIPTOR.services_by_name["Billing"], BILLING_ACCESS),
        (storage_pb2.DESCRIPTOR.services_by_name["Storage"], STORAGE_ACCESS),
    ):
        assert {m.name for m in service.methods} == set(policy.rules), service.name


async def refusal(call: Awaitable[object]) -> ErrorKind:
    with pytest.raises(ApiError) as caught:
        await call
    return caught.value.kind


async def test_refused_calls_change_nothing(platform: Platform) -> None:
    """The attacks a security sweep made with no secret at all, replayed."""
    credentials = platform.config.credentials
    key = await new_account(platform, 10)
    admin, gateway = platform.stack.billing(), platform.stack.billing(GATEWAY)
    try:
        account = (await gateway.authenticate(key)).account_id
        keys_before = len((await admin.list_api_keys(account)).keys)
        for credential in ("", BOGUS):
            intruder = admin.acting_as(credential)
            assert (
                await refusal(intruder.top_up(account, 10**6, "free"))
                == E.SERVICE_CREDENTIAL_INVALID
            )
            assert await refusal(intruder.create_api_key(account)) == E.SERVICE_CREDENTIAL_INVALID
        assert await refusal(gateway.top_up(account, 10**6, "free")) == E.CALLER_NOT_ALLOWED
        assert (await admin.get_account(account)).balance == 10
        assert len((await admin.list_api_keys(account)).keys) == keys_before
    finally:
        await admin.close()
        await gateway.close()

    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(key),
        json={"model": "gpt-image-2", "prompt": "mine"},
    )
    task_id = submitted.json()["id"]
    forged = render_image("forged", 1024, 1024, "png")
    for caller, kind in (("", E.SERVICE_CREDENTIAL_INVALID), (GATEWAY, E.CALLER_NOT_ALLOWED)):
        storage = StorageClient(
            f"127.0.0.1:{platform.config.storage_port}", credentials.get(caller, "")
        )
        try:
            images = [ImageBytes(forged, "png", 1024, 1024)]
            store = storage.store_images(task_id, images, quality="high", upstream_ms=1)
            assert await refusal(store) == kind
        finally:
            await storage.close()
    task = await poll_until_done(platform.http, task_id, platform.auth(key))
    async with httpx.AsyncClient() as download:
        [url] = task["output"]["image_urls"]
        assert (await download.get(url)).content != forged  # the simulator's, not the forgery
