"""How the flat parameter vector is split over server shards (ps-lite's key ranges).

Both executors must agree on this to the element, so it lives once, here.
"""

from __future__ import annotations


def shard_ranges(total: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous (offset, length) ranges, as equal as possible, earlier shards one longer."""
    if n_shards < 1:
        raise ValueError(f"need at least one shard, got {n_shards}")
    if total < n_shards:
        raise ValueError(f"{total} parameters cannot fill {n_shards} shards")
    base, extra = divmod(total, n_shards)
    out = []
    offset = 0
    for k in range(n_shards):
        length = base + (1 if k < extra else 0)
        out.append((offset, length))
        offset += length
    return out
