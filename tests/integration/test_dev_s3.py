"""The development object store (pixelrelay_dev.s3_server: rclone on a directory) answers
only signed requests (moto, its predecessor, alone once listed every tenant's object keys to
anyone and took anonymous PUTs), and keeps its objects across a restart, as `make run`'s
tasks are kept."""

from __future__ import annotations

import datetime as dt
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

pytestmark = pytest.mark.security

ACCESS, SECRET = "dev-access-key", "dev-secret-key-0123456789"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DevS3:
    """The dev S3 server as `make run` starts it, on a directory of its own."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, access: str = ACCESS, secret: str = SECRET) -> Minio:
        return Minio(self.endpoint, access, secret, secure=False, region="us-east-1")

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pixelrelay_dev.s3_server"]
            + ["-p", str(self.port), "-d", str(self.directory)],
            env={**os.environ, "S3_ACCESS_KEY": ACCESS, "S3_SECRET_KEY": SECRET},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://{self.endpoint}/", timeout=1)
                return
            except httpx.TransportError:
                assert self.process.poll() is None, "the dev S3 server exited"
                assert time.monotonic() < deadline, "the dev S3 server did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            assert self.process.wait(10) == 0 or self.process.returncode < 0
            self.process = None


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = DevS3(tmp_path_factory.mktemp("dev-s3"))
    server.start()
    try:
        owner = server.client()
        owner.make_bucket("pixelrelay")
        owner.put_object("pixelrelay", "tasks/task_a/0.png", io.BytesIO(b"image"), 5)
        yield server.endpoint
    finally:
        server.stop()


def test_the_platforms_key_does_everything(endpoint: str) -> None:
    owner = Minio(endpoint, ACCESS, SECRET, secure=False, region="us-east-1")
    owner.put_object("pixelrelay", "uploads/acct_a/x.png", io.BytesIO(b"up"), 2)
    assert owner.get_object("pixelrelay", "uploads/acct_a/x.png").read() == b"up"
    assert owner.stat_object("pixelrelay", "uploads/acct_a/x.png").size == 2
    names = {o.object_name for o in owner.list_objects("pixelrelay", recursive=True)}
    assert {"tasks/task_a/0.png", "uploads/acct_a/x.png"} <= names
    owner.put_object("pixelrelay", "uploads/acct_a/y.png", io.BytesIO(b"y"), 1)
    gone = [DeleteObject("uploads/acct_a/y.png"), DeleteObject("uploads/acct_a/never.png")]
    assert list(owner.remove_objects("pixelrelay", gone)) == []
    # Errors as S3 words them: the storage service reads NoSuchKey and NoSuchBucket.
    with pytest.raises(S3Error) as missing:
        owner.get_object("pixelrelay", "uploads/acct_a/y.png")
    assert missing.value.code == "NoSuchKey"
    with pytest.raises(S3Error) as no_bucket:
        owner.put_object("elsewhere", "k.png", io.BytesIO(b"k"), 1)
    assert no_bucket.value.code == "NoSuchBucket"


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


def test_other_signatures_are_refused(endpoint: str) -> None:
    v2 = httpx.get(
        f"http://{endpoint}/pixelrelay/tasks/task_a/0.png",
        headers={"Authorization": f"AWS {ACCESS}:bm90IGEgc2lnbmF0dXJl"},
    )
    assert v2.status_code == 403 and b"AccessDenied" in v2.content


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
    assert httpx.get(url.replace("X-Amz-Expires=2", "X-Amz-Expires=999")).status_code == 403
    assert httpx.put(url, content=b"attack").status_code == 403
    assert owner.get_object("pixelrelay", "tasks/task_a/0.png").read() == b"image"
    time.sleep(2.5)
    assert httpx.get(url).status_code == 403


def test_objects_outlive_a_restart(tmp_path: Path) -> None:
    """`make run` stopped and started again: the images its tasks name are still there,
    and a URL given out before the restart still downloads them."""
    server = DevS3(tmp_path / "s3")
    server.start()
    try:
        owner = server.client()
        owner.make_bucket("pixelrelay")
        owner.put_object(
            "pixelrelay", "tasks/task_b/0.png", io.BytesIO(b"kept"), 4, content_type="image/png"
        )
        before = owner.presigned_get_object(
            "pixelrelay", "tasks/task_b/0.png", expires=dt.timedelta(minutes=5)
        )
    finally:
        server.stop()
    assert (tmp_path / "s3" / "pixelrelay" / "tasks" / "task_b" / "0.png").read_bytes() == b"kept"
    server.start()
    try:
        owner = server.client()
        assert owner.bucket_exists("pixelrelay")
        assert owner.get_object("pixelrelay", "tasks/task_b/0.png").read() == b"kept"
        names = [o.object_name for o in owner.list_objects("pixelrelay", "tasks/", True)]
        assert names == ["tasks/task_b/0.png"]
        url = owner.presigned_get_object(
            "pixelrelay", "tasks/task_b/0.png", expires=dt.timedelta(minutes=5)
        )
        for download in (url, before):
            answer = httpx.get(download)
            assert answer.status_code == 200 and answer.content == b"kept"
            assert answer.headers["content-type"] == "image/png"
        assert httpx.get(f"http://{server.endpoint}/pixelrelay/tasks/task_b/0.png").is_error
    finally:
        server.stop()
