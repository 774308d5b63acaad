"""Operators list accounts: `GET /admin/v1/accounts` (a translation of Billing.ListAccounts)
and `pixelrelay admin list-accounts`, with the operator's credential and nobody else's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from pixelrelay.ids import random_token
from pixelrelay_dev.ports import lease_ports
from tests.e2e.conftest import Platform
from tests.e2e.helpers import admin

pytestmark = pytest.mark.e2e


async def _create(platform: Platform, name: str) -> dict[str, Any]:
    created = await platform.http.post(
        "/admin/v1/accounts", headers=admin(platform), json={"name": name, "grant": 3}
    )
    assert created.status_code == 200, created.text
    return dict(created.json())


async def test_operators_page_through_accounts_found_by_name_or_id(platform: Platform) -> None:
    tag = random_token(8)
    made = [await _create(platform, f"Listed {tag} {i}") for i in range(3)]
    seen: list[dict[str, Any]] = []
    cursor: str | None = ""
    while cursor is not None:
        page = await platform.http.get(
            "/admin/v1/accounts",
            params={"search": f"listed {tag}", "limit": 2, "cursor": cursor},
            headers=admin(platform),
        )
        assert page.status_code == 200, page.text
        seen += page.json()["data"]
        cursor = page.json()["next_cursor"]
    assert [a["id"] for a in seen] == [a["id"] for a in reversed(made)]
    first = seen[-1]
    assert first["name"] == f"Listed {tag} 0" and (first["balance"], first["held"]) == (3, 0)
    assert first["created_at"] > 0 and first["deleted_at"] is None

    by_id = await platform.http.get(
        "/admin/v1/accounts", params={"search": made[1]["id"]}, headers=admin(platform)
    )
    assert [a["id"] for a in by_id.json()["data"]] == [made[1]["id"]]


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"search": "x" * 201}, {"cursor": "../x"}]
)
async def test_bad_listing_parameters_are_refused(
    platform: Platform, params: dict[str, Any]
) -> None:
    refused = await platform.http.get("/admin/v1/accounts", params=params, headers=admin(platform))
    assert refused.status_code == 400, refused.text


@pytest.mark.parametrize("who", ["nobody", "customer"])
async def test_only_the_operator_lists_accounts(platform: Platform, who: str) -> None:
    headers = platform.auth() if who == "customer" else {}
    refused = await platform.http.get("/admin/v1/accounts", headers=headers)
    assert refused.status_code == 401, refused.text
    assert platform.account_id not in refused.text


def test_the_cli_lists_accounts_with_numbers_as_numbers(platform: Platform) -> None:
    env = {
        **os.environ,
        "BILLING_ADDR": f"127.0.0.1:{platform.config.billing_port}",
        "PIXELRELAY_ADMIN_TOKEN": platform.config.admin_token,
    }
    done = subprocess.run(
        [sys.executable, "-m", "pixelrelay_cli", "admin", "list-accounts"]
        + ["--search", platform.account_id, "--limit", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    (account,) = listed["data"]
    assert account["id"] == platform.account_id and listed["next_cursor"] is None
    assert isinstance(account["balance"], int) and isinstance(account["created_at"], int)

    customer = subprocess.run(
        [sys.executable, "-m", "pixelrelay_cli", "admin", "list-accounts"],
        env={**env, "PIXELRELAY_ADMIN_TOKEN": platform.api_key},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert customer.returncode == 1 and "invalid_service_credential" in customer.stderr


def test_the_cli_finds_the_platform_by_make_runs_variables_or_names_where_it_looked(
    platform: Platform,
) -> None:
    """PIXELRELAY_BILLING_PORT and PIXELRELAY_GRPC_PORT, as `make run`'s banner prints them
    (this platform is on leased, non-default ports); numbers come back as numbers; nothing
    listening is said within seconds, with the address tried."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BILLING_ADDR", "GATEWAY_ADDR", "PIXELRELAY_ADMIN_TOKEN")
    }
    env |= {
        "PIXELRELAY_BILLING_PORT": str(platform.config.billing_port),
        "PIXELRELAY_GRPC_PORT": str(platform.config.grpc_port),
        "PIXELRELAY_DATA_DIR": str(platform.config.data_dir),  # its kept admin credential
    }

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pixelrelay_cli", "admin", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=30,
        )

    balance = cli("balance", platform.account_id)
    assert balance.returncode == 0, balance.stderr
    account = json.loads(balance.stdout)
    assert isinstance(account["balance"], int) and isinstance(account["held"], int)
    usage = cli("usage", platform.account_id, "--limit", "1")
    assert usage.returncode == 0, usage.stderr

    with lease_ports(1) as lease:
        (nothing_here,) = lease.ports
        started = time.monotonic()
        for args, variable in (
            (("balance", platform.account_id), "PIXELRELAY_BILLING_PORT"),
            (("get-task", "task_abc"), "PIXELRELAY_GRPC_PORT"),
        ):
            missing = cli(*args, **{variable: str(nothing_here)})
            assert missing.returncode == 1
            assert f"127.0.0.1:{nothing_here}" in missing.stderr, missing.stderr
            assert variable in missing.stderr
        assert time.monotonic() - started < 2 * 8  # 3 s each, and the interpreter's start
