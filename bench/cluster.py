"""python -m bench.cluster (make cluster-test): the scale-out topology on this machine,
under load, losing one of each replicated component in turn.

A 3-node NATS JetStream cluster (every stream on all three), PostgreSQL for billing and
the task records (PIXELRELAY_TEST_POSTGRES_URL, in a schema of its own; SQLite shared by
the replicas without it), the dev S3, 2 gateways, 2 billing, 3 dispatchers, 2 storage, and
the two upstream simulators of the soak. Clients spread their submits over both gateways
and retry on the other one, as a balancer would. Meanwhile one NATS node, one dispatcher,
one gateway and one billing are killed with SIGKILL in turn and brought back. The audit
is the soak's (bench/soak.py): every accepted task completed or failed, none charged
twice, balance = grant - charged, the ledger check passes, generations per task.

CLUSTER_MINUTES (load, default 3), CLUSTER_RATE (tasks/s, 8), CLUSTER_KILL_EVERY (s, 20).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from bench.soak import Plan, run
from tests.utils.databases import POSTGRES_URL, postgres_database

TOPOLOGY = {"gateways": 2, "billings": 2, "storages": 2, "nats_nodes": 3}
TARGETS = ("nats-1", "dispatcher-1", "gateway-1", "billing-1")


async def main() -> int:
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(postgres_database()).url if POSTGRES_URL else ""
        return await run(
            Plan(
                name="cluster",
                minutes=float(os.environ.get("CLUSTER_MINUTES", "3")),
                rate=float(os.environ.get("CLUSTER_RATE", "8")),
                kill_every=float(os.environ.get("CLUSTER_KILL_EVERY", "20")),
                targets=TARGETS,
                dispatchers=3,
                topology={**TOPOLOGY, "database_url": database},
            )
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="cluster: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sys.exit(asyncio.run(main()))
