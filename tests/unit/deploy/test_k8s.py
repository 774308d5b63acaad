from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType

import yaml

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "k8s_check.py"
BASE = SCRIPT.parent.parent / "deploy" / "k8s" / "base"


def _k8s_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_check", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_manifests_pass_the_offline_checks() -> None:
    assert _k8s_check().problems() == []


def test_metrics_on_every_interface_are_caught() -> None:
    gateway = next(yaml.safe_load_all((BASE / "gateway.yaml").read_text()))
    exposed = copy.deepcopy(gateway)
    container = exposed["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "METRICS_HOST"]
    check = _k8s_check()
    assert check._check(gateway) == []
    assert check._check(exposed) == ["gateway: metrics not bound to the pod IP (METRICS_HOST)"]
