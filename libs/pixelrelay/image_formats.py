"""The image formats the platform takes and gives, with their MIME types and file
extensions: one table for every service."""

from __future__ import annotations

FORMATS = ("png", "jpeg", "webp")
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}

_BY_EXTENSION = {extension: fmt for fmt, extension in EXTENSIONS.items()}
_BY_PIL_NAME = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}


def of_file_name(name: str) -> str:
    """``tasks/t/inputs/ref0.jpg`` → ``jpeg``; KeyError for any other extension."""
    return _BY_EXTENSION[name.rsplit(".", 1)[-1]]


def of_pil_name(name: str | None) -> str | None:
    """Pillow's format name (``Image.format``) → ours, or None for a format we do not take."""
    return _BY_PIL_NAME.get(name or "")
