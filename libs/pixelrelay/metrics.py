"""Prometheus: every service exposes /metrics on its own port."""

from __future__ import annotations

from prometheus_client import Histogram, start_http_server

# Latency buckets (seconds) for in-platform operations: 0.5 ms .. 10 s.
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

RPC_LATENCY = Histogram(
    "pixelrelay_rpc_seconds",
    "Server-side gRPC handling time",
    ["method", "code"],
    buckets=FAST_BUCKETS,
)

BATCH_SIZE = Histogram(
    "pixelrelay_batch_size",
    "Items per batched call (billing holds, task inserts): how much work one call saves",
    ["batch"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


def start_metrics_server(port: int, host: str = "0.0.0.0") -> int:
    """Serve /metrics from a background thread; returns the bound port (``0``: any free)."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)
