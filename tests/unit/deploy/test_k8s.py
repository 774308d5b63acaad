"""`make k8s-check` (scripts/k8s_check.py) passes on every overlay as shipped, and each of
its checks catches what it is for: a broken copy of the rendered manifests must fail."""

from __future__ import annotations

import copy
import functools
import importlib.util
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "k8s_check.py"

pytestmark = pytest.mark.skipif(
    not (shutil.which("kubectl") or shutil.which("kustomize")),
    reason="needs kubectl or kustomize to render the overlays",
)


@functools.cache
def k8s_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_check", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _rendered(overlay: str) -> str:
    return yaml.safe_dump_all(k8s_check().render(k8s_check().OVERLAYS / overlay))


def rendered(overlay: str) -> list[dict[str, Any]]:
    """A fresh copy of the overlay's objects, to break."""
    return [d for d in yaml.safe_load_all(_rendered(overlay)) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name))


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_every_overlay_passes_as_shipped(overlay: str) -> None:
    count, problems = k8s_check().check(k8s_check().OVERLAYS / overlay)
    assert problems == []
    assert count > 20


def test_an_unknown_field_fails_strict_schema_validation() -> None:
    docs = rendered("dev")
    find(docs, "Deployment", "gateway")["spec"]["replica"] = 2
    assert any("replica" in p for p in k8s_check().schema_problems(docs))


def test_metrics_on_every_interface_are_caught() -> None:
    docs = rendered("dev")
    gateway = find(docs, "Deployment", "gateway")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "METRICS_HOST"]
    assert "metrics not bound to the pod IP" in " ".join(k8s_check().workload_problems(gateway))


def test_a_latest_image_and_a_root_pod_are_caught() -> None:
    docs = rendered("dev")
    billing = find(docs, "Deployment", "billing")
    pod = billing["spec"]["template"]["spec"]
    pod["containers"][0]["image"] = "ghcr.io/example/pixelrelay:latest"
    del pod["securityContext"]["runAsNonRoot"]
    problems = " ".join(k8s_check().workload_problems(billing))
    assert "not pinned" in problems and "may run as root" in problems


def test_a_service_without_a_network_policy_is_caught() -> None:
    docs = [
        d
        for d in rendered("dev")
        if d["metadata"]["name"] != "billing" or d["kind"] != "NetworkPolicy"
    ]
    assert k8s_check().network_problems(docs) == [
        "Deployment/billing: no Ingress NetworkPolicy of its own"
    ]
    without_deny = [d for d in rendered("dev") if d["metadata"]["name"] != "default-deny"]
    assert "no default-deny NetworkPolicy" in k8s_check().network_problems(without_deny)


def test_channels_on_localhost_are_refused_in_a_deploy() -> None:
    docs = rendered("production")
    channel_map = find(docs, "ConfigMap", "pixelrelay-channels")
    channel_map["data"]["channels.yaml"] = channel_map["data"]["channels.yaml"].replace(
        "https://api.openai.com/v1", "http://127.0.0.1:8090/v1"
    )
    assert "is this machine" in " ".join(k8s_check().config_problems(docs))


def test_production_needs_budgets_spread_and_a_replicated_bus() -> None:
    docs = [d for d in rendered("production") if d["kind"] != "PodDisruptionBudget"]
    find(docs, "ConfigMap", "pixelrelay-config")["data"]["BUS_REPLICAS"] = "1"
    del find(docs, "Deployment", "storage")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    problems = k8s_check().production_problems(docs)
    assert "Deployment/gateway: no PodDisruptionBudget" in problems
    assert "Deployment/storage: not spread over zones and nodes" in problems
    assert "pixelrelay-config: BUS_REPLICAS must be 3 on a 3-node cluster" in problems


def test_a_secret_nobody_is_told_to_create_is_caught() -> None:
    docs = rendered("dev")
    gateway = find(docs, "Deployment", "gateway")
    gateway["spec"]["template"]["spec"]["containers"][0]["envFrom"].append(
        {"secretRef": {"name": "forgotten"}}
    )
    assert k8s_check().references(docs) == [
        "Deployment/gateway: Secret forgotten is not one operators are told to create"
    ]


def test_copy_is_not_shared() -> None:
    a, b = rendered("dev"), rendered("dev")
    a[0]["metadata"]["name"] = "changed"
    assert b[0]["metadata"]["name"] != "changed" and copy.deepcopy(b) == b
