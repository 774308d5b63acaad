"""`make k8s-check`: render every overlay of deploy/k8s with kustomize (`kubectl kustomize`),
validate each object against the Kubernetes schemas in strict mode (kubernetes-validate),
and lint the result against the platform's deployment policy (below). No cluster needed.

Custom resources (KEDA, the Prometheus Operator) have no schema in kubernetes-validate;
the policy checks what they point at instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from pixelrelay_dispatcher import channels

ROOT = Path(__file__).resolve().parent.parent
OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
CUSTOM_KINDS = {"ScaledObject", "ServiceMonitor", "PrometheusRule"}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
SERVICES = ("gateway", "billing", "storage", "dispatcher")
# The Secrets an operator creates (docs/operations.md, "Deploying on Kubernetes").
OPERATOR_SECRETS = {
    "pixelrelay-secrets",
    "pixelrelay-credentials",
    "pixelrelay-nats-users",
    "pixelrelay-nats-auth",
    "pixelrelay-upstream-keys",
    "gateway-tls",
}

Doc = dict[str, Any]


def render(overlay: Path) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    argv = [kubectl, "kustomize", str(overlay)] if kubectl else None
    if argv is None and (kustomize := shutil.which("kustomize")):
        argv = [kustomize, "build", str(overlay)]
    if argv is None:
        raise SystemExit("k8s-check needs kubectl (it bundles kustomize) or kustomize on PATH")
    run = subprocess.run(argv, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{overlay.relative_to(ROOT)} does not render:\n{run.stderr}")
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def schema_problems(docs: list[Doc]) -> list[str]:
    version = kubernetes_validate.latest_version()
    found = []
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            found.append(f"{name(doc)}: {err.message} at {'.'.join(map(str, err.path))}")
        except kubernetes_validate.SchemaNotFoundError:
            found.append(f"{name(doc)}: no schema for {doc['apiVersion']} {doc['kind']}")
    return found


def name(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def pod_of(doc: Doc) -> Doc:
    return dict(doc["spec"]["template"])


def containers(pod: Doc) -> Iterator[Doc]:
    yield from pod["spec"].get("initContainers", [])
    yield from pod["spec"]["containers"]


def workload_problems(doc: Doc) -> list[str]:
    found = []
    pod = pod_of(doc)["spec"]
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        found.append("pod may run as root")
    for c in containers(pod_of(doc)):
        where = f"container {c['name']}"
        image = str(c["image"])
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            found.append(f"{where}: image {image} is not pinned to a version")
        if doc["kind"] != "Job" and c in pod["containers"]:
            found += [f"{where}: no {p}" for p in ("readinessProbe", "livenessProbe") if p not in c]
        if "requests" not in c.get("resources", {}):
            found.append(f"{where}: no resource requests")
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation", True):
            found.append(f"{where}: root filesystem writable or privilege escalation allowed")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            found.append(f"{where}: capabilities not dropped")
        if any(p["name"] == "metrics" for p in c.get("ports", [])) and not metrics_on_pod_ip(c):
            found.append(f"{where}: metrics not bound to the pod IP (METRICS_HOST)")
    return [f"{name(doc)}: {p}" for p in found]


def metrics_on_pod_ip(container: Doc) -> bool:
    env = {e["name"]: e for e in container.get("env", [])}
    source = env.get("METRICS_HOST", {}).get("valueFrom", {}).get("fieldRef", {})
    return bool(source.get("fieldPath") == "status.podIP")


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for rule in selector.get("matchExpressions", []):
        present = rule["key"] in labels
        inside = present and labels[rule["key"]] in rule.get("values", [])
        if rule["operator"] == "In" and not inside:
            return False
        if rule["operator"] == "NotIn" and inside:
            return False
        if rule["operator"] == "Exists" and not present:
            return False
    return True


def references(docs: list[Doc]) -> list[str]:
    """ConfigMaps a pod names exist; Secrets it names are the documented ones."""
    config_maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    found = []
    for doc in (d for d in docs if d["kind"] in WORKLOADS):
        pod = pod_of(doc)["spec"]
        wanted_maps = {v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v}
        wanted_secrets = {
            v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v
        }
        for c in containers(pod_of(doc)):
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    wanted_maps.add(source["configMapRef"]["name"])
                if "secretRef" in source:
                    wanted_secrets.add(source["secretRef"]["name"])
            for env in c.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    wanted_secrets.add(ref["secretKeyRef"]["name"])
                if "configMapKeyRef" in ref:
                    wanted_maps.add(ref["configMapKeyRef"]["name"])
        found += [f"{name(doc)}: ConfigMap {m} is not rendered" for m in wanted_maps - config_maps]
        found += [
            f"{name(doc)}: Secret {s} is not one operators are told to create"
            for s in wanted_secrets - OPERATOR_SECRETS
        ]
    return found


def network_problems(docs: list[Doc]) -> list[str]:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    found = [] if deny else ["no default-deny NetworkPolicy"]
    for doc in (d for d in docs if d["kind"] in WORKLOADS):
        labels = pod_of(doc)["metadata"].get("labels", {})
        # Policies written for this workload (they select it by its app), not the ones
        # every pod gets (DNS, metrics): together they must say who may call it (but a
        # Job's) and what it may call.
        covered = {
            kind
            for p in policies
            if _by_app(p["spec"]["podSelector"]) and selects(p["spec"]["podSelector"], labels)
            for kind in p["spec"].get("policyTypes", [])
        }
        needed = {"Egress"} if doc["kind"] == "Job" else {"Ingress", "Egress"}
        for kind in sorted(needed - covered):
            found.append(f"{name(doc)}: no {kind} NetworkPolicy of its own")
    return found


def _by_app(selector: Doc) -> bool:
    return "app" in selector.get("matchLabels", {}) or any(
        rule["key"] == "app" for rule in selector.get("matchExpressions", [])
    )


def service_problems(docs: list[Doc]) -> list[str]:
    pods = [pod_of(d)["metadata"].get("labels", {}) for d in docs if d["kind"] in WORKLOADS]
    return [
        f"{name(s)}: selects no pod"
        for s in docs
        if s["kind"] == "Service"
        and not any(selects({"matchLabels": s["spec"]["selector"]}, p) for p in pods)
    ]


def config_problems(docs: list[Doc]) -> list[str]:
    """The services' settings as a pod sees them: migrations by the Job, and channels a
    production dispatcher would accept (no localhost, no unknown field, keys named)."""
    found = []
    config = next(d for d in docs if d["metadata"]["name"].startswith("pixelrelay-config"))
    if config["data"].get("MIGRATE_ON_START") != "false":
        found.append("pixelrelay-config: MIGRATE_ON_START must be false (the migrate Job migrates)")
    if not any(d["kind"] == "Job" and d["metadata"]["name"] == "migrate" for d in docs):
        found.append("no migrate Job")
    channel_map = next(d for d in docs if d["metadata"]["name"].startswith("pixelrelay-channels"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "channels.yaml"
        path.write_text(channel_map["data"]["channels.yaml"])
        raw = yaml.safe_load(path.read_text())
        keys = {
            str(c.get("api_key_env", "UPSTREAM_API_KEY")): "set" for c in raw["channels"].values()
        }
        try:
            channels.load(path, env=keys)
        except channels.ConfigError as exc:
            found.append(f"channels.yaml: {exc}")
    return found


def production_problems(docs: list[Doc]) -> list[str]:
    found = []
    by_kind = Counter(d["kind"] for d in docs)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for service in SERVICES:
        labels = pod_of(deployments[service])["metadata"]["labels"]
        if not any(selects(b["spec"]["selector"], labels) for b in budgets):
            found.append(f"Deployment/{service}: no PodDisruptionBudget")
        if "topologySpreadConstraints" not in pod_of(deployments[service])["spec"]:
            found.append(f"Deployment/{service}: not spread over zones and nodes")
    nats = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats")
    if nats["spec"]["replicas"] < 3:
        found.append("StatefulSet/nats: a JetStream cluster needs 3 nodes")
    config = next(d for d in docs if d["metadata"]["name"].startswith("pixelrelay-config"))
    if config["data"].get("BUS_REPLICAS") != "3":
        found.append("pixelrelay-config: BUS_REPLICAS must be 3 on a 3-node cluster")
    hpas = [
        d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"
    ]
    if "gateway" not in hpas:
        found.append("no HorizontalPodAutoscaler for the gateway")
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    if not any(s["spec"]["scaleTargetRef"]["name"] == "dispatcher" for s in scaled):
        found.append("no KEDA ScaledObject for the dispatcher")
    for s in scaled:
        for trigger in s["spec"]["triggers"]:
            if trigger["metadata"].get("stream") != "PIXELRELAY_JOBS":
                found.append(f"{name(s)}: scales on {trigger['metadata'].get('stream')}")
    for monitor in (d for d in docs if d["kind"] == "ServiceMonitor"):
        matched = [
            s
            for s in docs
            if s["kind"] == "Service"
            and selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
            and any(p["name"] == "metrics" for p in s["spec"]["ports"])
        ]
        if len(matched) < len(SERVICES):
            found.append(f"{name(monitor)}: scrapes {len(matched)} Services, not every service's")
    for kind in ("Ingress", "PrometheusRule", "ServiceMonitor"):
        if not by_kind[kind]:
            found.append(f"no {kind}")
    return found


def check(overlay: Path) -> tuple[int, list[str]]:
    docs = render(overlay)
    found = schema_problems(docs)
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            found += workload_problems(doc)
    found += references(docs) + network_problems(docs) + service_problems(docs)
    found += config_problems(docs)
    if overlay.name == "production":
        found += production_problems(docs)
    return len(docs), found


def main() -> int:
    os.chdir(ROOT)
    failed = False
    for overlay in sorted(p for p in OVERLAYS.iterdir() if p.is_dir()):
        count, found = check(overlay)
        for problem in found:
            sys.stderr.write(f"{overlay.relative_to(ROOT)}: {problem}\n")
        failed = failed or bool(found)
        status = "ok" if not found else f"{len(found)} problems"
        sys.stdout.write(
            f"{overlay.relative_to(ROOT)}: {count} objects, schema-valid "
            f"(Kubernetes {kubernetes_validate.latest_version()}, strict), policy {status}\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
