"""The development object store: moto's S3 server behind the access a real bucket has.

moto answers anyone: it once listed every tenant's object keys to an anonymous caller and
took anonymous PUTs. Here every request must be signed (AWS Signature V4) with the
platform's own key pair, in the Authorization header (the storage service, through the
minio SDK) or in the query (the presigned download URLs clients are given, GET and HEAD
only, until they expire): a private bucket, as a deployment's MinIO, R2 or S3 has.

    python -m pixelrelay_dev.s3_server -p PORT   (S3_ACCESS_KEY, S3_SECRET_KEY from the env)
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SKEW = dt.timedelta(minutes=15)  # S3's own allowance for a signed request's clock

_AUTH = re.compile(
    rf"{ALGORITHM} Credential=(?P<credential>[^,]+), ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class Unsigned(Exception):
    """Why a request is refused: AccessDenied with this message."""


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _header(environ: Environ, name: str) -> str:
    key = name.upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = f"HTTP_{key}"
    return " ".join(str(environ.get(key, "")).split())  # trimmed, inner runs collapsed


def _canonical_query(query: str, drop: str = "") -> str:
    pairs = []
    for item in filter(None, query.split("&")):
        name, _, value = item.partition("=")
        name, value = unquote(name), unquote(value)
        if name != drop:
            pairs.append((quote(name, safe="-_.~"), quote(value, safe="-_.~")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def _raw_path(environ: Environ) -> str:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return str(raw).split("?", 1)[0] or "/"
    return quote(str(environ.get("PATH_INFO", "/")), safe="/-_.~")


def _query(environ: Environ) -> dict[str, str]:
    out = {}
    for item in filter(None, str(environ.get("QUERY_STRING", "")).split("&")):
        name, _, value = item.partition("=")
        out[unquote(name)] = unquote(value)
    return out


class SignedOnly:
    """WSGI middleware: passes requests signed with ``access_key``/``secret_key``."""

    def __init__(
        self,
        app: WsgiApp,
        access_key: str,
        secret_key: str,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ):
        self.app = app
        self.access_key = access_key
        self.secret_key = secret_key
        self.clock = clock

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            self.verify(environ)
        except Unsigned as refused:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                f"<Message>{refused}</Message></Error>"
            ).encode()
            start_response(
                "403 Forbidden",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return self.app(environ, start_response)

    def verify(self, environ: Environ) -> None:
        query = _query(environ)
        header = _header(environ, "authorization")
        if header:
            match = _AUTH.match(header)
            if match is None:
                raise Unsigned("only AWS Signature V4 is accepted")
            credential, signed, signature = match["credential"], match["signed"], match["signature"]
            stamp = _header(environ, "x-amz-date")
            payload = _header(environ, "x-amz-content-sha256") or UNSIGNED
            canonical_query = _canonical_query(str(environ.get("QUERY_STRING", "")))
            expires = None
        elif query.get("X-Amz-Algorithm") == ALGORITHM:
            if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
                raise Unsigned("a presigned URL only reads")
            credential = query.get("X-Amz-Credential", "")
            signed = query.get("X-Amz-SignedHeaders", "")
            signature = query.get("X-Amz-Signature", "")
            stamp = query.get("X-Amz-Date", "")
            payload = UNSIGNED
            canonical_query = _canonical_query(
                str(environ.get("QUERY_STRING", "")), drop="X-Amz-Signature"
            )
            try:
                expires = dt.timedelta(seconds=int(query.get("X-Amz-Expires", "")))
            except ValueError:
                raise Unsigned("X-Amz-Expires is missing") from None
        else:
            raise Unsigned("anonymous access is not allowed")
        self._check(environ, credential, signed, signature, stamp, payload, canonical_query)
        when = self._time(stamp)
        now = self.clock()
        if expires is not None and now > when + expires:
            raise Unsigned("the presigned URL has expired")
        if expires is None and abs(now - when) > MAX_SKEW:
            raise Unsigned("the request's time is too far from the server's")

    def _check(
        self,
        environ: Environ,
        credential: str,
        signed: str,
        signature: str,
        stamp: str,
        payload: str,
        canonical_query: str,
    ) -> None:
        access_key, _, scope = credential.partition("/")
        parts = scope.split("/")
        if access_key != self.access_key or len(parts) != 4 or parts[3] != "aws4_request":
            raise Unsigned("unknown access key")
        names = signed.split(";")
        if "host" not in names:
            raise Unsigned("the host must be signed")
        canonical = "\n".join(
            [
                str(environ.get("REQUEST_METHOD", "")),
                _raw_path(environ),
                canonical_query,
                "".join(f"{name}:{_header(environ, name)}\n" for name in names),
                signed,
                payload,
            ]
        )
        to_sign = "\n".join(
            [ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = signing_key(self.secret_key, *parts[:3])
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise Unsigned("the signature does not match")

    @staticmethod
    def _time(stamp: str) -> dt.datetime:
        try:
            return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            raise Unsigned("X-Amz-Date is missing or malformed") from None


def main() -> None:
    # moto is a dev dependency: imported here, not by the middleware's users.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    access_key, secret_key = os.environ["S3_ACCESS_KEY"], os.environ["S3_SECRET_KEY"]
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto.server sets it
    app = SignedOnly(DomainDispatcherApplication(create_backend_app), access_key, secret_key)
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
