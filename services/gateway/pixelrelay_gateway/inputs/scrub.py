"""Input images without their metadata and without anything after their end.

Uploads and fetched references are stored and sent upstream. EXIF and XMP (GPS
positions, camera serials, edit history), text chunks and comments are personal data
nobody asked us to keep; bytes after the image's end can smuggle a second file (a
polyglot that a browser or unzip reads as something else). Both are cut at the byte
level, losslessly: the pixels and what colour depends on (ICC profile, gamma, sRGB,
transparency) stay exactly as they were.

Each function walks the container's structure and raises ``Malformed`` where it does
not hold together; the caller answers that as an image that does not decode.
"""

from __future__ import annotations

import re


class Malformed(ValueError):
    pass


def scrub(data: bytes, fmt: str) -> bytes:
    """``data`` (a ``png``, ``jpeg`` or ``webp`` file) with its metadata and trailing
    bytes removed."""
    return {"png": _png, "jpeg": _jpeg, "webp": _webp}[fmt](data)


# Chunks that decide what the image looks like; everything else (tEXt, zTXt, iTXt, eXIf,
# tIME, animation, private chunks) is dropped. An APNG keeps its default image.
_PNG_KEEP = {
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS",
    b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"cICP", b"pHYs", b"bKGD",
}  # fmt: skip


def _png(data: bytes) -> bytes:
    kept, pos = [data[:8]], 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, end = data[pos + 4 : pos + 8], pos + 12 + length
        if end > len(data):
            raise Malformed("a PNG chunk runs past the end of the file")
        if kind in _PNG_KEEP:
            kept.append(data[pos:end])
        if kind == b"IEND":
            return b"".join(kept)
        pos = end
    raise Malformed("a PNG without its IEND chunk")


# After a start-of-scan, compressed data runs to the next marker that is neither a
# stuffed 0xFF (FF 00) nor a restart marker (FF D0-D7), both part of the data.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_SOI, _EOI, _SOS, _COM = 0xD8, 0xD9, 0xDA, 0xFE


def _jpeg_keeps(marker: int, segment: bytes) -> bool:
    """Tables, frame and scan headers stay; of the application segments only JFIF
    (APP0), the ICC profile (APP2) and Adobe's colour transform (APP14)."""
    if marker == 0xE0:
        return segment[4:9] == b"JFIF\x00"  # JFXX carries a thumbnail
    if marker == 0xE2:
        return segment[4:16] == b"ICC_PROFILE\x00"
    if marker == 0xEE:
        return segment[4:9] == b"Adobe"
    return not (0xE1 <= marker <= 0xEF or marker == _COM)


def _jpeg(data: bytes) -> bytes:
    kept, pos = [data[:2]], 2
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            raise Malformed("a JPEG segment does not start with a marker")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI:
            kept.append(b"\xff\xd9")
            return b"".join(kept)
        if marker in (_SOI, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            kept.append(data[pos : pos + 2])
            pos += 2
            continue
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if pos + 4 > len(data) or end > len(data):
            raise Malformed("a JPEG segment runs past the end of the file")
        if _jpeg_keeps(marker, data[pos:end]):
            kept.append(data[pos:end])
        pos = end
        if marker == _SOS:
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                raise Malformed("a JPEG scan without an end")
            kept.append(data[pos : found.start()])
            pos = found.start()
    raise Malformed("a JPEG without its end-of-image marker")


_WEBP_DROP = {b"EXIF", b"XMP "}
_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04  # flag bits in the VP8X chunk's first byte


def _webp(data: bytes) -> bytes:
    end = 8 + int.from_bytes(data[4:8], "little")  # RIFF's own length: later bytes go
    if end > len(data):
        raise Malformed("a WebP file shorter than its RIFF header says")
    chunks, pos = [], 12
    while pos + 8 <= end:
        kind, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        chunk_end = pos + 8 + size + (size & 1)  # chunks are padded to even lengths
        if chunk_end > end:
            raise Malformed("a WebP chunk runs past the end of the file")
        if kind == b"VP8X" and size >= 1:
            flags = data[pos + 8] & ~(_VP8X_EXIF | _VP8X_XMP)
            chunks.append(data[pos : pos + 8] + bytes([flags]) + data[pos + 9 : chunk_end])
        elif kind not in _WEBP_DROP:
            chunks.append(data[pos:chunk_end])
        pos = chunk_end
    if pos != end or not chunks:
        raise Malformed("a WebP file whose chunks do not fill it")
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body
