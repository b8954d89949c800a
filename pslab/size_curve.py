"""A cost against a size, from figures per byte measured at a few sizes.

Per byte is not one figure: a stream has fixed costs of its own, and beyond the
caches (or glibc's 32 MiB mmap threshold, where a fresh array's pages fault in)
a pass over memory costs more per byte than within them. So a cost is read off
the straight lines through the sizes a calibration measured.
"""

from __future__ import annotations

from bisect import bisect_left


class SizeCurve:
    """Seconds for ``nbytes``: below the smallest measured size, that size's figure per
    byte; between two, the line through them; above the largest, on along the last line
    (its marginal cost per byte). A size between two measured ones is interpolated, never
    extrapolated from one figure."""

    def __init__(self, per_byte_at: dict[int, float]) -> None:
        if not per_byte_at:
            raise ValueError("a curve needs at least one measured size")
        self.sizes = sorted(per_byte_at)
        self.costs = [size * per_byte_at[size] for size in self.sizes]

    def __call__(self, nbytes: float) -> float:
        sizes, costs = self.sizes, self.costs
        if nbytes <= sizes[0] or len(sizes) == 1:
            return nbytes * costs[0] / sizes[0]
        i = min(bisect_left(sizes, nbytes), len(sizes) - 1)  # the line from sizes[i-1] to i
        slope = (costs[i] - costs[i - 1]) / (sizes[i] - sizes[i - 1])
        return max(costs[i - 1] + slope * (nbytes - sizes[i - 1]), 0.0)
