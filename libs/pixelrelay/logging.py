"""JSON logs to stdout, one object per line.

Privacy rule: prompts, image bytes and API keys are never passed to a logger. As a
second line of defence the formatter masks anything shaped like an API key.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

_KEY_PATTERN = re.compile(r"pr_(live|test)_[0-9A-Za-z]{8,}")
# Attributes every LogRecord has; anything else came from ``extra=`` and is emitted.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def _mask(text: str) -> str:
    return _KEY_PATTERN.sub(lambda m: m.group(0)[:12] + "…", text)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": _mask(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _mask(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = _mask(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(service: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that log request lines or bodies at INFO stay quiet.
    for noisy in (
        "uvicorn.access",
        "httpx",
        "httpx2",
        "httpcore",
        "openai",
        "botocore",
        "werkzeug",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
