"""python -m gateway.inputs.decode_worker: decodes the images its gateway sends, one at a
time, in a process the gateway can kill when a decode runs past its deadline (a thread
cannot be stopped; its work would go on after its caller gave up).

The exchange, over stdin and stdout: a REQUEST header and the file's bytes in; an ANSWER
header and the decoded image's bytes (or why it does not decode, in UTF-8) out. The
gateway never unpickles what a process that parses hostile files says.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from typing import BinaryIO

from gateway.inputs.images import Undecodable, decode

REQUEST = struct.Struct(">4sBQ")  # format (NUL-padded), EXIF orientation, file bytes
ANSWER = struct.Struct(">?IIBQ")  # decoded, width, height, has alpha, payload bytes
READY = b"R"  # sent once, when everything is imported


def answer(out: BinaryIO, data: bytes, fmt: str, orientation: int) -> None:
    try:
        image = decode(data, fmt, orientation)
    except Undecodable as reason:
        message = str(reason).encode()
        out.write(ANSWER.pack(False, 0, 0, 0, len(message)))
        out.write(message)
    else:
        out.write(ANSWER.pack(True, image.width, image.height, image.has_alpha, len(image.data)))
        out.write(image.data)
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
        fmt, orientation, size = REQUEST.unpack(header)
        data = requests.read(size)
        if len(data) < size:
            return  # the gateway went away mid-request
        answer(answers, data, fmt.rstrip(b"\0").decode(), orientation)


if __name__ == "__main__":
    main()
