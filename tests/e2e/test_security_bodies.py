"""Bodies read before the key was checked, replayed: 16 unauthenticated 60 MB edits once
took the gateway from 332 MB to a 936 MB peak and left it at 588 MB; the public gRPC API
kept 544 MB after 16 unauthenticated 32 MB calls; /api/v1/uploads read 20 MB before its
401. Now the key is checked from the headers (metadata) first, and memory a large request
took is given back."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import httpx
import orjson
import pytest

from pixelrelay.v1 import public_api_pb2, public_api_pb2_grpc
from tests.e2e.conftest import Platform
from tests.e2e.helpers import rss_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.security]

MB = 1024 * 1024


class PeakRss:
    """The gateway's resident memory, sampled every 10 ms while the block runs."""

    def __init__(self, pid: int):
        self.pid = pid
        self.before = rss_bytes(pid)
        self.peak = self.before

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.pid))
            await asyncio.sleep(0.01)

    @contextlib.asynccontextmanager
    async def watching(self):  # type: ignore[no-untyped-def]
        sampler = asyncio.create_task(self._sample())
        try:
            yield self
        finally:
            sampler.cancel()
            self.peak = max(self.peak, rss_bytes(self.pid))


def multipart_head(path: str, port: int, length: int, boundary: str, key: str | None) -> bytes:
    auth = b"Authorization: Bearer %s\r\n" % key.encode() if key else b""
    return (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s"
        b"Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n\r\n"
        % (path.encode(), port, auth, boundary.encode(), length)
    )


@pytest.mark.parametrize(
    ("path", "key", "code"),
    [
        ("/v1/images/edits", None, "invalid_api_key"),  # OpenAI's code for both
        ("/v1/images/edits", "pr_live_" + "x" * 32, "invalid_api_key"),
        ("/api/v1/uploads", None, 10001),
        ("/api/v1/uploads", "pr_live_" + "x" * 32, 10002),
    ],
)
async def test_a_body_route_answers_401_before_a_byte_of_the_body(
    platform: Platform, path: str, key: str | None, code: object
) -> None:
    """Only the headers are sent: the 401 comes without waiting for the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.config.http_port)
    try:
        writer.write(multipart_head(path, platform.config.http_port, 20 * MB, "b", key))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(
                b":"
            )[1]
        )
        body = orjson.loads(await reader.readexactly(length))
    finally:
        writer.close()
    assert head.split()[1] == b"401", head
    error = body["error"]
    assert error.get("code") == code, error


async def _send_edit(port: int, size: int, key: str | None) -> int:
    """One multipart edit of ``size`` bytes of image field, sent whole; the status."""
    boundary = "pixelrelayboundary"
    opening = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
        f'filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    closing = (
        "".join(
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}'
            for name, value in (("model", "gpt-image-2"), ("prompt", "x"))
        ).encode()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    length = len(opening) + size + len(closing)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(multipart_head("/v1/images/edits", port, length, boundary, key))
        writer.write(opening)
        chunk = b"\x89PNG" + b"\0" * (MB - 4)
        with contextlib.suppress(ConnectionError):
            for _ in range(size // MB):
                writer.write(chunk)
                await writer.drain()
            writer.write(closing)
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        return int(head.split()[1])
    finally:
        writer.close()


async def test_unauthenticated_edits_cost_the_gateway_no_memory(platform: Platform) -> None:
    gateway = platform.stack.child("gateway").process.pid
    watch = PeakRss(gateway)
    async with watch.watching():
        statuses = await asyncio.gather(
            *(_send_edit(platform.config.http_port, 60 * MB, None) for _ in range(16))
        )
    assert set(statuses) == {401}
    assert watch.peak - watch.before < 40 * MB, (watch.before // MB, watch.peak // MB)


async def test_memory_of_large_authenticated_edits_is_given_back(platform: Platform) -> None:
    """Read whole (the key is valid), refused as not an image: the memory comes back."""
    gateway = platform.stack.child("gateway").process.pid
    watch = PeakRss(gateway)
    async with watch.watching():
        statuses = await asyncio.gather(
            *(_send_edit(platform.config.http_port, 19 * MB, platform.api_key) for _ in range(8))
        )
    assert set(statuses) == {400}, statuses
    await asyncio.sleep(0.5)
    after = rss_bytes(gateway)
    assert after - watch.before < 60 * MB, (watch.before // MB, watch.peak // MB, after // MB)


async def test_unauthenticated_grpc_calls_are_refused_before_their_message(
    platform: Platform,
) -> None:
    gateway = platform.stack.child("gateway").process.pid
    big = public_api_pb2.CreateUploadRequest(data=b"\0" * (30 * MB), content_type="image/png")
    watch = PeakRss(gateway)
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{platform.config.grpc_port}",
        options=[("grpc.max_send_message_length", 64 * MB)],
    ) as channel:
        stub = public_api_pb2_grpc.PublicApiStub(channel)

        async def call(metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
            try:
                await stub.CreateUpload(big, metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError as err:
                return err.code()
            return grpc.StatusCode.OK

        async with watch.watching():
            codes = await asyncio.gather(
                *(call((("authorization", "Bearer pr_live_nope"),)) for _ in range(8)),
                *(call(()) for _ in range(8)),
            )
    assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}
    assert rss_bytes(gateway) - watch.before < 40 * MB, (watch.before // MB, watch.peak // MB)


async def test_an_upload_with_a_valid_key_still_works(platform: Platform) -> None:
    import io

    import PIL.Image

    png = io.BytesIO()
    PIL.Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    async with httpx.AsyncClient(base_url=platform.config.base_url) as http:
        stored = await http.post(
            "/api/v1/uploads",
            headers=platform.auth(),
            files={"file": ("a.png", png.getvalue(), "image/png")},
        )
    assert stored.status_code == 200, stored.text
