"""Who may do what on the bus: one NATS user per service, allowed exactly its part of the
task flow, and the nats-server configuration that enforces it.

    gateway     publishes jobs and dead-lettered events; consumes task events; tells the
                other replicas a task settled (core NATS, pixelrelay.settled.*); receives
                the images relayed to a waiting request (core NATS, pixelrelay.relay.*)
                and the dispatchers' channel health
    dispatcher  consumes jobs and dead letters; publishes started and failed events, relays
                images and reports its channels' health (core NATS, for the operator)
    storage     publishes completed events and reads a task's back by subject
    billing     consumes completed, failed and expired events; publishes expired (holds
                past their deadline) and settled events; reads a task's events by subject
    admin       creates the streams (`pixelrelay admin bus-setup`, `make run`); no limits

So a leaked gateway password cannot fail someone's task, and no service but the dispatcher
can read a queued job (its prompt). Each user receives replies under its own inbox prefix,
so none can listen to another's. Passwords reach nats-server only as bcrypt hashes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import bcrypt

from pixelrelay import bus

__all__ = ["ADMIN_USER", "SERVICE_USERS", "authorization", "permissions", "server_config"]

ADMIN_USER = "admin"
SERVICE_USERS = ("gateway", "dispatcher", "storage", "billing")
_BCRYPT_ROUNDS = 10  # checked once per connection


def _stream_info(*streams: str) -> list[str]:
    return ["$JS.API.INFO", *(f"$JS.API.STREAM.INFO.{s}" for s in streams)]


def _consumer(stream: str, name: str) -> list[str]:
    """Create (or find) one durable pull consumer, fetch from it and ack its messages."""
    api = "$JS.API.CONSUMER"
    return [
        f"{api}.INFO.{stream}.{name}",
        f"{api}.CREATE.{stream}.{name}",
        f"{api}.CREATE.{stream}.{name}.>",
        f"{api}.DURABLE.CREATE.{stream}.{name}",
        f"{api}.MSG.NEXT.{stream}.{name}",
        f"$JS.ACK.{stream}.{name}.>",
    ]


def _event(kind: str) -> str:
    """Every task's events of this kind (task_events.subject)."""
    return f"{bus.EVENTS_PREFIX}.{kind}.*"


_PUBLISH: dict[str, list[str]] = {
    "gateway": [
        bus.JOBS_SUBJECTS,
        bus.DEADLETTER_EVENTS_SUBJECT,
        *_stream_info(bus.JOBS_STREAM, bus.EVENTS_STREAM),
        *_consumer(bus.EVENTS_STREAM, bus.GATEWAY_EVENTS_CONSUMER),
        bus.SETTLED_SUBJECTS,
    ],
    "dispatcher": [
        _event("started"),
        _event("failed"),
        bus.RELAY_SUBJECTS,
        bus.HEALTH_SUBJECT,
        bus.DEADLETTER_SUBJECT,
        *_stream_info(bus.JOBS_STREAM, bus.EVENTS_STREAM, bus.DEADLETTER_STREAM),
        *_consumer(bus.JOBS_STREAM, bus.DISPATCHER_CONSUMER),
        *_consumer(bus.DEADLETTER_STREAM, bus.DEADLETTER_CONSUMER),
        # A dead job is read once (to fail its task) and removed from the work queue; a
        # task's settled event is looked up before its upstream call.
        f"$JS.API.STREAM.MSG.GET.{bus.JOBS_STREAM}",
        f"$JS.API.STREAM.MSG.GET.{bus.EVENTS_STREAM}",
        f"$JS.API.STREAM.MSG.DELETE.{bus.JOBS_STREAM}",
    ],
    "storage": [
        _event("completed"),
        *_stream_info(bus.EVENTS_STREAM),
        # A task's completed event is its manifest: looked up before storing (written
        # once) and for a redelivered job (Reannounce).
        f"$JS.API.STREAM.MSG.GET.{bus.EVENTS_STREAM}",
    ],
    "billing": [
        _event("expired"),
        _event("settled"),
        bus.DEADLETTER_EVENTS_SUBJECT,
        # The jobs stream's info, by subject: whether a task's job is still queued (the
        # sweeper; message counts only, never a job).
        *_stream_info(bus.EVENTS_STREAM, bus.JOBS_STREAM),
        *_consumer(bus.EVENTS_STREAM, bus.SETTLEMENT_CONSUMER),
        # A task's completed or failed event, looked up by subject before its hold is
        # announced expired (sweeper.py).
        f"$JS.API.STREAM.MSG.GET.{bus.EVENTS_STREAM}",
    ],
}


_SUBSCRIBE: dict[str, list[str]] = {
    "gateway": [bus.SETTLED_SUBJECTS, bus.RELAY_SUBJECTS, bus.HEALTH_SUBJECT]
}


def permissions(user: str) -> dict[str, dict[str, list[str]]]:
    """A service user's NATS permissions: everything not listed is refused."""
    return {
        "publish": {"allow": _PUBLISH[user]},
        "subscribe": {"allow": [f"{bus.inbox_prefix(user)}.>", *_SUBSCRIBE.get(user, [])]},
    }


def authorization(passwords: Mapping[str, str]) -> dict[str, object]:
    """nats-server's ``authorization`` block: one user per entry of ``passwords`` (the
    service users with their permissions, ``admin`` without limits), bcrypt-hashed."""
    users = []
    for user, password in passwords.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(_BCRYPT_ROUNDS)).decode()
        entry: dict[str, object] = {"user": user, "password": hashed}
        if user != ADMIN_USER:
            entry["permissions"] = permissions(user)
        users.append(entry)
    return {"users": users}


def server_config(
    passwords: Mapping[str, str],
    *,
    host: str,
    port: int,
    store_dir: Path,
    cluster: tuple[str, int, list[str]] | None = None,
) -> str:
    """A whole nats-server configuration: JetStream and ``authorization(passwords)``;
    with ``cluster`` (this node's name, its route port, every node's route URL), one node
    of a JetStream cluster."""
    config: dict[str, object] = {
        "host": host,
        "port": port,
        "jetstream": {"store_dir": str(store_dir)},
        "authorization": authorization(passwords),
    }
    if cluster is not None:
        name, route_port, routes = cluster
        config["server_name"] = name
        config["cluster"] = {
            "name": "pixelrelay",
            "host": host,
            "port": route_port,
            "routes": routes,
        }
    # nats-server reads JSON as a subset of its own format.
    return json.dumps(config, indent=2)
