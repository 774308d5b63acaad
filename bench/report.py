"""The report: JSON (everything), Markdown (the summary) and a PNG of the latencies."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.scenarios import ScenarioResult  # noqa: E402


def write(
    out: Path, results: list[ScenarioResult], profiles: dict[str, list[str]], meta: dict[str, Any]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        **meta,
        "machine": f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}",
    }
    data = {"meta": meta, "scenarios": [asdict(r) for r in results], "profiles": profiles}
    (out / "report.json").write_text(json.dumps(data, indent=2, default=str))
    (out / "summary.md").write_text(_markdown(results, profiles, meta))
    _plot(out / "latency.png", results)


def _cores() -> int:
    import os  # noqa: PLC0415

    return os.cpu_count() or 0


def _markdown(
    results: list[ScenarioResult], profiles: dict[str, list[str]], meta: dict[str, Any]
) -> str:
    mark = {True: "met", False: "**missed**", None: "reported"}
    lines = [
        f"# PixelRelay benchmark, {meta['started']}",
        "",
        f"{meta['machine']}; everything on this machine, load generator included; "
        "upstream simulator at 0 ms.",
        "",
        "| scenario | target | achieved | |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.name} | {r.target} | {r.achieved} | {mark[r.met]} |" for r in results]
    for r in results:
        runs = r.details.get("runs")
        if runs:
            lines += [
                "",
                f"## {r.name}: offered rate steps",
                "",
                "| offered/s | ok/s | p50 ms | p90 ms | p99 ms | statuses |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {x['rate']} | {x['ok_per_s']} | {x['p50_ms']} | {x['p90_ms']} | "
                f"{x['p99_ms']} | {x['statuses']} |"
                for x in runs
            ]
    lines += ["", "## Where the time goes (py-spy, own time, during the end-to-end run)", ""]
    for name, frames in profiles.items():
        lines += [f"**{name}**", "", "```", *frames, "```", ""]
    return "\n".join(lines) + "\n"


def _plot(path: Path, results: list[ScenarioResult]) -> None:
    by_name = {r.name: r for r in results}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, name in zip(axes[:2], ("submit", "poll"), strict=True):
        runs = by_name[name].details.get("runs", []) if name in by_name else []
        rates = [r["rate"] for r in runs]
        for q in ("p50_ms", "p90_ms", "p99_ms"):
            ax.plot(rates, [r[q] for r in runs], marker="o", label=q.split("_")[0])
        ax.set(
            title=f"{name}: latency by offered rate",
            xlabel="offered requests/s",
            ylabel="ms",
            yscale="log",
        )
        ax.grid(alpha=0.3)
        ax.legend()
    values = (
        sorted(by_name["overhead"].details.get("values_ms", [])) if "overhead" in by_name else []
    )
    if values:
        axes[2].plot(values, [i / len(values) for i in range(len(values))])
    axes[2].set(
        title="platform overhead per task (CDF)",
        xlabel="ms (total − upstream)",
        ylabel="fraction of tasks",
    )
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
