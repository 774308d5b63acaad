"""`pixelrelay admin k8s-secrets` makes every Secret the manifests read, valid as
Kubernetes objects, and a NATS authorization that nats-server accepts with the overlay's
own nats.conf: each service user connects with its password, a wrong one is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import nats
import nats.errors
import pytest

from pixelrelay_dev.children import wait_nats
from pixelrelay_dev.config import nats_server_binary
from pixelrelay_dev.ports import lease_ports
from tests.unit.deploy.test_k8s import k8s_check

ROOT = Path(__file__).resolve().parents[2]


def k8s_secrets(*args: str) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-m", "pixelrelay_cli", "admin", "k8s-secrets", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(run.stdout))


def made() -> dict[str, dict[str, str]]:
    listing = k8s_secrets(
        "--database-url=postgresql://pixelrelay:pw@postgres:5432/pixelrelay",
        "--s3-access-key=minio",
        "--s3-secret-key=minio-secret",
        "--upstream-key=OPENAI_API_KEY=sk-test",
        "--postgres-password=pw",
    )
    version = kubernetes_validate.latest_version()
    for item in listing["items"]:
        kubernetes_validate.validate(item, version, strict=True)
    return {i["metadata"]["name"]: i["stringData"] for i in listing["items"]}


def test_every_secret_the_manifests_read_is_made() -> None:
    secrets = made()
    assert k8s_check().OPERATOR_SECRETS - {"gateway-tls"} <= set(secrets)
    callers = dict(
        e.split(":") for e in secrets["pixelrelay-secrets"]["TRUSTED_CALLERS"].split(",")
    )
    assert set(callers) == {"gateway", "dispatcher", "admin"}
    assert secrets["pixelrelay-upstream-keys"] == {"OPENAI_API_KEY": "sk-test"}


def test_a_malformed_upstream_key_is_refused() -> None:
    with pytest.raises(subprocess.CalledProcessError) as caught:
        k8s_secrets(
            "--database-url=x", "--s3-access-key=a", "--s3-secret-key=b", "--upstream-key=sk"
        )
    assert "ENV=KEY" in caught.value.stderr


async def test_nats_server_takes_the_authorization_with_the_overlay_config(tmp_path: Path) -> None:
    secrets = made()
    conf_dir = tmp_path / "etc"
    (conf_dir / "auth").mkdir(parents=True)
    (conf_dir / "auth" / "auth.conf").write_text(secrets["pixelrelay-nats-auth"]["auth.conf"])
    with lease_ports(1) as lease:
        port = lease.ports[0]
        conf = (ROOT / "deploy/k8s/overlays/dev/nats.conf").read_text()
        conf = conf.replace("port: 4222", f"port: {port}\nhost: 127.0.0.1")
        conf = conf.replace("http_port: 8222", "").replace("/data", str(tmp_path / "js"))
        (conf_dir / "nats.conf").write_text(conf)
        server = subprocess.Popen(  # noqa: ASYNC220 - one server for the test
            [nats_server_binary(), "-c", str(conf_dir / "nats.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await wait_nats(port, "nats")
            for user, password in secrets["pixelrelay-nats-users"].items():
                nc = await nats.connect(
                    f"nats://127.0.0.1:{port}",
                    user=user,
                    password=password,
                    max_reconnect_attempts=0,
                )
                await nc.close()
            with pytest.raises((nats.errors.Error, OSError)):
                await nats.connect(
                    f"nats://127.0.0.1:{port}",
                    user="gateway",
                    password="wrong",
                    max_reconnect_attempts=0,
                    allow_reconnect=False,
                )
        finally:
            server.terminate()
            server.wait(10)
