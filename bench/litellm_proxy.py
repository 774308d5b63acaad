"""LiteLLM's proxy in front of an upstream simulator: the yardstick for what /v1 adds.

The proxy runs from a venv of its own (.venv-litellm, `make bench-litellm`): its pins would
otherwise hold back ours (openai<4, websockets<16, rich<14), and a bench-only tool with a
supply-chain incident in its past stays out of the environment the platform and tests run in.
It is configured to reach nothing but the simulator: no database, no telemetry, no fetch of
the model cost map or other catalogues from GitHub, no per-request logging."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from pixelrelay_dev.ports import lease_ports

REPO = Path(__file__).resolve().parent.parent
VENV = ".venv-litellm"  # make bench-litellm
LITELLM = REPO / VENV / "bin" / "litellm"
MODEL = "gpt-image-2"
# It starts in ~6 s on an idle machine; the bench starts it beside a loaded platform.
START_TIMEOUT = 90.0
# On SIGTERM it drains in-flight requests for up to 30 s (GRACEFUL_SHUTDOWN_TIMEOUT).
STOP_GRACE = 10.0

# The proxy's whole environment, with PATH and HOME: nothing the bench inherits (a
# DATABASE_URL, provider keys, LITELLM_* settings) changes what it does or reaches.
ENV = {
    # DEV, the default, loads a .env from the working directory into the proxy.
    "LITELLM_MODE": "PRODUCTION",
    # Also uvicorn's level: no access log line per request, so logging does not skew timing.
    "LITELLM_LOG": "ERROR",
    # Bundled copies: each is otherwise fetched from the internet (the cost map at import,
    # even by `litellm --help`), which fails where only loopback is reachable.
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_TELEMETRY_DISABLED": "true",
    "DISABLE_ADMIN_UI": "True",
}


@dataclass(frozen=True)
class ProxyEndpoint:
    url: str  # the proxy's POST /v1/images/generations
    headers: dict[str, str]  # its master key
    pid: int  # its process (bench/cpu.py)


def available() -> str | None:
    """None if the proxy can be started, else why not, in one line for the report."""
    if not os.access(LITELLM, os.X_OK):
        return f"LiteLLM is not installed (no {VENV}: make bench-litellm)"
    return None


def version() -> str:
    """The installed version, from the marker `make bench-litellm` leaves."""
    markers = sorted((REPO / VENV).glob(".litellm-*"))
    return markers[-1].name.removeprefix(".litellm-") if markers else "unknown"


def _config(upstream_base_url: str, master_key: str) -> str:
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": upstream_base_url.rstrip("/"),
                    "api_key": "sim",
                },
                "model_info": {"mode": "image_generation"},
            }
        ],
        # Without a database_url only the master key is accepted (other keys answer 400).
        "general_settings": {"master_key": master_key},
    }
    return json.dumps(config, indent=2)  # JSON is YAML


def _tail(log: Path, lines: int = 30) -> str:
    text = log.read_bytes()[-64 * 1024 :].decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


async def _wait_ready(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"LiteLLM's proxy exited with code {process.returncode} while starting; "
                    f"the end of {log.name}:\n{_tail(log)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base}/health/liveliness")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(
        f"LiteLLM's proxy did not answer in {START_TIMEOUT:.0f}s; "
        f"the end of {log.name}:\n{_tail(log)}"
    )


async def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        await asyncio.to_thread(process.wait, STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait)


@contextlib.asynccontextmanager
async def litellm_proxy(upstream_base_url: str) -> AsyncIterator[ProxyEndpoint]:
    """LiteLLM's proxy, one worker, routing ``gpt-image-2`` to ``upstream_base_url`` (an
    OpenAI base URL ending in /v1, as a channel's base_url); stopped on the way out."""
    reason = available()
    if reason is not None:
        raise RuntimeError(reason)
    master_key = f"sk-bench-{secrets.token_hex(16)}"  # LiteLLM's keys start with sk-
    with (
        tempfile.TemporaryDirectory(prefix="pixelrelay-litellm-") as tmp,
        lease_ports(1) as lease,
    ):
        work = Path(tmp)
        config = work / "config.yaml"
        config.write_text(_config(upstream_base_url, master_key))
        log = work / "litellm.log"
        [port] = lease.ports
        base = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(LITELLM), "--config", str(config), "--host", "127.0.0.1"]
                + ["--port", str(port), "--num_workers", "1"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=work,  # where it may write anything of its own, gone on exit
                env={"PATH": os.environ.get("PATH", ""), "HOME": tmp, **ENV},
            )
        try:
            await _wait_ready(process, base, log)
            yield ProxyEndpoint(
                f"{base}/v1/images/generations",
                {"Authorization": f"Bearer {master_key}"},
                process.pid,
            )
        finally:
            await _stop(process)
