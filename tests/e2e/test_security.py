"""Attacks on the public surface that a security sweep found to work, replayed: each test
here failed before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import signal
import time
import uuid
from typing import Any

import grpc
import httpx
import nats.errors
import PIL.Image
import pytest

from pixelrelay import bus, task_events
from pixelrelay.limits import MAX_UNIX_SECONDS
from pixelrelay.v1 import events_pb2, public_api_pb2, public_api_pb2_grpc
from tests.e2e.conftest import Platform
from tests.e2e.helpers import (
    eventually,
    new_account,
    poll_until_done,
    rss_bytes,
    status_and_code,
)

pytestmark = [pytest.mark.e2e, pytest.mark.security]


@pytest.mark.parametrize(
    ("method", "request_", "param"),
    [
        ("ListUsage", public_api_pb2.ListUsageRequest(since=2**62), "since"),
        ("ListUsage", public_api_pb2.ListUsageRequest(until=MAX_UNIX_SECONDS + 1), "until"),
        ("CreateKey", public_api_pb2.CreateKeyRequest(expires_at=2**62), "expires_at"),
        ("CreateKey", public_api_pb2.CreateKeyRequest(expires_at=-1), "expires_at"),
    ],
)
async def test_grpc_gets_the_same_bounds_as_rest(
    platform: Platform, method: str, request_: object, param: str
) -> None:
    """Out-of-range timestamps once reached datetime and came back INTERNAL."""
    meta = (("authorization", f"Bearer {platform.api_key}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.config.grpc_port}") as channel:
        stub = public_api_pb2_grpc.PublicApiStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(stub, method)(request_, metadata=meta, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    trailers = dict(caught.value.trailing_metadata() or ())
    assert (trailers["pixelrelay-error-code"], trailers["pixelrelay-error-param"]) == (
        "20003",
        param,
    )


async def test_poison_events_are_dead_lettered_not_retried_forever(platform: Platform) -> None:
    """Undecodable bytes, an event for no task and one without a kind were once nak'ed about
    once a second without end."""
    run = uuid.uuid4().hex[:10]
    unknown = events_pb2.TaskEvent(
        task_id=f"task_unknown{run}", completed=events_pb2.TaskCompleted(quality="high")
    )
    poison = {
        f"garbage {run}".encode() + b"\xff\xfe": "undecodable",
        unknown.SerializeToString(): "hold_not_found",
        events_pb2.TaskEvent(task_id=f"task_nokind{run}").SerializeToString(): "no_kind",
    }
    async with platform.stack.bus() as nc:
        js = nc.jetstream()
        before = await js.consumer_info(bus.EVENTS_STREAM, bus.GATEWAY_EVENTS_CONSUMER)
        for i, data in enumerate(poison):
            # On a completed subject: the gateway and billing's settlement both read it.
            subject = task_events.subject("completed", f"task_poison{run}")
            await js.publish(subject, data, headers={"Nats-Msg-Id": f"{run}.{i}"})
        dead = await js.pull_subscribe(bus.DEADLETTER_EVENTS_SUBJECT, stream=bus.DEADLETTER_STREAM)
        found: dict[bytes, str] = {}

        async def all_dead() -> bool:
            with contextlib.suppress(nats.errors.TimeoutError):
                for msg in await dead.fetch(50, timeout=0.5):
                    found[msg.data] = (msg.headers or {}).get(bus.REASON_HEADER, "")
            return set(poison) <= set(found)

        await eventually(all_dead, "every poison event in the dead-letter stream")
        assert {data: found[data] for data in poison} == poison

        for consumer in (bus.GATEWAY_EVENTS_CONSUMER, bus.SETTLEMENT_CONSUMER):

            async def acked(consumer: str = consumer) -> bool:
                info = await js.consumer_info(bus.EVENTS_STREAM, consumer)
                return bool(info.num_ack_pending == 0)

            await eventually(acked, f"{consumer} acked them")
        after = await js.consumer_info(bus.EVENTS_STREAM, bus.GATEWAY_EVENTS_CONSUMER)
        assert after.num_redelivered == before.num_redelivered  # each handled on its first try
    async with httpx.AsyncClient() as scraper:
        metrics = await scraper.get(f"http://127.0.0.1:{platform.config.metrics_port}/metrics")
    assert 'pixelrelay_events_dead_lettered_total{reason="undecodable"}' in metrics.text


async def raw_exchange(platform: Platform, request: bytes, limit: float = 30.0) -> bytes:
    """Send raw bytes, return everything the gateway answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.config.http_port)
    try:
        if request:
            writer.write(request)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), limit)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"a" * 200_000 + b"\r\n",  # one huge header
        b"".join(b"X-Many-%d: 1\r\n" % i for i in range(150)),  # too many headers
    ],
)
async def test_header_bombs_are_refused_before_the_app(platform: Platform, headers: bytes) -> None:
    answer = await raw_exchange(
        platform, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    )
    assert status_and_code(answer) == (431, 20011)
    assert (await platform.http.get("/healthz")).status_code == 200


async def test_a_huge_header_is_not_buffered_whole(platform: Platform) -> None:
    """100 MB of header once took the gateway's RSS up by ~125 MB per connection."""
    gateway = platform.stack.child("gateway").process.pid
    before = rss_bytes(gateway)
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.config.http_port)

    async def send() -> None:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(100 * 16):  # 100 MB
                writer.write(chunk)
                await writer.drain()

    sender = asyncio.create_task(send())
    try:
        answer = await asyncio.wait_for(reader.read(), 60)
        await asyncio.wait_for(sender, 60)
    finally:
        sender.cancel()
        writer.close()
    assert status_and_code(answer) == (431, 20011)
    assert rss_bytes(gateway) - before < 30 * 1024 * 1024


@pytest.mark.parametrize("request_", [b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1", b""])
async def test_slow_or_silent_clients_are_cut_off(platform: Platform, request_: bytes) -> None:
    """Slowloris (headers never finished) and a connection that never sends: 408 after
    HEADER_TIMEOUT (2 s in the tests), instead of a connection held forever."""
    answer = await raw_exchange(platform, request_)
    assert status_and_code(answer) == (408, 20012)


async def test_a_limited_key_cannot_escalate_or_outlive_its_revocation(platform: Platform) -> None:
    """A key with 10 credits, 5/min and 10 minutes once minted an unlimited key with no
    expiry, and revoking it left that key alive."""
    admin = platform.stack.billing()
    try:
        created = await admin.create_api_key(
            platform.account_id,
            "limited",
            expires_at=int(time.time()) + 600,
            credit_limit=10,
            rate_limit=5,
        )
    finally:
        await admin.close()
    limited = {"Authorization": f"Bearer {created.api_key}"}

    async def make(body: dict[str, Any]) -> httpx.Response:
        return await platform.http.post("/api/v1/keys", headers=limited, json=body)

    missing = await make({})  # no credit_limit: the parameter is required, not a right refused
    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "credit_limit")
    for body in ({"credit_limit": 11}, {"credit_limit": 5, "rate_limit": 100}):
        refused = await make(body)
        assert refused.status_code == 403, (body, refused.text)
        assert refused.json()["error"]["code"] == 10006
    made = await make({"credit_limit": 5, "scopes": ["read"]})
    assert made.status_code == 200, made.text
    child = made.json()
    assert child["key"]["rate_limit"] == 5 and child["key"]["parent_id"] == created.key.id
    assert child["key"]["scopes"] == ["read"] and child["key"]["expires_at"] is not None

    # Scopes hold at every endpoint: a read-only key reads, and submits nothing.
    reader = {"Authorization": f"Bearer {child['api_key']}"}
    submit = await platform.http.post(
        "/api/v1/images/generations", headers=reader, json={"model": "gpt-image-2", "prompt": "x"}
    )
    assert submit.status_code == 403 and submit.json()["error"]["code"] == 10006
    assert (await platform.http.get("/api/v1/tasks", headers=reader)).status_code == 200
    assert (await platform.http.get("/api/v1/account", headers=reader)).status_code == 403

    # The limited key cannot revoke the operator's key it does not outrank.
    wider = await platform.http.delete(f"/api/v1/keys/{created.key.id}", headers=reader)
    assert wider.status_code == 403
    own_key = next(
        k["id"]
        for k in (await platform.http.get("/api/v1/keys", headers=platform.auth())).json()["data"]
        if k["prefix"] == platform.api_key[:12]
    )
    upward = await platform.http.delete(f"/api/v1/keys/{own_key}", headers=limited)
    assert upward.status_code == 403

    # Revoking the limited key with cascade stops what it made, too.
    revoked = await platform.http.delete(
        f"/api/v1/keys/{created.key.id}?cascade=true", headers=platform.auth()
    )
    assert revoked.status_code == 200

    async def child_refused() -> bool:
        return (await platform.http.get("/api/v1/tasks", headers=reader)).status_code == 401

    await eventually(child_refused, "the child key stops working")


async def test_answers_carry_security_headers(platform: Platform) -> None:
    api = await platform.http.get("/api/v1/account", headers=platform.auth())
    page = await platform.http.get("/")
    for response in (api, page):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert api.headers["content-security-policy"].startswith("default-src 'none'")


async def test_the_docs_page_loads_nothing_from_elsewhere(platform: Platform) -> None:
    page = await platform.http.get("/docs")
    playground = await platform.http.get("/")
    assert page.status_code == playground.status_code == 200
    # one module; it imports console.js, playground-mask.js and playground-snippets.js
    assert re.findall(r'<script[^>]*src="([^"]+)"', playground.text) == ["/assets/playground.js"]
    assert '<script type="module"' in playground.text
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)"', playground.text) == [
        "/assets/console.css",
        "/assets/playground.css",
    ]
    assert "<script>" not in playground.text + page.text
    policy = dict(
        d.strip().split(" ", 1) for d in page.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'self'" and "script-src" not in policy, policy
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(links) == 4, links
    for link in links:
        assert link.startswith("/assets/"), link
        asset = await platform.http.get(link)
        assert asset.status_code == 200, link
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert (await platform.http.get("/assets/..%2Fdocs.html")).status_code == 404
    assert (await platform.http.get("/assets/index.html")).status_code == 404


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "multipart/form-data; boundary=xyz"]
)
async def test_a_malformed_multipart_body_is_named_as_such(
    platform: Platform, content_type: str
) -> None:
    """It was answered as invalid_json."""
    response = await platform.http.post(
        "/api/v1/uploads",
        headers={**platform.auth(), "Content-Type": content_type},
        content=b"not multipart at all",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 20013


async def test_a_queued_prompt_is_not_readable_in_the_job_store(platform: Platform) -> None:
    """A copy of the NATS store held every queued prompt in plain text."""
    marker = f"private-marker-{uuid.uuid4().hex}"
    dispatcher = platform.stack.child("dispatcher").process
    os.kill(dispatcher.pid, signal.SIGSTOP)  # the job waits in the queue
    try:
        async with platform.stack.bus() as nc:
            js = nc.jetstream()
            before = (await js.stream_info(bus.JOBS_STREAM)).state.messages
            submitted = await platform.http.post(
                "/api/v1/images/generations",
                headers=platform.auth(),
                json={"model": "gpt-image-2", "prompt": marker},
            )
            assert submitted.status_code == 200, submitted.text
            assert (await js.stream_info(bus.JOBS_STREAM)).state.messages == before + 1
        stored = [p for p in (platform.config.data_dir / "nats").rglob("*") if p.is_file()]
        assert stored
        assert not [p for p in stored if marker.encode() in p.read_bytes()]
    finally:
        os.kill(dispatcher.pid, signal.SIGCONT)
    task = await poll_until_done(platform.http, submitted.json()["id"], platform.auth())
    assert task["status"] == "completed"  # the dispatcher opened it


async def test_a_request_that_is_not_http_gets_the_envelope(platform: Platform) -> None:
    answer = await raw_exchange(platform, b"HELLO THERE\r\n\r\n")
    assert status_and_code(answer) == (400, 20014)


LIMIT = 20  # AUTH_FAILURES_PER_MINUTE's default


async def test_failed_authentication_is_throttled_per_address(platform: Platform) -> None:
    guesser, bystander = {"x-forwarded-for": "203.0.113.7"}, {"x-forwarded-for": "203.0.113.8"}
    for _ in range(LIMIT):
        wrong = {**guesser, "Authorization": f"Bearer pr_live_{uuid.uuid4().hex}"}
        response = await platform.http.get("/api/v1/account", headers=wrong)
        assert response.status_code == 401, response.text

    # Now guesses from that address are refused for the rest of the window, without a
    # billing call (a new key counts as a guess) ...
    unseen = await new_account(platform, 10)
    for key in (f"pr_live_{uuid.uuid4().hex}", unseen):
        blocked = await platform.http.get(
            "/api/v1/account", headers={**guesser, "Authorization": f"Bearer {key}"}
        )
        assert blocked.status_code == 429, blocked.text
        assert blocked.json()["error"]["code"] == 50002
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
    # ... and over gRPC, where the address comes from the same header
    meta = (("authorization", "Bearer pr_live_guess"), ("x-forwarded-for", "203.0.113.7"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.config.grpc_port}") as channel:
        stub = public_api_pb2_grpc.PublicApiStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetBalance(public_api_pb2.GetBalanceRequest(), metadata=meta, timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        # A key billing accepted lately still works from the guesser's address: one client
        # behind a NAT once locked every valid key sharing its address out for a minute.
        assert (await platform.http.get("/api/v1/account", headers=platform.auth())).is_success
        shared = await platform.http.get("/api/v1/account", headers={**guesser, **platform.auth()})
        assert shared.status_code == 200, shared.text
        meta = (("authorization", f"Bearer {platform.api_key}"), meta[1])
        await stub.GetBalance(public_api_pb2.GetBalanceRequest(), metadata=meta, timeout=10)

    # Requests without credentials, and other addresses, are served as before.
    assert (await platform.http.get("/healthz", headers=guesser)).status_code == 200
    other = await platform.http.get("/api/v1/account", headers={**bystander, **platform.auth()})
    assert other.status_code == 200


async def test_wrong_admin_tokens_and_grpc_guesses_count_too(platform: Platform) -> None:
    address = "203.0.113.9"
    wrong_admin = {"x-forwarded-for": address, "Authorization": "Bearer pxs_admin_guess"}
    for _ in range(LIMIT // 2):
        response = await platform.http.get("/admin/v1/ledger/check", headers=wrong_admin)
        assert response.status_code == 401, response.text
    meta = (("authorization", "Bearer pr_live_guess"), ("x-forwarded-for", address))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.config.grpc_port}") as channel:
        stub = public_api_pb2_grpc.PublicApiStub(channel)
        for _ in range(LIMIT - LIMIT // 2):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetBalance(public_api_pb2.GetBalanceRequest(), metadata=meta, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    admin = {"x-forwarded-for": address, "Authorization": f"Bearer {platform.config.admin_token}"}
    blocked = await platform.http.get("/admin/v1/ledger/check", headers=admin)
    assert blocked.status_code == 429 and blocked.json()["error"]["code"] == 50002


async def test_an_upload_is_stored_without_its_metadata_or_trailing_bytes(
    platform: Platform,
) -> None:
    tags = PIL.Image.Exif()
    tags[0x9286] = "home: 51.5007 N, 0.1246 W"
    out = io.BytesIO()
    PIL.Image.new("RGB", (96, 64), "teal").save(out, format="JPEG", exif=tags, comment=b"mine")
    sent = out.getvalue() + b"PK\x03\x04 a zip riding along"
    uploaded = await platform.http.post(
        "/api/v1/uploads", headers=platform.auth(), files={"file": ("me.jpg", sent, "image/jpeg")}
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["bytes"] < len(sent)
    async with httpx.AsyncClient(timeout=10) as anyone:
        stored = await anyone.get(uploaded.json()["url"])
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/jpeg"
    assert stored.content.endswith(b"\xff\xd9") and len(stored.content) == uploaded.json()["bytes"]
    for leaked in (b"51.5007", b"Exif", b"mine", b"PK\x03\x04"):
        assert leaked not in stored.content
