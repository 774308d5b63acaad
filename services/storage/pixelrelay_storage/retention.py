"""Objects that outlived their lifetime are deleted (libs/pixelrelay/retention.py).

Two ways, both on by default: the bucket's S3 lifecycle rules, set at start, which MinIO,
R2 and AWS apply themselves (in whole days, some hours late); and a sweep that lists the
bucket and deletes what is expired, for endpoints that store rules without applying them.
Either way, an object past its lifetime already reads as gone (blobstore.py).
"""

from __future__ import annotations

import logging
import math
import time

from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, Rule
from prometheus_client import Counter

from pixelrelay.objects import TASKS_PREFIX, UPLOADS_PREFIX
from pixelrelay.retention import DAY_SECONDS
from pixelrelay_storage.blobstore import BlobStore, Lifetimes

log = logging.getLogger(__name__)

OBJECTS_EXPIRED = Counter(
    "pixelrelay_objects_expired_total",
    "Objects the sweep deleted because their lifetime was over",
    ["prefix"],
)

# Our rules carry these ids; any other rule on the bucket is the operator's and is kept.
RULE_IDS = {TASKS_PREFIX: "pixelrelay-results", UPLOADS_PREFIX: "pixelrelay-uploads"}


def lifecycle_rules(lifetimes: Lifetimes) -> list[Rule]:
    """One expiration rule per prefix, in whole days (S3's unit), rounded up: the endpoint
    never deletes before the promised time; the sweep and reads are exact."""
    return [
        Rule(
            ENABLED,
            rule_filter=Filter(prefix=prefix),
            rule_id=RULE_IDS[prefix],
            expiration=Expiration(days=max(1, math.ceil(seconds / DAY_SECONDS))),
        )
        for prefix, seconds in lifetimes.by_prefix().items()
    ]


async def apply_lifecycle_rules(blobs: BlobStore) -> bool:
    """Set our rules on the bucket unless they are there already (every replica does this
    at start; only a change writes). False, with a warning, if the endpoint refuses: the
    sweep still deletes expired objects."""
    wanted = lifecycle_rules(blobs.lifetimes)

    try:
        rules = await blobs.lifecycle_rules()
        others = [r for r in rules if r.rule_id not in RULE_IDS.values()]
        changed = sorted(rules, key=_rule_id) != sorted(others + wanted, key=_rule_id)
        if changed:
            await blobs.set_lifecycle_rules(others + wanted)
    except Exception as exc:  # not implemented, access denied, the endpoint away
        log.warning(
            "bucket lifecycle rules not set; the object sweep deletes expired objects",
            extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
        )
        return False
    if changed:
        log.info("bucket lifecycle rules set", extra={"rules": [r.rule_id for r in wanted]})
    return True


def _rule_id(rule: Rule) -> str:
    return rule.rule_id or ""


async def sweep_expired(blobs: BlobStore, now: float | None = None) -> int:
    """Delete every object whose lifetime is over; returns how many."""
    now = now or time.time()
    deleted = 0
    for prefix in blobs.lifetimes.by_prefix():
        keys = await blobs.expired(prefix, now)
        if keys:
            await blobs.delete(keys)
            OBJECTS_EXPIRED.labels(prefix.rstrip("/")).inc(len(keys))
            deleted += len(keys)
    if deleted:
        log.info("expired objects deleted", extra={"count": deleted})
    return deleted
