"""What decoding a file may cost beyond its pixel count, judged from its structure.

The pixel cap (images.MAX_PIXELS) bounds memory, not work: a small progressive JPEG can
repeat its refinement scans until one decode costs minutes of CPU, and a PNG can carry
far more compressed data than its header's size needs (a decompression bomb that we
would otherwise store and pass upstream). Both are refused here without a full decode.
"""

from __future__ import annotations

import re
import zlib

# libjpeg's own progression writes 6 scans for greyscale and 10 for colour; mozjpeg's
# optimised scripts a few more. Every scan revisits every coefficient of the image (about
# 25 ms each at 40 MP), so a 169 KB file with 1,500 of them cost 40 s of CPU. Ten times
# what any encoder writes still leaves room for odd but honest files.
MAX_JPEG_SCANS = 100

_SOS, _EOI = 0xDA, 0xD9
# A scan's data runs to the next marker that is neither a stuffed 0xFF nor a restart.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def jpeg_scans(data: bytes) -> int:
    """How many start-of-scan segments the file's structure holds (markers inside other
    segments, such as an EXIF thumbnail's, are not counted); a file that stops making
    sense is counted up to there, its decode fails anyway."""
    scans, pos = 0, 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI:
            break
        if marker == 0xD8 or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == _SOS:
            scans += 1
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
    return scans


_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by PNG colour type
# Adam7's passes: first column and row, then the steps between their pixels.
_ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2)]
_ADAM7.append((0, 1, 1, 2))


def png_raw_size(width: int, height: int, depth: int, colour_type: int, interlaced: bool) -> int:
    """The bytes a PNG's image data inflates to: each row (of each interlace pass) is its
    pixels' bits, rounded up to a byte, after one filter byte."""
    bits = _CHANNELS.get(colour_type, 4) * depth

    def rows(columns: int, count: int) -> int:
        return count * (1 + (columns * bits + 7) // 8) if columns and count else 0

    if not interlaced:
        return rows(width, height)
    return sum(
        rows(max(0, (width - x0 + dx - 1) // dx), max(0, (height - y0 + dy - 1) // dy))
        for x0, y0, dx, dy in _ADAM7
    )


def png_icc_profiles(data: bytes) -> int:
    """How many iCCP chunks the file holds (the format allows one; PIL inflates each, up
    to 1 MB, as it opens the file)."""
    count, pos = 0, 8
    while pos + 12 <= len(data):
        count += data[pos + 4 : pos + 8] == b"iCCP"
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    return count


class InflatesPastItsSize(ValueError):
    pass


# Inflated in steps of this many bytes: the check never holds more than one step.
_STEP = 1024 * 1024


def check_png_inflation(data: bytes) -> None:
    """Raise ``InflatesPastItsSize`` when the file's IDAT data inflates to more than its
    header's size implies; inflation stops one step past that, so a 1x1 image carrying
    500 MB of zeros costs a megabyte of work, not 500. Malformed files are left to the
    decoder."""
    pos, expected, inflater, total = 8, -1, zlib.decompressobj(), 0
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR" and len(body) >= 13:
            width, height = int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big")
            expected = png_raw_size(width, height, body[8], body[9], body[12] == 1)
        elif kind == b"IDAT" and expected >= 0:
            pending = body
            while pending and not inflater.eof:
                try:
                    total += len(inflater.decompress(pending, _STEP))
                except zlib.error:
                    return  # corrupt: the decode says so
                if total > expected:
                    raise InflatesPastItsSize(f"{total:,} bytes where {expected:,} fit")
                pending = inflater.unconsumed_tail
        elif kind == b"IEND":
            return
