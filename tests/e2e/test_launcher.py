"""The launcher behind `make run`, the e2e fixtures and `make bench`: ports that cannot
collide, children that fail loudly at start, and no child outliving its launcher."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pixelrelay.grpc_server import check_health
from pixelrelay.v1 import billing_pb2
from pixelrelay_dev.children import ChildExited
from pixelrelay_dev.config import StackConfig
from pixelrelay_dev.devstack import Stack
from tests.e2e.helpers import poll_until_done

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BASIC = {"model": "gpt-image-2", "prompt": "a lighthouse", "resolution": "1k"}


def own_ports(config: StackConfig) -> list[int]:
    ports = [config.http_port, config.nats_port, config.s3_port, config.sim_port]
    for grpc_port, metrics_port in config.service_ports().values():
        ports += [grpc_port, metrics_port]
    return ports


def all_free(ports: list[int]) -> bool:
    """Each port can be listened on again, as our servers do (SO_REUSEADDR: connections
    left in TIME_WAIT do not count)."""
    for port in ports:
        try:
            socket.create_server(("0.0.0.0", port)).close()
        except OSError:
            return False
    return True


async def test_a_child_that_dies_at_start_is_named_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "billing.db").mkdir()  # a database that cannot be opened
    config = StackConfig.leased_ports(tmp_path, database_url=f"sqlite:///{tmp_path}/billing.db")
    with pytest.raises(ChildExited) as caught:
        await Stack(config).start()
    # Not "did not become ready in 60s": the launcher saw the exit and says why.
    assert caught.value.name == "billing"
    assert "unable to open database file" in str(caught.value)
    assert not caught.value.port_taken
    assert all_free(own_ports(config))  # the children that did start were stopped


@pytest.mark.parametrize(
    ("child", "port"),
    [
        ("nats", lambda c: c.nats_port),
        ("s3", lambda c: c.s3_port),
        ("pixelrelay_sim", lambda c: c.sim_port),
        ("billing", lambda c: c.billing_port),  # gRPC
        ("storage", lambda c: c.metrics_port + 2),  # Prometheus
        ("gateway", lambda c: c.http_port),  # uvicorn
    ],
)
async def test_a_taken_port_stops_a_stack_on_configured_ports(
    tmp_path: Path, child: str, port: Callable[[StackConfig], int]
) -> None:
    config = StackConfig.leased_ports(tmp_path)
    lease, config.lease = config.lease, None  # configured, like `make run`'s defaults
    try:
        with (
            socket.create_server(("127.0.0.1", port(config))),
            pytest.raises(ChildExited) as caught,
        ):
            await Stack(config).start()
        assert caught.value.name == child and caught.value.port_taken, caught.value
    finally:
        assert lease is not None
        lease.release()


async def test_a_stack_on_leased_ports_starts_again_when_one_is_taken(tmp_path: Path) -> None:
    """Another program took a leased port before the child bound it: new ports, no error."""
    config = StackConfig.leased_ports(tmp_path, sim_latency_ms=50)
    taken = config.storage_port
    with socket.create_server(("127.0.0.1", taken)):
        stack = Stack(config)
        await stack.start()
        try:
            assert config.storage_port != taken
            account_id, key = await stack.dev_account()
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=config.base_url, timeout=30) as http:
                submitted = await http.post(
                    "/api/v1/images/generations", headers=headers, json=BASIC
                )
                assert submitted.status_code == 200, submitted.text
                task = await poll_until_done(http, submitted.json()["id"], headers)
            assert task["status"] == "completed"
        finally:
            await stack.stop()
    assert all_free(own_ports(config))


async def test_the_platform_starts_and_stops_again_and_again(tmp_path: Path) -> None:
    """Start-up repeated on new ports each time, so a collision has chances to show."""
    for round_ in range(3):
        config = StackConfig.leased_ports(tmp_path / str(round_), dispatchers=2)
        stack = Stack(config)
        await stack.start()
        try:
            for name, (grpc_port, _metrics) in config.service_ports().items():
                assert await check_health(f"127.0.0.1:{grpc_port}"), name
        finally:
            await stack.stop()
        assert all_free(own_ports(config))


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the field after the state is the parent's pid
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running: a zombie holds no port and waits only for whoever reaps orphans here."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def make_run_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], StackConfig]]:
    config = StackConfig.leased_ports(tmp_path / "var")
    env = {
        **os.environ,
        "PIXELRELAY_DATA_DIR": str(config.data_dir),
        "PIXELRELAY_HTTP_PORT": str(config.http_port),
        "PIXELRELAY_GRPC_PORT": str(config.grpc_port),
        "PIXELRELAY_BILLING_PORT": str(config.billing_port),
        "PIXELRELAY_STORAGE_PORT": str(config.storage_port),
        "PIXELRELAY_DISPATCHER_PORT": str(config.dispatcher_port),
        "PIXELRELAY_NATS_PORT": str(config.nats_port),
        "PIXELRELAY_S3_PORT": str(config.s3_port),
        "PIXELRELAY_SIM_PORT": str(config.sim_port),
        "PIXELRELAY_METRICS_PORT": str(config.metrics_port),
    }
    yield env, config


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
@pytest.mark.parametrize("victim", ["launcher", "make"])
async def test_killing_make_run_leaves_no_child_behind(
    make_run_env: tuple[dict[str, str], StackConfig], victim: str
) -> None:
    env, config = make_run_env
    venv = Path(sys.executable).parent.parent  # make's $(VENV): the one running this test
    make = await asyncio.create_subprocess_exec(
        "make",
        "-s",
        "run",
        f"VENV={venv}",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert make.stdout is not None
    output = b""
    children: list[int] = []
    try:
        while b"PixelRelay is running" not in output:
            line = await asyncio.wait_for(make.stdout.readline(), 120)
            assert line, f"make run ended before it was ready:\n{output.decode()}"
            output += line
        [launcher] = children_of(make.pid)
        children = children_of(launcher)
        assert len(children) == 7, output.decode()  # NATS, S3, simulator, four services
        os.kill(launcher if victim == "launcher" else make.pid, signal.SIGKILL)
        ports = own_ports(config)

        def gone() -> bool:  # a dying process's sockets close a moment after it is a zombie
            return not any(alive(pid) for pid in [launcher, *children]) and all_free(ports)

        deadline = time.monotonic() + 60
        while not gone() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        left = [pid for pid in [launcher, *children] if alive(pid)]
        assert not left, f"still running after 60 s: {left}"
        assert all_free(ports), "ports still taken 60 s after the launcher died"
    finally:
        for pid in children:  # a failed run must not leave them behind either
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if make.returncode is None:
            make.kill()
        await make.wait()


async def test_restarts_keep_one_dev_account_and_its_key(tmp_path: Path) -> None:
    """`make run` again and again on one data dir: the dev account and key of the first
    start, also with PIXELRELAY_DEV_API_KEY set (a key that billing knows already is not
    issued twice), and never another "dev" account."""
    chosen = "pr_live_" + "Dev0" * 8
    seen: list[tuple[str, str]] = []
    for dev_api_key in ("", "", chosen, chosen):
        config = StackConfig.leased_ports(tmp_path, sim_latency_ms=50)
        config.dev_api_key = dev_api_key
        stack = Stack(config)
        await stack.start()
        try:
            account_id, key = await stack.dev_account()
            seen.append((account_id, key))
            async with httpx.AsyncClient(base_url=config.base_url, timeout=30) as http:
                balance = await http.get(
                    "/api/v1/account", headers={"Authorization": f"Bearer {key}"}
                )
            assert balance.status_code == 200 and balance.json()["account_id"] == account_id
            operator = stack.billing()
            try:
                listed = await operator.list_accounts(
                    billing_pb2.ListAccountsRequest(search="dev", limit=200)
                )
            finally:
                await operator.close()
            assert [a.id for a in listed.accounts if a.name == "dev"] == [account_id]
        finally:
            await stack.stop()
    first = seen[0][0]
    assert seen[1] == seen[0]  # the kept key
    assert seen[3] == seen[2] == (first, chosen)  # the chosen key, on the same account


async def test_a_completed_tasks_image_outlives_a_restart(tmp_path: Path) -> None:
    """`make run` stopped and started again on one data dir: the task still says completed,
    and its URLs, the ones given before the restart and after, still download the image
    (the development object store keeps its objects in var/s3)."""
    urls: list[str] = []
    # The same ports both times, as `make run`'s: a URL signs its host and port.
    config = StackConfig.leased_ports(tmp_path, sim_latency_ms=50)
    for _ in range(2):
        stack = Stack(config)
        await stack.start()
        try:
            _, key = await stack.dev_account()
            auth = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=config.base_url, timeout=30) as http:
                if not urls:
                    submitted = await http.post(
                        "/api/v1/images/generations", headers=auth, json=BASIC
                    )
                    task_id = submitted.json()["id"]
                task = await poll_until_done(http, task_id, auth)
            assert task["status"] == "completed", task
            urls += task["output"]["image_urls"]
            async with httpx.AsyncClient() as anyone:
                for url in urls:
                    image = await anyone.get(url)
                    assert image.status_code == 200, image.text
                    assert image.content.startswith(b"\x89PNG")
        finally:
            await stack.stop()
    assert (tmp_path / "s3" / "pixelrelay" / "tasks" / task_id / "0.png").exists()
