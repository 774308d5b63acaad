"""The reference fetcher refuses every way of reaching a non-public address.

Only loopback servers are used: the private ranges are checked on address objects alone,
so a broken guard could never send traffic off this machine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest

from pixelrelay.errors import ApiError, E
from pixelrelay_gateway.inputs.fetch import SafeFetcher, is_public
from tests.integration.image_server import ImageServer, image_server
from tests.utils.servers import refusing_port

pytestmark = pytest.mark.security


@pytest.fixture
async def server() -> AsyncIterator[ImageServer]:
    async with image_server() as running:
        yield running


async def refused(fetcher: SafeFetcher, url: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await fetcher.fetch(url, "image_urls[0]")
    return caught.value


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1111", "::ffff:93.184.215.14"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "0.0.0.0",
        "LOCALHOST",
    ],
)
async def test_loopback_in_any_spelling_is_refused_and_never_contacted(
    server: ImageServer, host: str
) -> None:
    fetcher = SafeFetcher()
    try:
        err = await refused(fetcher, f"http://{host}:{server.port}/cat.png")
    finally:
        await fetcher.close()
    # Refused by the address guard, or (octal spellings) already by the URL parser.
    assert err.kind in (E.IMAGE_URL_FORBIDDEN, E.INVALID_PARAMETER)
    assert server.hits == []


async def test_a_dns_name_resolving_to_a_private_address_is_refused(server: ImageServer) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]  # "images.example.com" as a hostile DNS would answer

    fetcher = SafeFetcher(resolve=resolve)
    try:
        err = await refused(fetcher, f"http://images.example.com:{server.port}/cat.png")
    finally:
        await fetcher.close()
    assert err.kind is E.IMAGE_URL_FORBIDDEN
    assert server.hits == []


async def test_a_redirect_to_a_private_address_is_refused(server: ImageServer) -> None:
    # 127.0.0.1 plays a public host here; the redirect targets another loopback address,
    # where a second server proves it is never contacted.
    def only_first(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return str(ip) == "127.0.0.1"

    async with image_server("127.0.0.2") as private:
        fetcher = SafeFetcher(policy=only_first)
        try:
            for target in (
                private.url("/cat.png"),
                f"http://2130706434:{private.port}/cat.png",
                f"http://[::1]:{private.port}/cat.png",
            ):
                err = await refused(fetcher, server.url(f"/redirect?to={target}"))
                assert err.kind is E.IMAGE_URL_FORBIDDEN, target
            ok, _ = await fetcher.fetch(server.url(f"/redirect?to={server.url('/cat.png')}"), "p")
        finally:
            await fetcher.close()
        assert private.hits == []
    assert ok == server.files["/cat.png"][0]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "gopher://x/",
        "http://user:pw@example.com/a.png",
    ],
)
async def test_other_schemes_and_credentials_are_refused(url: str) -> None:
    fetcher = SafeFetcher()
    try:
        err = await refused(fetcher, url)
    finally:
        await fetcher.close()
    assert err.kind is E.IMAGE_URL_FORBIDDEN


async def test_private_hosts_are_fetched_when_allowed_for_development(server: ImageServer) -> None:
    fetcher = SafeFetcher(allow_private=True)
    try:
        data, content_type = await fetcher.fetch(server.url("/cat.png"), "p")
    finally:
        await fetcher.close()
    assert data == server.files["/cat.png"][0] and content_type == "image/png"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/page.html", E.INVALID_IMAGE),
        ("/missing.png", E.IMAGE_FETCH_FAILED),
        ("/loop", E.IMAGE_FETCH_FAILED),
        ("/chunked-big", E.IMAGE_TOO_LARGE),
        ("/slow", E.IMAGE_FETCH_FAILED),
    ],
)
async def test_bad_answers_are_clear_errors(server: ImageServer, path: str, kind: object) -> None:
    fetcher = SafeFetcher(allow_private=True, max_bytes=1024 * 1024, timeout=1.0)
    try:
        err = await refused(fetcher, server.url(path))
    finally:
        await fetcher.close()
    assert err.kind is kind
    assert err.param == "image_urls[0]"


async def test_declared_length_over_the_cap_is_refused_before_reading(server: ImageServer) -> None:
    fetcher = SafeFetcher(allow_private=True, max_bytes=1000)
    try:
        err = await refused(fetcher, server.url("/cat.png"))
    finally:
        await fetcher.close()
    assert err.kind is E.IMAGE_TOO_LARGE


async def test_unreachable_host_is_a_fetch_failure() -> None:
    fetcher = SafeFetcher(allow_private=True)
    try:
        with refusing_port() as port:
            err = await refused(fetcher, f"http://127.0.0.1:{port}/a.png")
    finally:
        await fetcher.close()
    assert err.kind is E.IMAGE_FETCH_FAILED
