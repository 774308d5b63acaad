"""python -m pixelrelay_gateway.inputs.decode_worker: reads the headers of and decodes the images its
gateway sends, one at a time, in a process the gateway can kill when one runs past its
deadline (a thread cannot be stopped; its work would go on after its caller gave up).

The exchange, over stdin and stdout: a REQUEST header and the file's bytes in; an ANSWER
header and a payload out: the decoded image's bytes (DECODE), nothing (HEADER), or why the
file is refused, in UTF-8. The gateway never unpickles what a process that parses hostile
files says.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from typing import BinaryIO

from pixelrelay_gateway.inputs.images import Undecodable, decode, read_header

HEADER, DECODE = 0, 1
# What to do, format (NUL-padded), EXIF orientation (DECODE), file bytes
REQUEST = struct.Struct(">B4sBQ")
# Done; width, height; scans (HEADER); orientation (HEADER) or has alpha (DECODE); payload
ANSWER = struct.Struct(">?IIIBQ")
READY = b"R"  # sent once, when everything is imported


def answer(out: BinaryIO, op: int, data: bytes, fmt: str, orientation: int) -> None:
    try:
        if op == HEADER:
            header = read_header(data, fmt)
            fields = (True, header.width, header.height, header.scans, header.orientation)
            payload = b""
        else:
            image = decode(data, fmt, orientation)
            fields = (True, image.width, image.height, 0, image.has_alpha)
            payload = image.data
    except Undecodable as reason:
        fields, payload = (False, 0, 0, 0, 0), str(reason).encode()
    out.write(ANSWER.pack(*fields, len(payload)))
    out.write(payload)
    out.flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway ends its workers itself
    requests = sys.stdin.buffer
    # Answers get a descriptor of their own; anything a library prints goes to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    answers.write(READY)
    answers.flush()
    while len(header := requests.read(REQUEST.size)) == REQUEST.size:
        op, fmt, orientation, size = REQUEST.unpack(header)
        data = requests.read(size)
        if len(data) < size:
            return  # the gateway went away mid-request
        answer(answers, op, data, fmt.rstrip(b"\0").decode(), orientation)


if __name__ == "__main__":
    main()
