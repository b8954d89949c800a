"""Egalitarian processor sharing of one bottleneck, on a virtual clock.

When every flow of a component crosses one shared resource R and otherwise
only links of its own, and all of them have the same cap c (their own links'
bandwidth, or a ``max_rate``), max–min fairness gives each the same rate
r = min(c, C_R / n). Then one number per resource says how far every flow
has got: the virtual clock V, the bytes (or CPU-seconds) any one member has
been served since the pool began, advancing at r. A flow joining at V with
``amount`` to go finishes when V reaches V + amount, fixed at its start
whatever joins or leaves later, so members leave in heap order and an
arrival or departure costs O(log n) instead of re-rating every flow.

This is what SimGrid's lazy max–min solver gets by touching only what a
change affects; the progressive filling in ``sim.network`` stays for
components where several resources bind.
"""

from __future__ import annotations

import heapq
import math
from typing import Any


class Pool:
    """The members sharing ``resource`` equally, each with cap ``cap``.

    ``heap`` holds (virtual finish, sequence number, flow): the sequence
    number keeps ties in arrival order and never compares flows.
    """

    __slots__ = ("cap", "capacity", "heap", "rate", "resource", "t0", "v0", "version")

    def __init__(self, resource: int, capacity: float, cap: float, now: float) -> None:
        self.resource = resource
        self.capacity = capacity
        self.cap = cap
        self.v0 = 0.0
        self.t0 = now
        self.rate = 0.0
        self.heap: list[tuple[float, int, Any]] = []
        self.version = 0  # bumped on every re-rate: older wake-ups are stale

    def clock(self, now: float) -> float:
        """Service per member so far: V(now)."""
        return self.v0 + self.rate * (now - self.t0)

    def advance(self, now: float) -> None:
        """Rebase the clock at ``now`` (before the rate or the membership changes)."""
        self.v0 = self.clock(now)
        self.t0 = now

    def join(self, flow: Any, amount: float, seq: int, now: float) -> float:
        """Add ``flow`` with ``amount`` to go and re-rate; returns the next finish, as
        ``rerate`` does (both inlined: this runs once per start)."""
        self.v0 = v = self.v0 + self.rate * (now - self.t0)
        self.t0 = now
        heap = self.heap
        heapq.heappush(heap, (v + amount, seq, flow))
        self.version += 1
        self.rate = rate = min(self.cap, self.capacity / len(heap))
        return now + (heap[0][0] - v) / rate

    def rerate(self) -> float:
        """The equal share for the current membership, min(cap, capacity / n); returns
        the next finish at it (``next_finish``)."""
        n = len(self.heap)
        self.version += 1
        if not n:
            self.rate = 0.0
            return math.inf
        self.rate = rate = min(self.cap, self.capacity / n)
        return self.t0 + (self.heap[0][0] - self.v0) / rate

    def reroot(self, resource: int, capacity: float, cap: float) -> None:
        """Make another of a lone member's resources the shared one (its rate is unchanged:
        a lone flow runs at the minimum over all its resources and cap either way)."""
        self.resource, self.capacity, self.cap = resource, capacity, cap

    def next_finish(self) -> float:
        """When the first member will be done at the current rate."""
        return self.t0 + (self.heap[0][0] - self.v0) / self.rate if self.heap else math.inf

    def pop_done(self, now: float, tol_s: float) -> list[Any]:
        """Remove and return the members done by ``now`` (within ``tol_s`` seconds), at least
        the first: this is only called when its finish is due."""
        self.v0 = v = self.v0 + self.rate * (now - self.t0)
        self.t0 = now
        limit = v + self.rate * tol_s
        heap = self.heap
        done = [heapq.heappop(heap)[2]]
        while heap and heap[0][0] <= limit:
            done.append(heapq.heappop(heap)[2])
        return done

    def left(self, now: float) -> list[tuple[Any, float]]:
        """Every member with its amount still to go."""
        v = self.clock(now)
        return [(flow, max(vf - v, 0.0)) for vf, _, flow in self.heap]

    def drain(self, now: float) -> list[tuple[Any, float]]:
        """Empty the pool (its flows move to progressive filling): members and amounts left."""
        members = self.left(now)
        self.heap = []
        self.version += 1
        return members
