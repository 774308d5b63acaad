from __future__ import annotations

import random
import socket
import subprocess
import sys

import pytest

from pixelrelay_dev import ports
from pixelrelay_dev.ports import ephemeral_range, lease_ports, safe_range


def force_next_port(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """Make the lease try ``port`` first, then any other."""
    tries = iter([port])
    real = random.randrange
    monkeypatch.setattr(
        "pixelrelay_dev.ports.random.randrange", lambda a, b: next(tries, None) or real(a, b)
    )


def test_leased_ports_are_outside_the_ephemeral_range_and_free() -> None:
    low, high = ephemeral_range()
    with lease_ports(1, 1, 1, 4) as lease:
        taken = [
            p
            for first, size in zip(lease.ports, (1, 1, 1, 4), strict=True)
            for p in range(first, first + size)
        ]
        assert len(set(taken)) == 7
        for port in taken:
            assert not low <= port <= high
            with socket.socket() as s:
                s.bind(("0.0.0.0", port))


@pytest.mark.parametrize(
    ("ephemeral", "expected"),
    [
        ((32_768, 60_999), range(15_000, 32_768)),  # Linux's default
        ((10_000, 20_000), range(20_001, 65_536)),
        ((49_152, 65_535), range(15_000, 49_152)),  # macOS, BSD
    ],
)
def test_the_safe_range_avoids_the_ephemeral_one(
    monkeypatch: pytest.MonkeyPatch, ephemeral: tuple[int, int], expected: range
) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: ephemeral)
    assert safe_range() == expected


def test_no_room_outside_the_ephemeral_range_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1_024, 65_000))
    with pytest.raises(RuntimeError, match="no room outside"):
        safe_range()


def test_a_port_leased_by_another_process_is_never_handed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pixelrelay_dev.ports import lease_ports; "
            "lease = lease_ports(1); print(lease.ports[0], flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        held = int(holder.stdout.readline())
        force_next_port(monkeypatch, held)
        with lease_ports(1) as lease:
            assert lease.ports[0] != held
    finally:
        holder.communicate("")
    force_next_port(monkeypatch, held)
    with lease_ports(1) as lease:  # the holder is gone, and its lock with it
        assert lease.ports == [held]


def test_blocks_of_one_lease_never_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    first = safe_range().start + 100
    tries = iter([first, first + 1, first + 2, first + 5])
    monkeypatch.setattr("pixelrelay_dev.ports.random.randrange", lambda a, b: next(tries))
    with lease_ports(3, 2) as lease:
        assert lease.ports == [first, first + 5]  # first+1 and first+2 overlap the first block


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with lease_ports(1) as probe:
        port = probe.ports[0]
    with socket.create_server(("127.0.0.1", port)):
        force_next_port(monkeypatch, port)
        with lease_ports(1) as lease:
            assert lease.ports != [port]


def test_a_released_lease_frees_its_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    lease = lease_ports(1)
    lease.release()
    force_next_port(monkeypatch, lease.ports[0])
    with lease_ports(1) as again:
        assert again.ports == lease.ports
