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

Members that join with the same amount (an incast's pushes, a server's
updates) finish in the order they joined, since V only grows: they need no
heap. So a pool keeps its members in two parts, a queue of those that joined
in finishing order and a heap of the others, and takes the first of the two
heads: the same order as one heap, without its O(log n) sifts through
thousands of entries at every start and end of a 10,240-worker incast.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Any


class Pool:
    """The members sharing ``resource`` equally, each with cap ``cap``.

    Members are (virtual finish, sequence number, flow): the sequence number
    keeps ties in arrival order and never compares flows. ``queue`` holds
    those that joined in finishing order, ``heap`` the rest; ``len(pool)``
    counts both.
    """

    __slots__ = ("cap", "capacity", "heap", "queue", "rate", "resource", "t0", "v0", "version")

    def __init__(self, resource: int, capacity: float, cap: float, now: float) -> None:
        self.resource = resource
        self.capacity = capacity
        self.cap = cap
        self.v0 = 0.0
        self.t0 = now
        self.rate = 0.0
        self.queue: deque[tuple[float, int, Any]] = deque()
        self.heap: list[tuple[float, int, Any]] = []
        self.version = 0  # bumped on every re-rate: older wake-ups are stale

    def __len__(self) -> int:
        return len(self.queue) + len(self.heap)

    def first(self) -> tuple[float, int, Any]:
        """The member that finishes first (the pool is not empty)."""
        queue, heap = self.queue, self.heap
        if not heap or (queue and queue[0] < heap[0]):
            return queue[0]
        return heap[0]

    def clock(self, now: float) -> float:
        """Service per member so far: V(now)."""
        return self.v0 + self.rate * (now - self.t0)

    def join(self, flow: Any, amount: float, seq: int, now: float) -> float:
        """Add ``flow`` with ``amount`` to go and re-rate; returns the next finish, as
        ``rerate`` does (both inlined: this runs once per start)."""
        self.v0 = v = self.v0 + self.rate * (now - self.t0)
        self.t0 = now
        entry = (v + amount, seq, flow)
        queue = self.queue
        if not queue or queue[-1][0] <= entry[0]:  # its seq is the largest: it goes last
            queue.append(entry)
        else:
            heapq.heappush(self.heap, entry)
        self.version += 1
        heap = self.heap
        if heap:
            share = self.capacity / (len(queue) + len(heap))
            self.rate = rate = share if share < self.cap else self.cap  # min(): a call less
            first = (heap[0] if heap[0] < queue[0] else queue[0]) if queue else heap[0]
            return now + (first[0] - v) / rate
        share = self.capacity / len(queue)
        self.rate = rate = share if share < self.cap else self.cap
        return now + (queue[0][0] - v) / rate

    def rerate(self) -> float:
        """The equal share for the current membership, min(cap, capacity / n); returns
        the next finish at it."""
        n = len(self.queue) + len(self.heap)
        self.version += 1
        if not n:
            self.rate = 0.0
            return math.inf
        share = self.capacity / n
        self.rate = rate = share if share < self.cap else self.cap
        return self.t0 + (self.first()[0] - self.v0) / rate

    def reroot(self, resource: int, capacity: float, cap: float) -> None:
        """Make another of a lone member's resources the shared one (its rate is unchanged:
        a lone flow runs at the minimum over all its resources and cap either way)."""
        self.resource, self.capacity, self.cap = resource, capacity, cap

    def pop_done(self, now: float, tol_s: float) -> list[Any]:
        """Remove and return the members done by ``now`` (within ``tol_s`` seconds), at least
        the first: this is only called when its finish is due."""
        self.v0 = v = self.v0 + self.rate * (now - self.t0)
        self.t0 = now
        limit = v + self.rate * tol_s
        queue, heap = self.queue, self.heap
        if not heap:  # the common case: members in joining order
            done = [queue.popleft()[2]]
            while queue and queue[0][0] <= limit:
                done.append(queue.popleft()[2])
            return done
        done = []
        while queue or heap:
            if heap and (not queue or heap[0] < queue[0]):
                if done and heap[0][0] > limit:
                    break
                done.append(heapq.heappop(heap)[2])
            else:
                if done and queue[0][0] > limit:
                    break
                done.append(queue.popleft()[2])
        return done

    def left(self, now: float) -> list[tuple[Any, float]]:
        """Every member with its amount still to go, in finishing order."""
        v = self.clock(now)
        return [(flow, max(vf - v, 0.0)) for vf, _, flow in sorted([*self.queue, *self.heap])]

    def drain(self, now: float) -> list[tuple[Any, float]]:
        """Empty the pool (its flows move to progressive filling): members and amounts left."""
        members = self.left(now)
        self.queue.clear()
        self.heap = []
        self.version += 1
        return members
