"""Offline checks of deploy/k8s: every file parses, kustomize's resources exist, and every
workload has probes, resource requests, a locked-down security context and its metrics on
the pod's own address."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

BASE = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "base"


def problems() -> list[str]:
    found: list[str] = []
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        path = BASE / resource
        if not path.exists():
            found.append(f"kustomization lists missing {resource}")
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            found += [f"{resource}: {p}" for p in _check(doc)]
    return found


def _check(doc: dict[str, Any]) -> list[str]:
    if not {"apiVersion", "kind", "metadata"} <= set(doc):
        return ["missing apiVersion, kind or metadata"]
    if doc["kind"] not in ("Deployment", "StatefulSet"):
        return []
    found = []
    pod = doc["spec"]["template"]["spec"]
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        found.append("pod may run as root")
    for c in pod["containers"]:
        name = c["name"]
        for key in ("readinessProbe", "livenessProbe"):
            if key not in c:
                found.append(f"{name}: no {key}")
        if "requests" not in c.get("resources", {}):
            found.append(f"{name}: no resource requests")
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation", True):
            found.append(f"{name}: root filesystem writable or privilege escalation allowed")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            found.append(f"{name}: capabilities not dropped")
        if any(p["name"] == "metrics" for p in c.get("ports", [])) and not _metrics_on_pod_ip(c):
            found.append(f"{name}: metrics not bound to the pod IP (METRICS_HOST)")
    return found


def _metrics_on_pod_ip(container: dict[str, Any]) -> bool:
    env = {e["name"]: e for e in container.get("env", [])}
    source = env.get("METRICS_HOST", {}).get("valueFrom", {}).get("fieldRef", {})
    return bool(source.get("fieldPath") == "status.podIP")


def main() -> int:
    found = problems()
    for p in found:
        sys.stderr.write(p + "\n")
    if not found:
        sys.stdout.write("deploy/k8s: ok\n")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
