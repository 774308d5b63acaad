"""The development object store (pixelrelay_dev.s3_server) answers only signed requests:
moto alone once listed every tenant's object keys to anyone and took anonymous PUTs."""

from __future__ import annotations

import datetime as dt
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from minio import Minio
from minio.error import S3Error

pytestmark = pytest.mark.security

ACCESS, SECRET = "dev-access-key", "dev-secret-key-0123456789"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "pixelrelay_dev.s3_server", "-p", str(port)],
        env={**os.environ, "S3_ACCESS_KEY": ACCESS, "S3_SECRET_KEY": SECRET},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the dev S3 server did not start"
                time.sleep(0.1)
        owner = Minio(f"127.0.0.1:{port}", ACCESS, SECRET, secure=False, region="us-east-1")
        owner.make_bucket("pixelrelay")
        owner.put_object("pixelrelay", "tasks/task_a/0.png", io.BytesIO(b"image"), 5)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def test_the_platforms_key_does_everything(endpoint: str) -> None:
    owner = Minio(endpoint, ACCESS, SECRET, secure=False, region="us-east-1")
    owner.put_object("pixelrelay", "uploads/acct_a/x.png", io.BytesIO(b"up"), 2)
    assert owner.get_object("pixelrelay", "uploads/acct_a/x.png").read() == b"up"
    names = {o.object_name for o in owner.list_objects("pixelrelay", recursive=True)}
    assert {"tasks/task_a/0.png", "uploads/acct_a/x.png"} <= names


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/pixelrelay?list-type=2"),  # list every key
        ("GET", "/"),  # list buckets
        ("GET", "/pixelrelay/tasks/task_a/0.png"),
        ("PUT", "/pixelrelay/tasks/task_a/0.png"),  # overwrite a tenant's image
        ("DELETE", "/pixelrelay/tasks/task_a/0.png"),
    ],
)
def test_anonymous_requests_are_refused(endpoint: str, method: str, path: str) -> None:
    answer = httpx.request(method, f"http://{endpoint}{path}", content=b"mine")
    assert answer.status_code == 403 and b"AccessDenied" in answer.content
    owner = Minio(endpoint, ACCESS, SECRET, secure=False, region="us-east-1")
    assert owner.get_object("pixelrelay", "tasks/task_a/0.png").read() == b"image"


def test_other_keys_are_refused(endpoint: str) -> None:
    for access, secret in ((ACCESS, "guessed"), ("someone", SECRET)):
        stranger = Minio(endpoint, access, secret, secure=False, region="us-east-1")
        with pytest.raises(S3Error) as refused:
            list(stranger.list_objects("pixelrelay", recursive=True))
        assert refused.value.code == "AccessDenied"


def test_a_presigned_url_reads_its_object_only_until_it_expires(endpoint: str) -> None:
    owner = Minio(endpoint, ACCESS, SECRET, secure=False, region="us-east-1")
    url = owner.presigned_get_object(
        "pixelrelay", "tasks/task_a/0.png", expires=dt.timedelta(seconds=2)
    )
    assert httpx.get(url).content == b"image"
    assert httpx.get(url.replace("task_a/0.png", "task_a/1.png")).status_code == 403
    assert httpx.put(url, content=b"attack").status_code == 403
    time.sleep(2.5)
    assert httpx.get(url).status_code == 403
