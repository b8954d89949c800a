"""Max–min fair rates by progressive filling, for components where several resources bind.

Raise every unfrozen flow's rate together until some resource saturates or a
flow reaches its own cap, freeze the flows that hit it, repeat. Only the
connected component of the flow/resource sharing graph that changed is
recomputed: max–min rates of other components cannot change. The filling is
vectorised with numpy over a padded flow x hop index matrix, one slot per
flow. ``sim.network`` sends here only the flows its pools
(``sim.fair_share``) cannot hold exactly.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

_LEVEL_TOL = 1e-9  # relative: which resources saturate in one step of the filling
_DUMMY = 0  # resource index that pads hop rows; infinite capacity, never counted
_WIDTH_STEP = 8  # hop rows are padded to a multiple of 8 (see _rows_any)


class FillFlow(Protocol):
    """What a flow brings: its resource indices, size, what is left of it, and its cap."""

    route: tuple[int, ...]
    amount: float
    left: float
    max_rate: float


def _rows_any(mask: np.ndarray) -> np.ndarray:
    """Row-wise ``any`` of a C-contiguous bool matrix whose width is a multiple of 8.

    Eight bools are read as one 64-bit word: several times faster than
    ``mask.any(axis=1)``, and this runs on every flow at every recompute.
    """
    words = mask.view(np.uint64)
    return words[:, 0] != 0 if words.shape[1] == 1 else words.any(axis=1)


class Filling:
    """Per-slot state of the flows under progressive filling.

    A flow's amount left at time t is rem0 - rate * (t - t0); t0/rem0 move
    only when its rate changes. ``caps`` is the network's capacity per
    resource (index 0 the infinite pad), a list the network appends to: the
    arrays follow it when next used, so adding 20,000 resources one by one
    is not 20,000 array copies.
    """

    def __init__(self, caps: list[float]) -> None:
        self._caps = caps
        self.cap = np.array(caps)
        self._carried = np.zeros(len(caps))
        self.live_count = 0
        self.touched: list[np.ndarray] = []  # resources whose flows changed
        slots = 64
        self._hops = np.zeros((slots, _WIDTH_STEP), dtype=np.intp)
        self._size = np.zeros(slots)
        self._rem0 = np.zeros(slots)
        self._t0 = np.zeros(slots)
        self._rate = np.zeros(slots)
        self._max_rate = np.full(slots, math.inf)
        self._finish = np.full(slots, math.inf)
        self._live = np.zeros(slots, dtype=bool)
        self._free = list(range(slots - 1, -1, -1))
        self._flow: list[Any] = [None] * slots

    @property
    def carried(self) -> np.ndarray:
        """What finished flows moved, per resource."""
        self._follow()
        return self._carried

    def _follow(self) -> None:
        """Catch up with resources added since the arrays were built."""
        n = len(self._caps)
        if n > len(self.cap):
            self.cap = np.array(self._caps)
            self._carried = np.concatenate([self._carried, np.zeros(n - len(self._carried))])

    def next_finish(self) -> float:
        return float(self._finish.min()) if self.live_count else math.inf  # inf in free slots

    def in_flight(self, carried: np.ndarray, now: float) -> None:
        """Add what live flows have moved so far to ``carried``, per resource."""
        live = np.flatnonzero(self._live)
        if live.size:
            done = self._size[live] - self._left(live, now)
            np.add.at(carried, self._hops[live], done[:, None])

    def _left(self, slots: np.ndarray, now: float) -> np.ndarray:
        return self._rem0[slots] - self._rate[slots] * (now - self._t0[slots])

    def share(self, now: float) -> bool:
        """Re-rate the component of everything touched since the last call; whether any."""
        touched, self.touched = self.touched, []
        return bool(touched) and self._share(np.concatenate(touched), now)

    def admit(self, flows: list[FillFlow], now: float) -> None:
        """Give ``flows`` slots, starting from what each has left."""
        self._follow()
        width = -(-max(len(p.route) for p in flows) // _WIDTH_STEP) * _WIDTH_STEP
        if width > self._hops.shape[1]:
            pad = np.zeros((self._hops.shape[0], width - self._hops.shape[1]), dtype=np.intp)
            self._hops = np.hstack([self._hops, pad])
        if len(flows) > len(self._free):
            self._grow(len(flows) - len(self._free))
        slots = np.array([self._free.pop() for _ in flows], dtype=np.intp)
        for slot, p in zip(slots.tolist(), flows, strict=True):
            self._hops[slot, : len(p.route)] = p.route
            self._flow[slot] = p
        self._size[slots] = [p.amount for p in flows]
        self._rem0[slots] = [p.left for p in flows]
        self._max_rate[slots] = [p.max_rate for p in flows]
        self._t0[slots] = now
        self._rate[slots] = 0.0
        self._live[slots] = True
        self.live_count += len(flows)
        self.touched.append(self._hops[slots].ravel())

    def _grow(self, need: int) -> None:
        old = self._hops.shape[0]
        new = max(2 * old, old + need)
        extra = new - old

        def ext(a: np.ndarray, fill: float | bool) -> np.ndarray:
            return np.concatenate([a, np.full((extra, *a.shape[1:]), fill, dtype=a.dtype)])

        self._hops = ext(self._hops, _DUMMY)
        self._size = ext(self._size, 0.0)
        self._rem0 = ext(self._rem0, 0.0)
        self._t0 = ext(self._t0, 0.0)
        self._rate = ext(self._rate, 0.0)
        self._max_rate = ext(self._max_rate, math.inf)
        self._finish = ext(self._finish, math.inf)
        self._live = ext(self._live, False)
        self._flow += [None] * extra
        self._free = list(range(new - 1, old - 1, -1)) + self._free

    def _component(self, touched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transfers joined to the touched links through shared links.

        Returns their slots and hop rows. Max–min rates outside this connected
        component cannot change, so only it is recomputed.
        """
        live = np.flatnonzero(self._live)
        hops = np.take(self._hops, live, axis=0)
        mark = np.zeros(len(self.cap), dtype=bool)
        mark[touched] = True
        count = -1
        while True:
            mark[_DUMMY] = False
            inside = np.flatnonzero(_rows_any(np.take(mark, hops)))
            if inside.size == count:
                return np.take(live, inside), np.take(hops, inside, axis=0)
            count = inside.size
            mark[np.take(hops, inside, axis=0)] = True

    def _share(self, touched: np.ndarray, now: float) -> bool:
        """Max–min fair rates for the changed component, by progressive filling.

        Returns whether there was anything to share.
        """
        flows, hops = self._component(touched)
        if flows.size == 0:
            return False
        self._rem0[flows] = self._left(flows, now)
        self._t0[flows] = now
        cap = np.take(self._max_rate, flows)
        n_res = len(self.cap)
        spare = self.cap.copy()
        rate = np.empty(flows.size)
        open_ = np.arange(flows.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            while open_.size:
                users = np.bincount(hops.ravel(), minlength=n_res)
                users[_DUMMY] = 0
                share = np.where(users > 0, spare / users, math.inf)
                level = min(share.min(), cap.min())
                limit = level * (1 + _LEVEL_TOL)
                frozen = _rows_any(np.take(share <= limit, hops)) | (cap <= limit)
                rate[open_[frozen]] = np.minimum(level, cap[frozen])
                keep = np.flatnonzero(~frozen)
                if keep.size == 0:
                    break
                done = np.take(hops, np.flatnonzero(frozen), axis=0)
                spare -= level * np.bincount(done.ravel(), minlength=n_res)
                np.maximum(spare, 0.0, out=spare)
                open_, hops, cap = open_[keep], np.take(hops, keep, axis=0), cap[keep]
        self._rate[flows] = rate
        self._finish[flows] = now + self._rem0[flows] / rate
        return True

    def complete(self, by: float, filled: list[int]) -> list[Any]:
        """Take the flows that finish by ``by`` out of their slots and return them;
        ``filled`` (flows per resource) is counted down."""
        done = np.flatnonzero(self._finish <= by)
        if not done.size:
            return []
        hops = self._hops[done]
        np.add.at(self._carried, hops, self._size[done][:, None])
        self.touched.append(hops.ravel())
        self._live[done] = False
        self.live_count -= done.size
        self._rate[done] = 0.0
        self._finish[done] = math.inf
        self._hops[done] = _DUMMY
        flows, finished = self._flow, []
        for slot in done.tolist():
            flow = flows[slot]
            assert flow is not None
            flows[slot] = None
            for r in flow.route:
                filled[r] -= 1
            finished.append(flow)
        self._free += done.tolist()
        return finished
