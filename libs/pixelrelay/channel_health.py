"""The latency buckets of channel health snapshots, shared by the dispatchers that fill
them and the gateways that merge them (channel_health.proto).

Dispatchers send bucket counts, not percentiles: percentiles of several replicas cannot be
combined, counts can (summed per bucket). Bounds grow by 10 %, so a percentile read back
is the upper bound of its bucket, at most 10 % above the true value.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

_FIRST_BOUND_MS = 5.0
_GROWTH = 1.1
_LAST_BOUND_MS = 600_000.0  # 10 minutes: no upstream call lasts longer


def _bounds() -> tuple[int, ...]:
    bounds, bound = [], _FIRST_BOUND_MS
    while bound < _LAST_BOUND_MS:
        bounds.append(round(bound))
        bound *= _GROWTH
    bounds.append(round(_LAST_BOUND_MS))
    return tuple(dict.fromkeys(bounds))  # the first few round to the same millisecond


# Bucket i counts the calls of at most BOUNDS_MS[i] ms (and more than the previous bound);
# one more bucket after the last counts anything longer.
BOUNDS_MS = _bounds()
BUCKETS = len(BOUNDS_MS) + 1


def bucket_of(latency_ms: float) -> int:
    return bisect.bisect_left(BOUNDS_MS, latency_ms)


def percentile(counts: Sequence[int], q: float) -> int:
    """The ``q`` quantile (0 < q ≤ 1) of the latencies counted in ``counts``, as the upper
    bound of its bucket; 0 when nothing was counted."""
    total = sum(counts)
    if not total:
        return 0
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return BOUNDS_MS[min(index, len(BOUNDS_MS) - 1)]
    return BOUNDS_MS[-1]
