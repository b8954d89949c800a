"""Flow-level network and processor sharing: max–min fair rates (the SimGrid model).

Every transfer is a *flow* over the directed links of its route; every CPU job
is a flow over one generic resource (a host's cores). All of them share
capacity by max–min fairness, computed by progressive filling: raise every
unfrozen flow's rate together until some resource saturates or a flow reaches
its own cap, freeze the flows that hit it, repeat. Rates are piecewise
constant between flow starts and ends, so the simulation only wakes up then.

Model choices, and why:

* Links are full duplex: each direction of an edge is a separate resource with
  the edge's full bandwidth, as on Ethernet, InfiniBand and NVLink. So pushes
  to a server and pulls from it do not slow each other down.
* Latency is a pipeline delay: a flow takes bandwidth from its first instant
  and its last byte arrives one path latency (sum of hop latencies) after the
  bandwidth phase ends. Store-and-forward per hop would make latency depend on
  a packet size this model has no notion of.
* Scale: 1,024 pushes that start together must cost one rate computation,
  not 1,024. Starts and ends are queued and settled by one wake-up that runs
  after every ordinary event of the same simulated instant (a SimPy priority
  after NORMAL), so all the changes of one instant are one recompute. Only the
  connected component of the flow/resource sharing graph that changed is
  recomputed: max–min rates of other components cannot change. The filling
  itself is vectorised with numpy over a padded flow × hop index matrix.
  Jobs on a generic resource share nothing else, so each such resource is
  its own component, solved in closed form without scanning the links.
* One pending "next completion" wake-up at a time; rescheduling bumps a
  generation counter so a superseded wake-up returns at once. Flows finishing
  within a tiny tolerance of each other complete in the same wake-up, which
  also absorbs float round-off in the remaining bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import simpy
from simpy.events import NORMAL, EventPriority

from sim.topology import Cluster

# Settle after every NORMAL event of the same instant, so a whole instant's
# starts and ends are coalesced into one rate computation.
_LATE = EventPriority(NORMAL + 1)
# Relative tolerance on times (flow completion) and on rate levels (which
# resources saturate in one step of the filling).
_TIME_TOL = 1e-12
_LEVEL_TOL = 1e-9
_DUMMY = 0  # resource index that pads hop rows; infinite capacity, never counted
_WIDTH_STEP = 8  # hop rows are padded to a multiple of 8 (see _rows_any)


def _rows_any(mask: np.ndarray) -> np.ndarray:
    """Row-wise ``any`` of a C-contiguous bool matrix whose width is a multiple of 8.

    Eight bools are read as one 64-bit word: several times faster than
    ``mask.any(axis=1)``, and this runs on every flow at every recompute.
    """
    words = mask.view(np.uint64)
    return words[:, 0] != 0 if words.shape[1] == 1 else words.any(axis=1)


class _Late(simpy.Event):
    """A timeout processed after every NORMAL event of its instant.

    What ``simpy.Timeout`` does, at priority ``_LATE``: the network's own
    wake-ups see every start and end their instant will bring.
    """

    def __init__(self, env: simpy.Environment, delay: float) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        env.schedule(self, _LATE, delay)


class _Flow(simpy.Event):
    """The event a caller waits on, carrying its flow's request until admission."""

    def __init__(
        self,
        env: simpy.Environment,
        hops: np.ndarray,
        amount: float,
        max_rate: float,
        latency: float,
        tag: Any,
    ) -> None:
        super().__init__(env)
        self.hops = hops
        self.amount = amount
        self.max_rate = max_rate
        self.latency = latency
        self.tag = tag

    def arrive(self) -> None:
        """The bandwidth phase is over: succeed one path latency from now.

        Scheduled directly, as ``simpy.Timeout`` schedules itself, so a
        completion costs one event, not a helper timeout plus this one.
        """
        self._ok = True
        self._value = self.tag
        self.env.schedule(self, NORMAL, self.latency)


class FlowNetwork:
    """Links of a ``Cluster`` plus generic resources, shared max–min fairly.

    ``transfer`` moves bytes along a route; ``work`` runs a job on a resource
    added with ``add_resource`` (e.g. ``cpu:n0`` with capacity = cores, amount
    in CPU-seconds, ``max_rate`` 1.0 = one core). Both return SimPy events.
    """

    def __init__(self, env: simpy.Environment, cluster: Cluster) -> None:
        self.env = env
        self.cluster = cluster
        self.recomputes = 0
        self._index: dict[str | tuple[str, str], int] = {}
        self._names = ["<pad>"]
        caps = [math.inf]
        for a, b, bw in cluster.graph.edges(data="bandwidth"):
            for u, v in ((a, b), (b, a)):
                self._index[u, v] = len(self._names)
                self._names.append(f"{u}->{v}")
                caps.append(float(bw))
        self._n_links = len(self._names)  # resources [1, n_links) are links
        self._cap = np.array(caps)
        self._carried = np.zeros(len(caps))
        self._paths: dict[tuple[str, str], tuple[np.ndarray, float]] = {}
        # Per-slot flow state. A flow's bytes left at time t are
        # rem0 - rate * (t - t0); t0/rem0 move only when its rate changes.
        slots = 64
        self._hops = np.zeros((slots, _WIDTH_STEP), dtype=np.intp)
        self._size = np.zeros(slots)
        self._rem0 = np.zeros(slots)
        self._t0 = np.zeros(slots)
        self._rate = np.zeros(slots)
        self._max_rate = np.full(slots, math.inf)
        self._finish = np.full(slots, math.inf)
        self._on_links = np.zeros(slots, dtype=bool)  # slot holds a transfer
        self._jobs: dict[int, set[int]] = {}  # generic resource -> slots of its jobs
        self._free = list(range(slots - 1, -1, -1))
        self._flow: list[_Flow | None] = [None] * slots
        # Changes waiting for the settle of this instant.
        self._pending: list[_Flow] = []
        self._touched: list[np.ndarray] = []  # links whose flows changed
        self._touched_jobs: set[int] = set()  # generic resources whose jobs changed
        self._settle_scheduled = False
        self._generation = 0
        self._wake_at = math.inf

    # ------------------------------------------------------------------ API

    def add_resource(self, name: str, capacity: float) -> None:
        """Register a shared resource (e.g. ``cpu:n0`` with capacity = cores)."""
        if name in self._index:
            raise ValueError(f"resource {name!r} already exists")
        if not 0 < capacity < math.inf:
            raise ValueError(f"resource {name!r}: capacity must be finite and > 0, got {capacity}")
        self._index[name] = len(self._names)
        self._names.append(name)
        self._cap = np.append(self._cap, float(capacity))
        self._carried = np.append(self._carried, 0.0)
        self._jobs[self._index[name]] = set()

    def transfer(
        self,
        src: str,
        dst: str,
        nbytes: float,
        tag: Any = None,
        max_rate: float = math.inf,
        collective: bool = False,
    ) -> simpy.Event:
        """Move ``nbytes`` from ``src`` to ``dst``; the event's value is ``tag``.

        It succeeds when the last byte arrives: the max–min-shared bandwidth
        phase plus the path latency. ``max_rate`` caps the flow (bytes/s), for
        a sender that cannot go faster than its software path. ``collective``
        marks a member's share of a ring collective; links price it like any
        other flow.
        """
        if nbytes < 0:
            raise ValueError(f"transfer of negative size {nbytes}")
        hops, latency = self._path(src, dst)
        if hops.size == 0 or nbytes == 0:
            return self.env.timeout(latency, tag)
        return self._submit(hops, nbytes, max_rate, latency, tag)

    def work(self, resource: str, amount: float, max_rate: float = 1.0) -> simpy.Event:
        """Run ``amount`` units of work on ``resource``, at most ``max_rate`` units/s.

        For a CPU resource the amount is CPU-seconds and ``max_rate`` 1.0 is one
        core: jobs outnumbering cores share them (processor sharing).
        """
        if amount < 0:
            raise ValueError(f"work of negative amount {amount}")
        index = self._index.get(resource)
        if index is None or index < self._n_links:
            raise ValueError(f"unknown resource {resource!r}; call add_resource first")
        if amount == 0:
            return self.env.timeout(0.0)
        return self._submit(np.array([index], dtype=np.intp), amount, max_rate, 0.0, None)

    def work_on(self, resources: list[str], amount: float, max_rate: float = 1.0) -> simpy.Event:
        """Run ``amount`` units of work that hold every one of ``resources`` at once.

        A process's CPU work on one machine holds a core of the machine *and*
        the process's own interpreter lock: two resources, shared max–min fairly
        like a flow's links. Keep every job on such a resource multi-resource:
        single-resource jobs are solved apart and would not see these.
        """
        indices = [self._index.get(r) for r in resources]
        if any(i is None or i < self._n_links for i in indices):
            raise ValueError(f"unknown resource among {resources}; call add_resource first")
        if amount == 0:
            return self.env.timeout(0.0)
        return self._submit(np.array(indices, dtype=np.intp), amount, max_rate, 0.0, None)

    def link_stats(self, elapsed_s: float) -> list[dict[str, Any]]:
        """Bytes per directed link (in-flight flows counted so far) and utilisation.

        Utilisation is bytes / (bandwidth · elapsed_s); only links that carried
        bytes are listed, sorted by name.
        """
        carried = self._carried.copy()
        live = np.flatnonzero(self._on_links)
        if live.size:
            done = self._size[live] - self._left(live, self.env.now)
            np.add.at(carried, self._hops[live], done[:, None])
        stats = [
            {
                "name": self._names[i],
                "bytes": float(carried[i]),
                "utilization": float(carried[i] / (self._cap[i] * elapsed_s))
                if elapsed_s > 0
                else 0.0,
            }
            for i in range(1, self._n_links)
            if carried[i] > 0
        ]
        return sorted(stats, key=lambda s: s["name"])

    def carried(self, prefix: str) -> float:
        """Work finished so far on the resources named ``prefix…`` (``cpu:``: CPU-seconds)."""
        return float(
            sum(
                self._carried[i]
                for name, i in self._index.items()
                if i >= self._n_links and isinstance(name, str) and name.startswith(prefix)
            )
        )

    # ------------------------------------------------------------- internals

    def _path(self, src: str, dst: str) -> tuple[np.ndarray, float]:
        """Resource indices of the route's directed links, and its latency (cached)."""
        path = self._paths.get((src, dst))
        if path is None:
            route = self.cluster.route(src, dst)
            hops = np.array([self._index[e] for e in route], dtype=np.intp)
            path = self._paths[src, dst] = (hops, self.cluster.path_latency(src, dst))
        return path

    def _submit(
        self, hops: np.ndarray, amount: float, max_rate: float, latency: float, tag: Any
    ) -> simpy.Event:
        if not max_rate > 0:
            raise ValueError(f"max_rate must be > 0, got {max_rate}")
        flow = _Flow(self.env, hops, float(amount), max_rate, latency, tag)
        self._pending.append(flow)
        self._request_settle()
        return flow

    def _request_settle(self) -> None:
        if not self._settle_scheduled:
            self._settle_scheduled = True
            _Late(self.env, 0.0).callbacks.append(self._settle)

    def _left(self, slots: np.ndarray, now: float) -> np.ndarray:
        return self._rem0[slots] - self._rate[slots] * (now - self._t0[slots])

    def _settle(self, _event: simpy.Event) -> None:
        """Admit this instant's new flows, recompute what changed, re-arm."""
        self._settle_scheduled = False
        if self._pending:
            self._admit(self._pending)
            self._pending = []
        links, self._touched = self._touched, []
        resources, self._touched_jobs = self._touched_jobs, set()
        changed = bool(links) and self._share_links(np.concatenate(links))
        for resource in resources:
            changed = self._share_resource(resource) or changed
        if changed:
            self.recomputes += 1
        self._arm()

    def _admit(self, pending: list[_Flow]) -> None:
        now = self.env.now
        width = -(-max(len(p.hops) for p in pending) // _WIDTH_STEP) * _WIDTH_STEP
        if width > self._hops.shape[1]:
            pad = np.zeros((self._hops.shape[0], width - self._hops.shape[1]), dtype=np.intp)
            self._hops = np.hstack([self._hops, pad])
        if len(pending) > len(self._free):
            self._grow(len(pending) - len(self._free))
        slots = np.array([self._free.pop() for _ in pending], dtype=np.intp)
        on_links = []
        for slot, p in zip(slots.tolist(), pending, strict=True):
            self._hops[slot, : len(p.hops)] = p.hops
            self._flow[slot] = p
            first = int(p.hops[0])
            if first < self._n_links or len(p.hops) > 1:  # several resources: progressive filling
                on_links.append(slot)
            else:
                self._jobs[first].add(slot)
                self._touched_jobs.add(first)
        self._size[slots] = self._rem0[slots] = [p.amount for p in pending]
        self._max_rate[slots] = [p.max_rate for p in pending]
        self._t0[slots] = now
        self._rate[slots] = 0.0
        if on_links:
            self._on_links[on_links] = True
            self._touched.append(self._hops[on_links].ravel())

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
        self._on_links = ext(self._on_links, False)
        self._flow += [None] * extra
        self._free = list(range(new - 1, old - 1, -1)) + self._free

    def _component(self, touched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transfers joined to the touched links through shared links.

        Returns their slots and hop rows. Max–min rates outside this connected
        component cannot change, so only it is recomputed.
        """
        live = np.flatnonzero(self._on_links)
        hops = np.take(self._hops, live, axis=0)
        mark = np.zeros(len(self._cap), dtype=bool)
        mark[touched] = True
        count = -1
        while True:
            mark[_DUMMY] = False
            inside = np.flatnonzero(_rows_any(np.take(mark, hops)))
            if inside.size == count:
                return np.take(live, inside), np.take(hops, inside, axis=0)
            count = inside.size
            mark[np.take(hops, inside, axis=0)] = True

    def _share_links(self, touched: np.ndarray) -> bool:
        """Max–min fair rates for the changed component, by progressive filling.

        Returns whether there was anything to share.
        """
        flows, hops = self._component(touched)
        if flows.size == 0:
            return False
        now = self.env.now
        self._rem0[flows] = self._left(flows, now)
        self._t0[flows] = now
        cap = np.take(self._max_rate, flows)
        n_res = len(self._cap)
        spare = self._cap.copy()
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

    def _share_resource(self, resource: int) -> bool:
        """Max–min shares of one generic resource among its jobs, in closed form.

        With caps sorted c₁ ≤ … ≤ cₙ and capacity C, the fair level is the
        first L_k = (C − c₁ − … − c_{k−1}) / (n − k + 1) with c_k ≥ L_k: jobs
        capped below it keep their caps, the rest get it. Returns whether the
        resource has jobs.
        """
        slots = self._jobs[resource]
        if not slots:
            return False
        now = self.env.now
        if len(slots) == 1:
            # A lone job (a GPU's compute, most often) gets min(its cap, capacity):
            # the same arithmetic in Python floats, without a dozen numpy calls.
            (job,) = slots
            left = float(self._rem0[job]) - float(self._rate[job]) * (now - float(self._t0[job]))
            rate = min(float(self._max_rate[job]), float(self._cap[resource]))
            self._rem0[job] = left
            self._t0[job] = now
            self._rate[job] = rate
            self._finish[job] = now + left / rate
            return True
        jobs = np.fromiter(slots, dtype=np.intp, count=len(slots))
        self._rem0[jobs] = self._left(jobs, now)
        self._t0[jobs] = now
        cap = self._max_rate[jobs]
        caps = np.sort(cap)
        before = np.concatenate(([0.0], np.cumsum(caps[:-1])))
        levels = (self._cap[resource] - before) / np.arange(len(caps), 0, -1)
        reach = np.flatnonzero(caps >= levels)
        rate = np.minimum(cap, levels[reach[0]]) if reach.size else cap
        self._rate[jobs] = rate
        self._finish[jobs] = now + self._rem0[jobs] / rate
        return True

    def _arm(self) -> None:
        """Keep exactly one live wake-up, at the earliest completion."""
        wake_at = float(self._finish.min())  # inf in free slots
        if wake_at == self._wake_at:
            return
        self._generation += 1
        self._wake_at = wake_at
        if wake_at < math.inf:
            generation = self._generation
            delay = max(wake_at - self.env.now, 0.0)
            wake = _Late(self.env, delay)
            wake.callbacks.append(self._wake_callback(generation))

    def _wake_callback(self, generation: int) -> Callable[[simpy.Event], None]:
        def wake(_event: simpy.Event) -> None:
            if generation == self._generation:
                self._complete()

        return wake

    def _complete(self) -> None:
        """Finish every flow done by now; their resources get re-shared at settle."""
        now = self.env.now
        self._wake_at = math.inf
        done = np.flatnonzero(self._finish <= now + _TIME_TOL * max(now, 1.0))
        hops = self._hops[done]
        np.add.at(self._carried, hops, self._size[done][:, None])
        on_links = self._on_links[done]
        if on_links.any():
            self._touched.append(hops[on_links].ravel())
        for slot, resource in zip(
            done[~on_links].tolist(), hops[~on_links, 0].tolist(), strict=True
        ):
            self._jobs[resource].discard(slot)
            self._touched_jobs.add(resource)
        self._on_links[done] = False
        self._rate[done] = 0.0
        self._finish[done] = math.inf
        self._hops[done] = _DUMMY
        flows = self._flow
        for slot in done.tolist():
            flow = flows[slot]
            assert flow is not None
            flows[slot] = None
            flow.arrive()
        self._free += done.tolist()
        self._request_settle()
