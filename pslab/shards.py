"""How the flat parameter vector is split over server shards (ps-lite's key ranges).

Both executors must agree on this to the element, so it lives once, here.
Key ranges are cut at whole partitions of ``partition_bytes`` (ps-lite and
BytePS partition keys; BytePS uses 4,096,000 bytes) and dealt out as evenly
as possible: the first ``n_partitions % n_shards`` shards get one more, and
only the last partition may be short. A model smaller than one partition per
shard is split by elements instead, so every shard holds something.
"""

from __future__ import annotations

import math

PARTITION_BYTES = 4_096_000


def split_evenly(total: int, n: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of n contiguous runs tiling ``total``, earlier ones one longer."""
    if n < 1 or total < n:
        raise ValueError(f"cannot split {total} elements over {n} shards")
    base, extra = divmod(total, n)
    out, start = [], 0
    for k in range(n):
        length = base + (k < extra)
        out.append((start, length))
        start += length
    return out


def shard_ranges(
    total: int, n_shards: int, partition_bytes: int = PARTITION_BYTES, itemsize: int = 4
) -> list[tuple[int, int]]:
    """Contiguous ``(offset, length)`` ranges tiling ``total`` elements over ``n_shards``."""
    unit = max(1, partition_bytes // itemsize)
    parts = math.ceil(total / unit)
    if parts < n_shards:
        return split_evenly(total, n_shards)
    return [
        (first * unit, min(total, (first + count) * unit) - first * unit)
        for first, count in split_evenly(parts, n_shards)
    ]
