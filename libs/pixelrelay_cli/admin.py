"""`pixelrelay admin …`: account and key administration over billing's gRPC API, and
account deletion and export over the gateway's (they span services).

Reads what `make run` reads (its banner prints them): billing at BILLING_ADDR, else
127.0.0.1:$PIXELRELAY_BILLING_PORT (50051); the gateway at GATEWAY_ADDR, else
127.0.0.1:$PIXELRELAY_GRPC_PORT (50050); the admin credential in PIXELRELAY_ADMIN_TOKEN,
else the one `make run` keeps in $PIXELRELAY_DATA_DIR/secrets (var/). A service not
answering within 3 s is named with the address tried. Prints JSON (numbers as numbers);
an export prints the file itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from pixelrelay import bus, export
from pixelrelay.billing_client import BillingClient
from pixelrelay.bus_access import ADMIN_USER, SERVICE_USERS, authorization
from pixelrelay.callers import ADMIN, DISPATCHER, GATEWAY, digest, new_credential
from pixelrelay.capabilities import new_capability_key
from pixelrelay.errors import ApiError
from pixelrelay.ids import random_token
from pixelrelay.scopes import ALL as ALL_SCOPES
from pixelrelay.sealing import new_job_key
from pixelrelay.v1 import admin_pb2, billing_pb2, public_api_pb2
from pixelrelay_cli.admin_client import AdminClient

Command = Callable[[BillingClient, argparse.Namespace], Awaitable[Message | dict[str, Any]]]


async def _create_account(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.create_account(args.name, args.grant)


async def _list_accounts(billing: BillingClient, args: argparse.Namespace) -> dict[str, Any]:
    page = await billing.list_accounts(
        billing_pb2.ListAccountsRequest(search=args.search, limit=args.limit, cursor=args.cursor)
    )
    # The admin REST's shape: numbers as JSON numbers (protobuf's JSON writes int64 as text).
    return {
        "data": [export.account_json(a) for a in page.accounts],
        "next_cursor": page.next_cursor or None,
    }


async def _create_key(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.create_api_key(
        args.account_id,
        args.name,
        expires_at=args.expires_at,
        credit_limit=args.credit_limit,
        rate_limit=args.rate_limit,
        scopes=args.scopes,
    )


async def _list_keys(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.list_api_keys(args.account_id)


async def _revoke_key(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.revoke_api_key(args.key_id, cascade=args.cascade)


async def _top_up(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.top_up(args.account_id, args.amount, args.reason)


async def _adjust(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.adjust(args.account_id, args.amount, args.reason)


async def _ledger(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.list_ledger_entries(
        billing_pb2.ListLedgerEntriesRequest(
            account_id=args.account_id,
            since=args.since,
            until=args.until,
            limit=args.limit,
            cursor=args.cursor,
        )
    )


async def _balance(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.get_account(args.account_id)


async def _ledger_check(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.check_ledger()


async def _create_invite(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.create_invite(args.note, args.expires_at)


async def _list_invites(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.list_invites()


async def _revoke_invite(billing: BillingClient, args: argparse.Namespace) -> Message:
    return await billing.revoke_invite(args.invite_id)


async def _reset_link(billing: BillingClient, args: argparse.Namespace) -> dict[str, Any]:
    """The link's path: the operator hands it over with the console's address."""
    issued = await billing.issue_login_token("reset", account_id=args.account_id)
    return {
        "email": issued.email,
        "expires_at": issued.expires_at,
        "path": f"/login?reset={issued.token}",
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixelrelay", description=__doc__)
    groups = parser.add_subparsers(dest="group", required=True)
    admin = groups.add_parser("admin", help="accounts, keys and the ledger")
    commands = admin.add_subparsers(dest="command", required=True)

    p = commands.add_parser("create-account", help="create an account with its signup grant")
    p.add_argument("name")
    p.add_argument("--grant", type=int, default=None, help="credits instead of the default")
    p.set_defaults(run=_create_account)

    p = commands.add_parser(
        "list-accounts", help="accounts, newest first (deleted ones too), a page at a time"
    )
    p.add_argument("--search", default="", help="part of the name (any case) or the whole id")
    p.add_argument("--limit", type=int, default=50, help="1-200")
    p.add_argument("--cursor", default="", help="next_cursor of the previous page")
    p.set_defaults(run=_list_accounts)

    p = commands.add_parser("create-key", help="issue an API key (shown once)")
    p.add_argument("account_id")
    p.add_argument("--name", default="")
    p.add_argument("--expires-at", type=int, default=0, help="unix seconds")
    p.add_argument("--credit-limit", type=int, default=None)
    p.add_argument("--rate-limit", type=int, default=None, help="requests per minute")
    p.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        choices=ALL_SCOPES,
        help="repeat for each; default every scope",
    )
    p.set_defaults(run=_create_key)

    p = commands.add_parser("list-keys", help="an account's keys (prefix and last four)")
    p.add_argument("account_id")
    p.set_defaults(run=_list_keys)

    p = commands.add_parser("revoke-key", help="revoke a key at once")
    p.add_argument("key_id")
    p.add_argument("--cascade", action="store_true", help="also the keys created from it")
    p.set_defaults(run=_revoke_key)

    for name, run, text in (
        ("top-up", _top_up, "add credits"),
        ("adjust", _adjust, "correct a balance (either sign)"),
    ):
        p = commands.add_parser(name, help=f"{text}, with a reason")
        p.add_argument("account_id")
        p.add_argument("amount", type=int)
        p.add_argument("--reason", required=True)
        p.set_defaults(run=run)

    p = commands.add_parser("ledger", help="an account's ledger entries, newest first")
    p.add_argument("account_id")
    p.add_argument("--since", type=int, default=0, help="unix seconds")
    p.add_argument("--until", type=int, default=0, help="unix seconds")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor", default="")
    p.set_defaults(run=_ledger)

    p = commands.add_parser("balance", help="an account's balance and held credits")
    p.add_argument("account_id")
    p.set_defaults(run=_balance)

    p = commands.add_parser("ledger-check", help="recompute every balance from the ledger")
    p.set_defaults(run=_ledger_check)

    p = commands.add_parser("create-invite", help="an invite code for sign-up (shown once)")
    p.add_argument("--note", default="", help="who it is for")
    p.add_argument("--expires-at", type=int, default=0, help="unix seconds; 0 = never")
    p.set_defaults(run=_create_invite)
    p = commands.add_parser("list-invites", help="invite codes, newest first")
    p.set_defaults(run=_list_invites)
    p = commands.add_parser("revoke-invite", help="revoke an unused invite code")
    p.add_argument("invite_id")
    p.set_defaults(run=_revoke_invite)
    p = commands.add_parser(
        "reset-link", help="a one-use password-reset link for an account's person (1 hour)"
    )
    p.add_argument("account_id")
    p.set_defaults(run=_reset_link)

    p = commands.add_parser(
        "delete-account",
        help="revoke its keys, cancel its pending work, delete its uploads, results and "
        "task records; keep its ledger (run again to finish an interrupted one)",
    )
    p.add_argument("account_id")
    p.add_argument("--reason", required=True)
    p.set_defaults(run=None, local=lambda args: asyncio.run(_delete_account(args)))

    p = commands.add_parser("get-task", help="any account's task by id, with its account and key")
    p.add_argument("task_id")
    p.set_defaults(run=None, local=lambda args: asyncio.run(_gateway_call(args)))

    p = commands.add_parser(
        "channels", help="upstream channels' breakers, calls, errors and latency"
    )
    p.set_defaults(run=None, local=lambda args: asyncio.run(_gateway_call(args)))

    p = commands.add_parser(
        "usage", help="an account's usage, one line per task, newest first (as its dashboard)"
    )
    p.add_argument("account_id")
    p.add_argument("--since", type=int, default=0, help="unix seconds, inclusive")
    p.add_argument("--until", type=int, default=0, help="unix seconds, exclusive")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--cursor", default="")
    p.set_defaults(run=None, local=lambda args: asyncio.run(_gateway_call(args)))

    p = commands.add_parser(
        "margin", help="upstream cost against credits charged, by channel, model or account"
    )
    p.add_argument("--since", type=int, default=0, help="unix seconds, inclusive")
    p.add_argument("--until", type=int, default=0, help="unix seconds, exclusive (default now)")
    p.add_argument("--group-by", choices=["model", "channel", "account"], default="model")
    p.set_defaults(run=None, local=lambda args: asyncio.run(_gateway_call(args)))

    p = commands.add_parser(
        "export-account", help="an account's tasks and ledger, to stdout (before deleting it)"
    )
    p.add_argument("account_id")
    p.add_argument("--format", choices=export.FORMATS, default="json")
    p.add_argument("--part", choices=export.PARTS, default="tasks", help="what a CSV holds")
    p.set_defaults(run=None, local=lambda args: asyncio.run(_export_account(args)))

    p = commands.add_parser(
        "new-credential",
        help="a new service credential, and its TRUSTED_CALLERS entry (no call is made)",
    )
    p.add_argument("caller", choices=[GATEWAY, DISPATCHER, ADMIN])
    p.set_defaults(run=None, local=lambda args: _new_credential(args.caller))

    p = commands.add_parser(
        "nats-users",
        help="a password per NATS user (or NATS_PASSWORD_<USER>) and nats-server's "
        "authorization block for them (no call is made)",
    )
    p.set_defaults(run=None, local=lambda args: _nats_users())

    p = commands.add_parser(
        "new-job-key", help="a JOB_KEYS entry that seals prompts in the job queue (no call)"
    )
    p.set_defaults(run=None, local=lambda args: {"job_key": new_job_key()})

    p = commands.add_parser(
        "new-capability-key",
        help="a TASK_CAPABILITY_KEYS entry that signs each task's capability (no call)",
    )
    p.set_defaults(run=None, local=lambda args: {"capability_key": new_capability_key()})

    p = commands.add_parser(
        "k8s-secrets",
        help="every Secret deploy/k8s needs, with fresh credentials, as a List for "
        "`kubectl apply -f -` (no call is made)",
    )
    p.add_argument("--database-url", required=True, help="postgresql://… for billing and tasks")
    p.add_argument("--s3-access-key", required=True)
    p.add_argument("--s3-secret-key", required=True)
    p.add_argument("--s3-endpoint", default="", help="production: your S3 API's URL")
    p.add_argument(
        "--upstream-key",
        action="append",
        default=[],
        metavar="ENV=KEY",
        help="a channel key, named as its api_key_env in channels.yaml; repeat for each",
    )
    p.add_argument("--postgres-password", default="", help="dev overlay: its PostgreSQL's")
    p.add_argument("--namespace", default="pixelrelay")
    p.set_defaults(run=None, local=_k8s_secrets)

    p = commands.add_parser(
        "bus-setup", help="create or update the JetStream streams (NATS_URL, NATS_USER, …)"
    )
    p.set_defaults(run=None, local=lambda args: asyncio.run(_bus_setup()))
    return parser


def _nats_users() -> dict[str, Any]:
    passwords = {
        user: os.environ.get(f"NATS_PASSWORD_{user.upper()}") or random_token(32)
        for user in (*SERVICE_USERS, ADMIN_USER)
    }
    return {"passwords": passwords, "authorization": authorization(passwords)}


async def _bus_setup() -> dict[str, Any]:
    # Servers each stream is kept on: 3 on a JetStream cluster (the production overlay).
    replicas = int(os.environ.get("BUS_REPLICAS", "1"))
    nc = await bus.connect(
        os.environ.get("NATS_URL", "nats://127.0.0.1:4333"),
        "pixelrelay-admin",
        os.environ.get("NATS_USER", ADMIN_USER),
        os.environ.get("NATS_PASSWORD", ""),
    )
    try:
        await bus.ensure_streams(nc.jetstream(), replicas)
    finally:
        await nc.close()
    return {
        "streams": [bus.JOBS_STREAM, bus.EVENTS_STREAM, bus.DEADLETTER_STREAM],
        "replicas": replicas,
    }


# How long a service may take to accept the connection before the CLI says it is not there.
CONNECT_SECONDS = 3.0


def _address(addr_env: str, port_env: str, port: int) -> str:
    return os.environ.get(addr_env) or f"127.0.0.1:{os.environ.get(port_env) or port}"


def billing_address() -> str:
    return _address("BILLING_ADDR", "PIXELRELAY_BILLING_PORT", 50051)


def gateway_address() -> str:
    return _address("GATEWAY_ADDR", "PIXELRELAY_GRPC_PORT", 50050)


class Unreachable(Exception):
    """A service that did not accept a connection: the message names where it was sought."""


async def _reachable(channel: grpc.aio.Channel, service: str, addr: str, via: str) -> None:
    try:
        await asyncio.wait_for(channel.channel_ready(), CONNECT_SECONDS)
    except TimeoutError:
        raise Unreachable(
            f"{service} did not answer at {addr} within {CONNECT_SECONDS:g} s "
            f"(set by {via}): is the platform running, and on these ports?"
        ) from None


def _gateway() -> AdminClient:
    return AdminClient(gateway_address(), _admin_credential())


async def _gateway_ready(gateway: AdminClient) -> None:
    await _reachable(
        gateway.channel, "the gateway", gateway_address(), "GATEWAY_ADDR or PIXELRELAY_GRPC_PORT"
    )


async def _delete_account(args: argparse.Namespace) -> dict[str, Any]:
    gateway = _gateway()
    try:
        await _gateway_ready(gateway)
        return _as_dict(await gateway.delete_account(args.account_id, args.reason))
    finally:
        await gateway.close()


async def _gateway_call(args: argparse.Namespace) -> dict[str, Any]:
    """get-task, channels, usage and margin: answered by the gateway (Admin), not billing."""
    gateway = _gateway()
    try:
        await _gateway_ready(gateway)
        if args.command == "get-task":
            return _as_dict(await gateway.get_task(args.task_id))
        if args.command == "margin":
            request = admin_pb2.MarginRequest(
                since=args.since, until=args.until, group_by=args.group_by
            )
            return _as_dict(await gateway.get_margin(request))
        if args.command == "usage":
            page = public_api_pb2.ListTaskUsageRequest(
                since=args.since, until=args.until, limit=args.limit, cursor=args.cursor
            )
            return _as_dict(await gateway.list_task_usage(args.account_id, page))
        return _as_dict(await gateway.list_channels())
    finally:
        await gateway.close()


async def _export_account(args: argparse.Namespace) -> None:
    gateway = _gateway()
    try:
        await _gateway_ready(gateway)
        items = await export.started(gateway.export_account(args.account_id))
        async for piece in export.render(items, args.format, args.part):
            sys.stdout.buffer.write(piece)
        sys.stdout.buffer.flush()
    finally:
        await gateway.close()


def _as_dict(message: Message) -> dict[str, Any]:
    """The message as JSON, with its 64-bit integers as numbers (protobuf's JSON mapping
    writes them as strings, for JavaScript's sake; people and jq want numbers)."""
    return _numbers(
        message.DESCRIPTOR,
        json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        ),
    )


_INT64 = (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)


def _numbers(descriptor: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``descriptor``: the message's (protobuf's Python and upb types differ)."""
    for name, value in data.items():
        field = descriptor.fields_by_name.get(name)
        if field is None:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name["value"]
            if entry.cpp_type in _INT64:
                data[name] = {k: int(v) for k, v in value.items()}
            elif entry.message_type is not None:
                data[name] = {k: _numbers(entry.message_type, v) for k, v in value.items()}
        elif field.message_type is not None:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict):
                    _numbers(field.message_type, item)
        elif field.cpp_type in _INT64:
            data[name] = [int(v) for v in value] if isinstance(value, list) else int(value)
    return data


def _admin_credential() -> str:
    if "PIXELRELAY_ADMIN_TOKEN" in os.environ:
        return os.environ["PIXELRELAY_ADMIN_TOKEN"]
    kept = Path(os.environ.get("PIXELRELAY_DATA_DIR", "var")) / "secrets" / f"{ADMIN}.credential"
    return kept.read_text().strip() if kept.exists() else ""


def _new_credential(caller: str) -> dict[str, Any]:
    credential = new_credential()
    return {"credential": credential, "trusted_callers_entry": f"{caller}:{digest(credential)}"}


def _k8s_secrets(args: argparse.Namespace) -> dict[str, Any]:
    """The Secrets of docs/operations.md, "Deploying on Kubernetes": internal credentials
    (and TRUSTED_CALLERS, their digests), NATS users and nats-server's authorization
    block, a job key, the operator's admin credential, and what the operator gives."""
    credentials = {caller: new_credential() for caller in (GATEWAY, DISPATCHER, ADMIN)}
    trusted = ",".join(f"{caller}:{digest(c)}" for caller, c in credentials.items())
    users = _nats_users()
    upstream = dict(item.split("=", 1) for item in args.upstream_key if "=" in item)
    if len(upstream) != len(args.upstream_key):
        raise SystemExit("--upstream-key takes ENV=KEY, e.g. OPENAI_API_KEY=sk-…")
    settings = {
        "DATABASE_URL": args.database_url,
        "S3_ACCESS_KEY": args.s3_access_key,
        "S3_SECRET_KEY": args.s3_secret_key,
        "TRUSTED_CALLERS": trusted,
    }
    if args.s3_endpoint:
        settings["S3_ENDPOINT"] = args.s3_endpoint
    if args.postgres_password:
        settings["POSTGRES_PASSWORD"] = args.postgres_password

    def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": args.namespace},
            "type": "Opaque",
            "stringData": data,
        }

    auth = "authorization: " + orjson.dumps(users["authorization"]).decode() + "\n"
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            secret("pixelrelay-secrets", settings),
            secret(
                "pixelrelay-credentials",
                {
                    GATEWAY: credentials[GATEWAY],
                    DISPATCHER: credentials[DISPATCHER],
                    "job-keys": new_job_key(),
                    # gateway, billing and storage: never mounted by a dispatcher
                    "task-capability-keys": new_capability_key(),
                },
            ),
            secret("pixelrelay-nats-users", users["passwords"]),
            secret("pixelrelay-nats-auth", {"auth.conf": auth}),
            secret("pixelrelay-upstream-keys", upstream),
            # Mounted by no pod: the operator's, for `pixelrelay admin` and /admin/v1.
            secret("pixelrelay-admin", {"token": credentials[ADMIN]}),
        ],
    }


async def _run(run: Command, args: argparse.Namespace) -> dict[str, Any]:
    billing = BillingClient(billing_address(), _admin_credential())
    try:
        await _reachable(
            billing.channel, "billing", billing_address(), "BILLING_ADDR or PIXELRELAY_BILLING_PORT"
        )
        reply = await run(billing, args)
    finally:
        await billing.close()
    return reply if isinstance(reply, dict) else _as_dict(reply)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = args.local(args) if args.run is None else asyncio.run(_run(args.run, args))
    except ApiError as err:
        sys.stderr.write(f"error {err.kind.code} {err.kind.type}: {err.message}\n")
        return 1
    except Unreachable as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    if result is None:  # it wrote its output itself (an export)
        return 0
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 1 if result.get("ok") is False else 0


if __name__ == "__main__":
    raise SystemExit(main())
