"""How services start when their configuration or their dependencies are not right."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pixelrelay.capabilities import new_capability_key
from pixelrelay_billing.migrate import SCHEMA as BILLING
from pixelrelay_dev.ports import lease_ports
from tests.integration.conftest import nats_on
from tests.unit.dispatcher.test_channels import VALID
from tests.utils.databases import POSTGRES_URL, postgres_database


def start_dispatcher(**env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pixelrelay_dispatcher`` with only ``env`` (and PATH) set, until it exits."""
    return subprocess.run(
        [sys.executable, "-m", "pixelrelay_dispatcher"],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def refusal(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 2, run.stdout + run.stderr
    record = json.loads(run.stdout.strip().splitlines()[-1])  # logs are JSON lines on stdout
    assert record["level"] == "critical"
    return str(record["msg"])


@pytest.mark.parametrize("service", ["billing", "gateway", "dispatcher"])
def test_a_catalog_that_cannot_be_used_stops_every_service_listing_its_problems(
    tmp_path: Path, service: str
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("version: x\nmodels: {}\ncolour: red\naliases: {a: b}\n")
    run = subprocess.run(
        [sys.executable, "-m", f"pixelrelay_{service}"],
        env={"PATH": os.environ.get("PATH", ""), "CATALOG_FILE": str(catalog)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    message = refusal(run)
    assert f"{catalog} cannot be used" in message
    assert "models must not be empty" in message and "colour is not a field here" in message


def test_a_dispatcher_without_channels_refuses_to_start_and_says_why() -> None:
    message = refusal(start_dispatcher())
    assert "no channels configured: set CHANNELS_FILE" in message


def test_a_dispatcher_lists_every_problem_of_its_channel_file(tmp_path: Path) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        VALID.replace("model: gpt-image-2,", "model: gpt-image-2, colour: red,").replace(
            "https://b.example/v1", "http://127.0.0.1:8090/v1"
        )
    )
    message = refusal(start_dispatcher(CHANNELS_FILE=str(channels), UPSTREAM_API_KEY="sk-x"))
    assert "colour: Extra inputs are not permitted" in message
    assert "OTHER_KEY is not set" in message
    assert "http://127.0.0.1:8090/v1 is this machine" in message


@pytest.mark.parametrize("secret", ["sk-live-secret-key"])
def test_the_refusal_never_shows_a_key(tmp_path: Path, secret: str) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(VALID.replace("https://b.example/v1", "http://localhost/v1"))
    run = start_dispatcher(CHANNELS_FILE=str(channels), UPSTREAM_API_KEY=secret)
    refusal(run)
    assert secret not in run.stderr + run.stdout


async def health(port: int) -> str:
    """The status a probe would see on ``port``: SERVING, NOT_SERVING, or DOWN."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
        except grpc.aio.AioRpcError:
            return "DOWN"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def until_health(port: int, want: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    seen = ""
    while time.monotonic() < deadline:
        if (seen := await health(port)) == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health stayed {seen}, expected {want}")


@contextlib.contextmanager
def service(module: str, log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            env={"PATH": os.environ.get("PATH", ""), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


@pytest.mark.postgres
async def test_billing_waits_not_serving_for_its_schema_and_nats(tmp_path: Path) -> None:
    """In a cluster the pods start in any order: billing, before the migrations Job ran and
    before NATS is up, answers NOT_SERVING and retries; then it serves, without a restart."""
    if not POSTGRES_URL:
        pytest.skip("PIXELRELAY_TEST_POSTGRES_URL is not set")
    with postgres_database() as db, lease_ports(2) as lease:
        grpc_port, nats_port = lease.ports[0], lease.ports[0] + 1
        log = tmp_path / "billing.log"
        with service(
            "pixelrelay_billing",
            log,
            GRPC_PORT=str(grpc_port),
            GRPC_HOST="127.0.0.1",
            DATABASE_URL=db.url,
            MIGRATE_ON_START="false",
            NATS_URL=f"nats://127.0.0.1:{nats_port}",
            TASK_CAPABILITY_KEYS=new_capability_key(),
        ) as billing:
            await until_health(grpc_port, "NOT_SERVING")
            await asyncio.sleep(2.0)  # it keeps waiting: neither dead nor ready
            assert billing.poll() is None and await health(grpc_port) == "NOT_SERVING"
            BILLING.upgrade(db.url)  # what the migrations Job does
            await asyncio.sleep(2.0)
            assert await health(grpc_port) == "NOT_SERVING"  # NATS is still missing
            async with nats_on(nats_port, tmp_path / "nats"):
                await until_health(grpc_port, "SERVING")
                billing.terminate()
                assert billing.wait(10) == 0
    waits = log.read_text()
    assert "waiting for the billing database" in waits and "lacks migrations" in waits
    assert "NATS unreachable" in waits and "Traceback" not in waits


async def test_a_service_stopped_while_waiting_exits_cleanly(tmp_path: Path) -> None:
    with lease_ports(2) as lease:
        grpc_port, nats_port = lease.ports[0], lease.ports[0] + 1
        with service(
            "pixelrelay_storage",
            tmp_path / "storage.log",
            GRPC_PORT=str(grpc_port),
            GRPC_HOST="127.0.0.1",
            S3_ENDPOINT=f"http://127.0.0.1:{nats_port}",  # nothing there either
            TASK_CAPABILITY_KEYS=new_capability_key(),
        ) as storage:
            await until_health(grpc_port, "NOT_SERVING")
            storage.terminate()
            assert storage.wait(10) == 0
    assert "waiting for the object store" in (tmp_path / "storage.log").read_text()
