"""Worker processes that read input images' headers and decode them, each within a
deadline.

Both run in a process of its own (decode_worker.py) so that they can be stopped: one
that runs past its deadline, or whose caller gives up (a request cancelled, the 30 s
reference deadline), has its process killed, and the call returns only once the
process is dead, so the caller's share of the decode budget is held exactly as long as
the work runs. A killed worker is replaced by a fresh one on the next decode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

from pixelrelay_gateway.inputs.decode_worker import ANSWER, DECODE, HEADER, READY, REQUEST
from pixelrelay_gateway.inputs.images import DecodeTimeout, Header, InputImage, Undecodable

log = logging.getLogger("gateway.decode")


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process

    @classmethod
    async def start(cls) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pixelrelay_gateway.inputs.decode_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = cls(process)
        assert process.stdout is not None
        try:
            ready = await process.stdout.readexactly(len(READY))
        except asyncio.IncompleteReadError:
            ready = b""  # it died importing
        except BaseException:  # cancelled while it started
            await worker.end()
            raise
        if ready != READY:
            await worker.end()
            raise RuntimeError(f"a decode worker did not start (exit code {process.returncode})")
        return worker

    async def run(
        self, op: int, data: bytes, fmt: str, orientation: int
    ) -> tuple[int, int, int, int, bytes]:
        """Width, height, scans, orientation or has-alpha, and the payload."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(REQUEST.pack(op, fmt.encode(), orientation, len(data)))
        stdin.write(data)
        await stdin.drain()
        done, width, height, scans, flag, size = ANSWER.unpack(
            await stdout.readexactly(ANSWER.size)
        )
        payload = await stdout.readexactly(size)
        if not done:
            raise Undecodable(payload.decode(errors="replace"))
        return width, height, scans, flag, payload

    async def end(self) -> None:
        """Kill the process (at once: its work stops here) and wait until it is gone."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        # Shielded: a caller cancelled again still leaves the process reaped.
        await asyncio.shield(self.process.wait())


class DecodeWorkers:
    """At most ``size`` decodes at once, each in a worker process, each given ``timeout``
    seconds (a 40-MP image decodes in about 1 s; a file built to be slow, killed after
    ``timeout``, answers ``DecodeTimeout``)."""

    def __init__(self, size: int, timeout: float):
        self.size = size
        self.timeout = timeout
        self._idle: list[_Worker] = []
        self._slots = asyncio.Semaphore(size)

    async def start(self) -> None:
        """Start every worker now, not on the first decodes (about 0.3 s each); a worker
        that cannot start (it died importing) fails the gateway's start, not every decode."""
        missing = self.size - len(self._idle)
        self._idle += await asyncio.gather(*(_Worker.start() for _ in range(missing)))

    async def read_header(self, data: bytes, fmt: str) -> Header:
        """images.read_header, by a worker; raises ``Undecodable`` or ``DecodeTimeout``."""
        width, height, scans, orientation, _ = await self._run(HEADER, data, fmt, 1)
        return Header(width, height, orientation, scans)

    async def decode(self, data: bytes, fmt: str, orientation: int) -> InputImage:
        """The image, decoded and scrubbed (images.decode) by a worker; raises
        ``Undecodable`` or ``DecodeTimeout``."""
        width, height, _, has_alpha, clean = await self._run(DECODE, data, fmt, orientation)
        return InputImage(clean, fmt, width, height, bool(has_alpha))

    async def _run(
        self, op: int, data: bytes, fmt: str, orientation: int
    ) -> tuple[int, int, int, int, bytes]:
        async with self._slots:
            worker = self._idle.pop() if self._idle else await _Worker.start()
            try:
                async with asyncio.timeout(self.timeout):
                    answer = await worker.run(op, data, fmt, orientation)
            except Undecodable:
                self._idle.append(worker)  # it answered: ready for the next file
                raise
            except TimeoutError:
                await worker.end()
                raise DecodeTimeout from None
            except (asyncio.IncompleteReadError, ConnectionError):
                # Died on its own: a crash in a decoder the file was built to break.
                await worker.end()
                log.warning("a decode worker died", extra={"returncode": worker.process.returncode})
                raise Undecodable("the image does not decode") from None
            except BaseException:  # cancelled: the work must stop before the caller goes on
                await worker.end()
                raise
            self._idle.append(worker)
            return answer

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for worker in idle:
            await worker.end()
