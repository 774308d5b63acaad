"""Where things live in the object store, for every service that writes or reads there,
and the size of the chunks object bytes are streamed in over gRPC.

    uploads/<account>/<upload>.<ext>         an account's upload
    tasks/<task>/inputs/ref<i>.<ext>          a task's reference images, as fetched
    tasks/<task>/inputs/mask.png              its mask
    tasks/<task>/<index>.<ext>                its results (what was stored for it is its
                                              completed event, on the bus: task_events.py)
"""

from __future__ import annotations

import re

from pixelrelay.ids import ID_BODY
from pixelrelay.image_formats import EXTENSIONS

CHUNK_BYTES = 1024 * 1024
# Every object lives under one of these; each has its own lifetime (retention.py).
UPLOADS_PREFIX = "uploads/"
TASKS_PREFIX = "tasks/"

_ID = ID_BODY
_EXTENSION = "(?:" + "|".join(sorted(set(EXTENSIONS.values()))) + ")"
# The keys a client may name as an input: its uploads, and a task's stored inputs.
_INPUT_KEY = re.compile(
    rf"(?:uploads/acct_{_ID}/upl_{_ID}|tasks/(task_{_ID})/inputs/[a-z0-9_]+)\.{_EXTENSION}"
)
# A task's results: what a synchronous call (/v1) reads back to answer with the bytes.
_RESULT_KEY = re.compile(rf"tasks/task_{_ID}/[0-9]+\.{_EXTENSION}")
# What may be deleted as a whole: one account's uploads, or one task's objects.
_OWNED_PREFIX = re.compile(rf"(?:uploads/acct_{_ID}|tasks/task_{_ID})/")
# An upload's key at the end of a URL path, wherever the object store serves it.
_UPLOAD_IN_PATH = re.compile(rf"/(uploads/(acct_{_ID})/upl_{_ID}\.{_EXTENSION})$")


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]


def upload_key(account_id: str, upload_id: str, fmt: str) -> str:
    return f"{account_uploads(account_id)}{upload_id}.{EXTENSIONS[fmt]}"


def account_uploads(account_id: str) -> str:
    """The prefix of every upload of one account."""
    return f"{UPLOADS_PREFIX}{account_id}/"


def task_objects(task_id: str) -> str:
    """The prefix of everything stored for one task: inputs and results."""
    return f"{TASKS_PREFIX}{task_id}/"


def input_key(task_id: str, name: str, fmt: str) -> str:
    """``name``: ``ref<i>`` or ``mask``."""
    return f"{task_objects(task_id)}inputs/{name}.{EXTENSIONS[fmt]}"


def result_key(task_id: str, index: int, fmt: str) -> str:
    # The same key on a redelivered job: a retry overwrites instead of duplicating.
    return f"{task_objects(task_id)}{index}.{EXTENSIONS[fmt]}"


# Whole-key matches (fullmatch: "$" would let a trailing newline by).
def is_input_key(key: str) -> bool:
    return _INPUT_KEY.fullmatch(key) is not None


def input_task(key: str) -> str | None:
    """The task whose stored input (reference, mask) ``key`` is; None for an upload or
    anything else."""
    match = _INPUT_KEY.fullmatch(key)
    return match[1] if match else None


def is_readable_key(key: str) -> bool:
    """What GetObject serves: inputs (uploads, a task's references) and results."""
    return is_input_key(key) or is_result_key(key)


def is_result_key(key: str) -> bool:
    return _RESULT_KEY.fullmatch(key) is not None


def is_owned_prefix(prefix: str) -> bool:
    return _OWNED_PREFIX.fullmatch(prefix) is not None


def upload_in_path(path: str) -> tuple[str, str] | None:
    """(upload key, owner account) when a URL path ends in an upload's key."""
    match = _UPLOAD_IN_PATH.search(path)
    return (match[1], match[2]) if match else None
