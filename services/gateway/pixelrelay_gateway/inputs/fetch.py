"""Downloading reference images without becoming an SSRF proxy.

Every host is resolved by us, every address it resolves to is checked, and the connection
goes to the address we checked (so a DNS answer cannot change between check and connect).
The same holds for every redirect hop. Unless ``allow_private`` is set (local development
only), loopback, private, link-local, multicast, reserved and unspecified addresses are
refused, including IPv4 hidden in IPv6 (mapped, 6to4, Teredo, NAT64) and odd spellings such
as ``http://2130706433/`` or ``http://0x7f.1/`` (the resolver normalises them first).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from pixelrelay.errors import ApiError, E
from pixelrelay_gateway.inputs.images import check_content_type

NAT64 = ipaddress.ip_network("64:ff9b::/96")
REDIRECTS = {301, 302, 303, 307, 308}
AddressPolicy = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a fetch may connect to this address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if ip.ipv4_mapped:
            embedded.append(ip.ipv4_mapped)
        if ip.sixtofour:
            embedded.append(ip.sixtofour)
        if ip.teredo:
            embedded.extend(ip.teredo)
        if ip in NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if embedded:
            return all(is_public(v4) for v4 in embedded)
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def any_but_unspecified(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """The development policy: private hosts allowed, nonsense still refused."""
    return not (ip.is_unspecified or ip.is_multicast)


class ForbiddenAddress(Exception):
    pass


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves and checks the host, then connects to the checked address."""

    def __init__(self, policy: AddressPolicy, resolve: Callable[[str, int], Any]):
        self._inner = httpcore.AnyIOBackend()
        self._policy = policy
        self._resolve = resolve

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}")
        for address in addresses:
            if not self._policy(ipaddress.ip_address(address.split("%", 1)[0])):
                raise ForbiddenAddress(host)
        return await self._inner.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenAddress(path)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class SafeFetcher:
    def __init__(
        self,
        *,
        allow_private: bool = False,
        max_bytes: int = 20 * 1024 * 1024,
        timeout: float = 20.0,
        max_redirects: int = 3,
        policy: AddressPolicy | None = None,
        resolve: Callable[[str, int], Any] = system_resolve,
    ):
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        chosen = policy or (any_but_unspecified if allow_private else is_public)
        self._pool = httpcore.AsyncConnectionPool(
            network_backend=_GuardedBackend(chosen, resolve),
            retries=0,
            max_connections=64,
        )

    async def close(self) -> None:
        await self._pool.aclose()

    async def fetch(self, url: str, param: str) -> tuple[bytes, str]:
        """The body and declared content type of ``url``, or an ApiError naming ``param``."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._follow(url, param)
        except TimeoutError:
            raise ApiError(E.IMAGE_FETCH_FAILED, f"{param}: timed out", param=param) from None

    async def _follow(self, url: str, param: str) -> tuple[bytes, str]:
        current = _checked_url(url, param)
        for _ in range(self.max_redirects + 1):
            try:
                async with self._pool.stream(
                    "GET",
                    str(current),
                    headers=[
                        (b"Accept", b"image/png, image/jpeg, image/webp"),
                        (b"User-Agent", b"PixelRelay/1 (+reference fetcher)"),
                    ],
                    extensions={
                        "timeout": {"connect": 5.0, "read": 10.0, "write": 5.0, "pool": 5.0}
                    },
                ) as response:
                    if response.status in REDIRECTS:
                        location = _header(response, b"location")
                        if not location:
                            raise _failed(param, "redirect without a location")
                        current = _checked_url(str(current.join(location)), param)
                        continue
                    if response.status != 200:
                        raise _failed(param, f"the server answered HTTP {response.status}")
                    content_type = _header(response, b"content-type")
                    check_content_type(content_type, param)
                    return await self._read(response, param), content_type
            except ForbiddenAddress:
                raise ApiError(
                    E.IMAGE_URL_FORBIDDEN, f"{param}: the host is not a public address", param=param
                ) from None
            except httpcore.TimeoutException:
                raise _failed(param, "timed out") from None
            except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol):
                raise _failed(param, "could not connect or the connection broke") from None
        raise _failed(param, f"more than {self.max_redirects} redirects")

    async def _read(self, response: httpcore.Response, param: str) -> bytes:
        declared = _header(response, b"content-length")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            raise _too_large(param, self.max_bytes)
        body = bytearray()
        async for chunk in response.aiter_stream():
            body += chunk
            if len(body) > self.max_bytes:
                raise _too_large(param, self.max_bytes)
        return bytes(body)


def _checked_url(url: str, param: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ApiError(E.INVALID_PARAMETER, f"{param}: not a URL", param=param) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ApiError(
            E.IMAGE_URL_FORBIDDEN, f"{param}: only http(s) URLs can be fetched", param=param
        )
    if parsed.userinfo:
        raise ApiError(
            E.IMAGE_URL_FORBIDDEN, f"{param}: URLs with credentials are refused", param=param
        )
    return parsed.copy_with(fragment=None)


def _header(response: httpcore.Response, name: bytes) -> str:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return ""


def _failed(param: str, why: str) -> ApiError:
    return ApiError(E.IMAGE_FETCH_FAILED, f"{param}: {why}", param=param)


def _too_large(param: str, limit: int) -> ApiError:
    return ApiError(
        E.IMAGE_TOO_LARGE, f"{param}: larger than {limit // (1024 * 1024)} MiB", param=param
    )
