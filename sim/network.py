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
  after NORMAL), so all the changes of one instant are one recompute.
* Stragglers: pushes that start one by one must not re-rate every flow on
  the server link each time. A flow whose only shared resource is one
  bottleneck, its other links its own, joins that resource's *pool*
  (``sim.fair_share``): equal shares on a virtual clock, O(log n) per start
  or end. Ring neighbours, a server's cores and incasts all stay pooled
  (a worker's own GPU is not shared at all: a *private* resource, a plain delay).
  Where a flow would share two resources with others (or caps differ), the
  pools it touches are dissolved into progressive filling, vectorised with
  numpy over a padded flow x hop index matrix, on the connected component
  of the sharing graph that changed: max–min rates of others cannot change.
  Either way the rates are the max–min ones; the property test in
  tests/test_network.py checks both paths against a plain reference.
* One pending "next completion" wake-up at a time: the environment's alarm
  (``CountingEnvironment.alarm``), which a new setting replaces. Flows finishing
  within a tiny tolerance of each other complete in the same wake-up, which
  also absorbs float round-off in the remaining bytes. The first zero-latency
  flow a wake-up finishes is processed there, not queued (``sim.flow_events``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import simpy
from simpy.core import StopSimulation

from sim.environment import CountingEnvironment
from sim.fair_share import Pool
from sim.flow_events import LATE, Flow, Late, LateAlarm, arrive_all
from sim.max_min import Filling
from sim.topology import Cluster

# Relative tolerance on times: flows finishing this close complete together.
_TIME_TOL = 1e-12
# A route as cached: resource indices, latency, the resource a new pool of it would
# share, and the least capacity of its other resources (see FlowNetwork._route).
_Path = tuple[tuple[int, ...], float, int, float]


SMALL_MESSAGE = 64  # bytes of a control message: a loss report, a request for a copy


class FlowNetwork:
    """Links of a ``Cluster`` plus generic resources, shared max–min fairly.

    ``transfer`` moves bytes along a route; ``work`` runs a job on a resource
    added with ``add_resource`` (e.g. ``cpu:n0`` with capacity = cores, amount
    in CPU-seconds, ``max_rate`` 1.0 = one core). Both return SimPy events.
    """

    # Whether ``transfer`` is a flow of this network, as ``transfer_later``'s are; a
    # network that prices a transfer otherwise (a loopback gRPC stream) says no.
    transfers_are_flows = True
    prices_held_requests = False  # where an RPC has no CPU: see LoopbackNetwork
    rings_by_step = False  # a ring member's share is one flow, the steps' latencies chained

    def __init__(self, env: simpy.Environment, cluster: Cluster, pooled: bool = True) -> None:
        """``pooled=False`` sends every flow through progressive filling: the same rates,
        slower; the property test compares the two."""
        self.env = env
        self.pooled = pooled
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
        self._caps = caps  # capacity per resource index (0: the infinite pad)
        self._paths: dict[tuple[str, str], _Path] = {}
        self._jobs: dict[tuple[str, ...], _Path] = {}
        self._works: dict[str, _Path] = {}  # work's own
        # Private resources: when each one's job in flight ends (see add_resource).
        self._busy_until: dict[str, float] = {}
        # Pooled flows: which pool holds each resource (its bottleneck or a
        # member's own link), how many filled flows use each, and one heap of
        # pool wake-ups (time, sequence, pool version, pool).
        self._owner: list[Pool | None] = [None] * len(caps)
        self._filled = [0] * len(caps)
        self._pool_carried = [0.0] * len(caps)
        self._pools: set[Pool] = set()
        self._pool_wakes: list[tuple[float, int, int, Pool]] = []
        self._seq = itertools.count()
        self._filling = Filling(self._caps)
        # Flows waiting for the settle of this instant.
        self._to_fill: list[Flow] = []
        self._settle_scheduled = False
        # The completion wake-up: the environment's alarm, an event on a plain SimPy one.
        if isinstance(env, CountingEnvironment):
            self._alarm, self._alarm_off = env.alarm, env.alarm_off
        else:
            late = LateAlarm(env)
            self._alarm, self._alarm_off = late, late.off
        self._wake_at = math.inf
        self._recomputed_at = math.nan

    # ------------------------------------------------------------------ API

    def add_resource(self, name: str, capacity: float, private: bool = False) -> None:
        """Register a shared resource (e.g. ``cpu:n0`` with capacity = cores).

        ``private``: one role alone uses it, one job at a time (a worker's own GPU: its
        device ops block). Nothing shares it, so a job is a plain delay at the rate a
        pool of one would give it: one SimPy timeout instead of a flow, a pool and the
        network's wake-up, for the same times. Its end is an ordinary event, not the
        network's late wake-up. A second job while one runs is an error.
        """
        if name in self._index:
            raise ValueError(f"resource {name!r} already exists")
        if not 0 < capacity < math.inf:
            raise ValueError(f"resource {name!r}: capacity must be finite and > 0, got {capacity}")
        self._index[name] = len(self._names)
        self._names.append(name)
        self._caps.append(float(capacity))
        self._owner.append(None)
        self._filled.append(0)
        self._pool_carried.append(0.0)
        if private:
            self._busy_until[name] = -math.inf

    def transfer(
        self,
        src: str,
        dst: str,
        nbytes: float,
        tag: Any = None,
        max_rate: float = math.inf,
        collective: bool = False,
        rpc_share: float = 1.0,
    ) -> simpy.Event:
        """Move ``nbytes`` from ``src`` to ``dst``; the event's value is ``tag``.

        It succeeds when the last byte arrives: the max–min-shared bandwidth
        phase plus the path latency. ``max_rate`` caps the flow (bytes/s), for
        a sender that cannot go faster than its software path. ``collective``
        marks a member's share of a ring collective; links price it like any
        other flow. ``rpc_share``: the part of one RPC's fixed software cost this
        transfer carries (½ for each leg of a request and its reply); a link
        carries every message whole, so only the machine platforms read it.
        """
        if nbytes < 0:
            raise ValueError(f"transfer of negative size {nbytes}")
        path = self._paths.get((src, dst)) or self._path(src, dst)
        if not path[0] or nbytes == 0:
            return self.env.timeout(path[1], tag)
        return self._submit(path, nbytes, max_rate, tag)

    def message(self, src: str, dst: str) -> simpy.Event:
        """A control message that is one leg of an RPC whose other leg answers it (a loss
        report, a request held at the server): it carries half the RPC's fixed cost."""
        return self.transfer(src, dst, SMALL_MESSAGE, rpc_share=0.5)

    def transfer_later(self, src: str, dst: str, nbytes: float, tag: Any = None) -> Flow:
        """A transfer that ``start`` begins later; its event exists now, so a waiter can yield
        the transfer itself rather than a gate whose release starts it: a server that
        releases its pulls starts them, one event and one resume less per pull."""
        if nbytes < 0:
            raise ValueError(f"transfer of negative size {nbytes}")
        path = self._paths.get((src, dst)) or self._path(src, dst)
        return self._flow(path, nbytes, math.inf, tag)

    def start(self, flows: list[Flow]) -> None:
        """Begin the transfers of ``transfer_later`` now, in order."""
        now = self.env.now
        for flow in flows:
            if not flow.route or not flow.amount:  # only its latency: what transfer's timeout is
                flow.arrive()
            elif not self.pooled or not self._pool(flow, now):
                self._fill(flow)

    def work(self, resource: str, amount: float, max_rate: float = 1.0) -> simpy.Event:
        """Run ``amount`` units of work on ``resource``, at most ``max_rate`` units/s.

        For a CPU resource the amount is CPU-seconds and ``max_rate`` 1.0 is one
        core: jobs outnumbering cores share them (processor sharing).
        """
        if amount < 0:
            raise ValueError(f"work of negative amount {amount}")
        if resource in self._busy_until:
            return self._private_work(resource, amount, max_rate)
        job = self._works.get(resource)
        if job is None:  # one resource's job, looked up without building a key tuple
            job = self._works[resource] = self._job((resource,))
        if amount == 0:
            return self.env.timeout(0.0)
        return self._submit(job, amount, max_rate, None)

    def _private_work(self, resource: str, amount: float, max_rate: float) -> simpy.Event:
        return self.env.timeout(self.private_delay(resource, amount, self.env.now, max_rate))

    def is_private(self, resource: str) -> bool:
        return resource in self._busy_until

    def private_delay(
        self, resource: str, amount: float, start: float, max_rate: float = 1.0
    ) -> float:
        """Book a job on a private resource from ``start``: how long it takes (a delay; its
        work counts as carried from its start, its end being fixed then)."""
        if amount < 0:
            raise ValueError(f"work of negative amount {amount}")
        i = self._index[resource]
        if start < self._busy_until[resource]:
            raise RuntimeError(f"two jobs at once on the private resource {resource!r}")
        if not max_rate > 0:
            raise ValueError(f"max_rate must be > 0, got {max_rate}")
        cap = self._caps[i]
        seconds = amount / (cap if cap < max_rate else max_rate)  # min(), without the call
        self._busy_until[resource] = start + seconds
        self._pool_carried[i] += amount
        return seconds

    def work_on(
        self, resources: Sequence[str], amount: float, max_rate: float = 1.0
    ) -> simpy.Event:
        """Run ``amount`` units of work that hold every one of ``resources`` at once.

        A process's CPU work on one machine holds a core of the machine *and*
        the process's own interpreter lock: two resources, shared max–min fairly
        like a flow's links.
        """
        key = tuple(resources)
        job = self._jobs.get(key) or self._job(key)
        if amount == 0:
            return self.env.timeout(0.0)
        return self._submit(job, amount, max_rate, None)

    def link_stats(self, elapsed_s: float) -> list[dict[str, Any]]:
        """Bytes per directed link (in-flight flows counted so far) and utilisation.

        Utilisation is bytes / (bandwidth · elapsed_s); only links that carried
        bytes are listed, sorted by name.
        """
        carried = self._filling.carried + np.array(self._pool_carried)
        self._filling.in_flight(carried, self.env.now)
        for pool in self._pools:
            for flow, left in pool.left(self.env.now):
                for r in flow.route:
                    carried[r] += flow.amount - left
        used = np.flatnonzero(carried[: self._n_links] > 0)
        moved, caps = carried.tolist(), self._caps
        stats = [
            {
                "name": self._names[i],
                "bytes": moved[i],
                "utilization": moved[i] / (caps[i] * elapsed_s) if elapsed_s > 0 else 0.0,
            }
            for i in used[used > 0].tolist()
        ]
        return sorted(stats, key=lambda s: s["name"])

    def carried(self, prefix: str) -> float:
        """Work finished so far on the resources named ``prefix…`` (``cpu:``: CPU-seconds)."""
        return float(sum(self.carried_each(prefix).values()))

    def carried_each(self, prefix: str) -> dict[str, float]:
        """Work finished so far on each resource named ``prefix…``, by its name less the prefix
        (``proc:``: each process's CPU-seconds, to compare with a run's per-process ticks)."""
        filled, pooled = self._filling.carried.tolist(), self._pool_carried
        return {
            name[len(prefix) :]: filled[i] + pooled[i]
            for name, i in self._index.items()
            if i >= self._n_links and isinstance(name, str) and name.startswith(prefix)
        }

    # ------------------------------------------------------------- internals

    def _path(self, src: str, dst: str) -> _Path:
        """The route's directed links and its latency, with what ``_route`` adds (cached)."""
        route = tuple(self._index[e] for e in self.cluster.route(src, dst))
        path = self._paths[src, dst] = self._route(route, self.cluster.path_latency(src, dst))
        return path

    def _job(self, key: tuple[str, ...]) -> _Path:
        """The resources of a job on ``key``, as a zero-latency route (cached)."""
        indices = [self._index.get(r) for r in key]
        if any(i is None or i < self._n_links for i in indices):
            raise ValueError(f"unknown resource among {key}; call add_resource first")
        job = self._jobs[key] = self._route(tuple(i for i in indices if i is not None), 0.0)
        return job

    def _route(self, route: tuple[int, ...], latency: float) -> _Path:
        """A route with the resource a new pool of it would share (the widest, the likeliest
        to be shared, like a server's NIC; ties: the last) and the least capacity of its
        others: what every flow on it would otherwise recompute when it starts."""
        caps = self._caps
        if not route:
            return route, latency, 0, math.inf
        root = max(reversed(route), key=caps.__getitem__)
        return route, latency, root, min((caps[r] for r in route if r != root), default=math.inf)

    def _submit(self, path: _Path, amount: float, max_rate: float, tag: Any) -> simpy.Event:
        flow = self._flow(path, amount, max_rate, tag)
        if not self.pooled or not self._pool(flow, self.env.now):
            self._fill(flow)
        return flow

    def _flow(self, path: _Path, amount: float, max_rate: float, tag: Any) -> Flow:
        if not max_rate > 0:
            raise ValueError(f"max_rate must be > 0, got {max_rate}")
        route, latency, root, others = path
        cap = max_rate if max_rate < others else others  # min(), without the call
        return Flow(self.env, route, float(amount), max_rate, latency, tag, root, cap)

    def _request_settle(self) -> None:
        if not self._settle_scheduled:
            self._settle_scheduled = True
            Late(self.env, 0.0, self._settle)

    def _settle(self, _event: simpy.Event) -> None:
        """Admit this instant's flows to progressive filling, re-rate what changed, re-arm."""
        self._settle_scheduled = False
        now = self.env.now
        if self._to_fill:
            self._filling.admit(self._to_fill, now)
            self._to_fill = []
        if self._filling.share(now) and now != self._recomputed_at:
            self._recomputed_at = now  # instants at which rates changed, counted once
            self.recomputes += 1
        self._arm()

    def _pool(self, flow: Flow, now: float) -> bool:
        """Put ``flow`` in a pool if that keeps every pool exact; returns whether it did.

        It may join the pool that holds exactly one of its resources (a lone
        member's pool is first re-rooted there) if its other resources are
        free and its cap matches, or start a pool on its ``root`` (its cap
        there ``cap``) if all its resources are free. Otherwise the pools it
        touches are dissolved.
        """
        route, owner, filled = flow.route, self._owner, self._filled
        root, cap = flow.root, flow.cap
        pool, at = None, -1
        for r in route:
            if filled[r] or (owner[r] is not None and pool is not None):
                self._dissolve({owner[r] for r in route} - {None}, now)
                return False
            if owner[r] is not None:
                pool, at = owner[r], r
        if pool is None:
            pool = Pool(root, self._caps[root], cap, now)
            self._pools.add(pool)
        else:
            if pool.resource != at and len(pool) == 1:
                lone = pool.first()[2]
                pool.reroot(at, self._caps[at], self._cap_without(lone, at))
            if at != root:
                cap = self._cap_without(flow, at)
            if pool.resource != at or pool.cap != cap:
                self._dissolve({pool}, now)
                return False
        for r in route:
            owner[r] = pool
        seq = self._seq
        at = pool.join(flow, flow.amount, next(seq), now)
        heapq.heappush(self._pool_wakes, (at, next(seq), pool.version, pool))
        if now != self._recomputed_at:
            self._recomputed_at = now
            self.recomputes += 1
        if at != self._wake_at:  # it may move the first finish either way
            self._arm()
        return True

    def _cap_without(self, flow: Flow, root: int) -> float:
        """A pooled flow's own cap: its ``max_rate`` and every resource but the pool's."""
        caps, cap = self._caps, flow.max_rate
        for r in flow.route:
            if r != root and caps[r] < cap:
                cap = caps[r]
        return cap

    def _dissolve(self, pools: set[Pool | None], now: float) -> None:
        """Move the members of ``pools`` to progressive filling with what they have left."""
        for pool in pools:
            assert pool is not None
            for flow, left in pool.drain(now):
                for r in flow.route:
                    self._owner[r] = None
                flow.left = left
                self._fill(flow)
            self._pools.discard(pool)

    def _fill(self, flow: Flow) -> None:
        for r in flow.route:
            self._filled[r] += 1
        self._to_fill.append(flow)
        self._request_settle()

    def _arm(self) -> None:
        """Keep one live wake-up, at the earliest completion.

        An incast's first finish moves later with every arrival: the alarm moves
        with it (``CountingEnvironment.alarm`` costs no event to move), rather
        than ring early and find nothing done, a tenth of async_ps's events.
        """
        wakes = self._pool_wakes
        while wakes and wakes[0][2] != wakes[0][3].version:
            heapq.heappop(wakes)  # superseded by a re-rate
        wake_at = wakes[0][0] if wakes else math.inf
        if self._filling.live_count:
            filled = self._filling.next_finish()
            if filled < wake_at:
                wake_at = filled
        if wake_at == self._wake_at:
            return
        self._wake_at = wake_at
        if wake_at == math.inf:
            self._alarm_off()
            return
        delay = wake_at - self.env.now
        self._alarm(delay if delay > 0.0 else 0.0, LATE, self._complete)

    def _complete(self) -> None:
        """The wake-up: finish every flow done by now; pools re-rate at once, progressive
        filling at settle.

        The first zero-latency flow done is the event SimPy would process next: it is
        processed here, without a trip through the event queue (``Flow.arrive_now``).
        """
        now = self.env.now
        self._wake_at = math.inf
        tol = _TIME_TOL * (now if now > 1.0 else 1.0)
        done_flows: list[Flow] = []
        wakes, carried, owner = self._pool_wakes, self._pool_carried, self._owner
        rerated = False
        while wakes and wakes[0][0] <= now + tol:
            _, _, version, pool = heapq.heappop(wakes)
            if version != pool.version:
                continue
            for flow in pool.pop_done(now, tol):
                amount = flow.amount
                for r in flow.route:
                    carried[r] += amount
                    owner[r] = None
                done_flows.append(flow)
            if pool.queue or pool.heap:  # re-rated, with a wake-up entry at its next finish
                owner[pool.resource] = pool
                at = pool.rerate()
                heapq.heappush(wakes, (at, next(self._seq), pool.version, pool))
                rerated = True
            else:
                self._pools.discard(pool)
        if rerated and now != self._recomputed_at:
            self._recomputed_at = now
            self.recomputes += 1
        if self._filling.live_count:
            filled = self._filling.complete(now + tol, self._filled)
            if filled:
                done_flows += filled
                self._request_settle()
        # Every flow's arrival is scheduled (``arrive_all``) but the first zero-latency
        # one's, processed last, here (see ``Flow.arrive_now``): not for
        # ``env.run(until=flow)``, whose stop needs the event in the queue.
        first = None
        for k, flow in enumerate(done_flows):
            if not flow.latency:  # the first one without latency, and only it
                if StopSimulation.callback not in flow.callbacks:
                    first = flow
                    del done_flows[k]
                break
        arrive_all(self.env, done_flows)
        self._arm()
        if first is not None:
            first.arrive_now()
