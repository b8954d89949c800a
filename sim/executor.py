"""Runs a plan's role programs as SimPy processes; ops become priced events.

The executor is the simulator's half of "one definition, two executors": it
reads ops, never algorithm logic. Costs: compute and loading from the
workload (GPU or CPU, processor-shared where roles outnumber cores), network
transfers through the flow-level max–min model, server updates on the server
host's cores, collectives decomposed into the flows they make.
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy
from simpy.events import NORMAL, PENDING

from pslab import ops
from pslab.algorithms.base import Plan, Role, server_name
from pslab.distributions import role_rng
from pslab.metrics import compute_metrics
from pslab.policies import LeaderBoard, StalenessPolicy
from pslab.scenario import Scenario
from pslab.shards import shard_ranges
from pslab.trace import IterationMarks, SpanRecord, Trace, wait_category
from sim.costs import Costs
from sim.platform import LocalPlatform, NominalPlatform

if TYPE_CHECKING:
    from sim.numerics import Numerics

SMALL_MESSAGE = 64  # bytes of a control message (a loss report)

Proc = Generator[simpy.Event, Any, Any]
# What a collective call is of: "allreduce", or ("reduce", root) for rooted ones.
Kind = str | tuple[str, str]
# An op type's handler, span name and span category.
_OpKind = tuple[Callable[[Any, Any], Proc], str, str]
# Collective bodies start their work and succeed the event they are given when it ends.
Body = Callable[[simpy.Event], None]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the simulation runs.

    A run allocates millions of short-lived, acyclic objects (events, flows,
    trace spans) that reference counting frees; the trace keeps growing, so
    the collector's full passes walk ever more live objects and find almost
    nothing: on scale_1024.yaml they were a third of the wall time. The
    few cycles a run makes are collected once the collector is back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts processed events (for the benchmark's events/s)."""

    def __init__(self) -> None:
        super().__init__()
        self.events_processed = 0

    def step(self) -> None:
        super().step()  # raises EmptySchedule once nothing is left: that is no event
        self.events_processed += 1


@dataclass
class _Shard:
    index: int
    host: str
    offset: int
    length: int
    policy: StalenessPolicy
    waiters: list[tuple[int, simpy.Event]] = field(default_factory=list)
    # True while a closed round's mean is being applied: the policy's version
    # has moved on, the parameters have not yet, so pulls wait (the gRPC
    # server does both under one lock, so no pull sees the gap there).
    applying: bool = False


@dataclass
class _Rendezvous:
    """One collective call, gathered until all members arrived.

    Every member waits on the same ``done`` event, so a call costs one event
    for its members however many there are.
    """

    done: simpy.Event
    arrived: int = 0


@dataclass
class SimResult:
    metrics: dict[str, Any]
    trace: Trace
    params: np.ndarray | None = None  # numerics runs: the workers' average final parameters


def _numerics(plan: Plan, shards: list[tuple[int, int]]) -> Numerics:
    """Import torch (about 2 s with scikit-learn's digits) only for a scenario with a
    ``numerics`` section: a timing-only ``pslab sim`` then starts in well under a second."""
    from sim.numerics import Numerics

    return Numerics(plan, shards)


@contextmanager
def _one_torch_thread(active: bool) -> Iterator[None]:
    """Numerics runs train tiny models: torch's thread pool only adds contention (runs on a
    loaded 2-core machine swung from 1 s to 25 s with it)."""
    if not active:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class SimExecutor:
    def __init__(
        self,
        scenario: Scenario,
        plan: Plan,
        platform: NominalPlatform | LocalPlatform,
        start_at: dict[str, float] | None = None,
    ) -> None:
        """``start_at``: when each role's program begins (default: all at 0). Compare passes
        the offsets at which the measured run's processes really started working."""
        self.start_at = start_at or {}
        self.scenario = scenario
        self.plan = plan
        self.platform = platform
        self.cluster = platform.cluster
        self.env = CountingEnvironment()
        self.net = platform.network(self.env, plan)
        model = plan.model
        self.bpp = model.bytes_per_param
        self.model_bytes = model.nbytes
        self.costs = Costs(
            scenario, model.layers or [model.params], self.bpp, platform.worker_update_s_per_byte
        )
        self.trace = Trace("sim", meta={"scenario": scenario.name})
        self.n_workers = len(plan.workers)
        self.shards: list[_Shard] = []
        if plan.server:
            ranges = shard_ranges(
                model.params,
                plan.server.shards,
                scenario.algorithm.partition_bytes,
                model.bytes_per_param,
            )
            for k, (off, length) in enumerate(ranges):
                self.shards.append(
                    _Shard(
                        k,
                        platform.server_host(k),
                        off,
                        length,
                        plan.server.policy(self.n_workers),
                    )
                )
        self.registry_host = platform.registry_host
        self.board = LeaderBoard([list(g) for g in plan.registry.groups]) if plan.registry else None
        self.latest_round: dict[str, int] = {}
        self.fetchers: dict[str, list[tuple[int, simpy.Event]]] = {}
        self.rendezvous: dict[tuple, _Rendezvous] = {}
        self.seq: dict[tuple, int] = defaultdict(int)
        # Groups are keyed by a small id, not by the tuple: hashing a 1,024-name
        # tuple on every arrival made a ring all-reduce quadratic in its size.
        self._group_ids: dict[tuple[str, ...], int] = {}
        self._last_group: dict[tuple[str, Kind], tuple[tuple[str, ...], int]] = {}
        self._latency: dict[tuple[str, str], float] = {}
        self._kinds: dict[type, _OpKind] = {}
        self.endpoint = {r.name: platform.endpoint(r) for r in plan.roles}
        self.host_of = {r.name: platform.host(r) for r in plan.roles}
        self.cpu_of = {r.name: platform.cpu_of(r) for r in plan.roles}
        self.rngs = {r.name: role_rng(scenario.run.seed, r.name) for r in plan.roles}
        self.numerics = (
            _numerics(plan, [(s.offset, s.length) for s in self.shards])
            if scenario.numerics is not None
            else None
        )

    # ----------------------------------------------------------------- running

    def run(self) -> SimResult:
        wall0 = time.perf_counter()
        for role in self.plan.roles:
            self.env.process(self._drive(role))
        with _gc_paused(), _one_torch_thread(self.numerics is not None):
            self.env.run()
        wall = time.perf_counter() - wall0
        elapsed = self.env.now
        metrics = compute_metrics(
            self.trace,
            self.n_workers,
            self.scenario.workload.batch_size,
            self.scenario.run.warmup,
            self.scenario.run.iterations,
            links=self.net.link_stats(elapsed) if elapsed > 0 else [],
            extra={
                **(self._final_numerics() if self.numerics else {}),
                "events": self.env.events_processed,
                "wall_time_s": wall,
                "simulated_time_s": elapsed,
                "cpu_time_s": self.net.carried("cpu:"),  # every process's CPU work, summed
                "source": "sim",
            },
        )
        params = self.numerics.average_params() if self.numerics is not None else None
        return SimResult(metrics, self.trace, params)

    def _final_numerics(self) -> dict[str, Any]:
        assert self.numerics is not None
        self.numerics.evaluate(self.env.now, self.scenario.run.iterations)
        return self.numerics.metrics()

    def _evaluate(self, iteration: int) -> None:
        """Test the workers' average model at worker 0's iteration marks (numerics runs)."""
        assert self.numerics is not None
        loss, acc = self.numerics.evaluate(self.env.now, iteration)
        self.trace.counter("worker-0", "test", self.env.now, {"loss": loss, "accuracy": acc})

    def _drive(self, role: Role) -> Proc:
        program = role.program()
        marks = IterationMarks(self.trace, role.name, self.host_of[role.name])
        env, add, host = self.env, self.trace.add, self.host_of.get(role.name, role.name)
        if self.start_at.get(role.name):
            yield env.timeout(self.start_at[role.name])
        result: Any = None
        while True:
            try:
                op = program.send(result)
            except StopIteration:
                break
            if isinstance(op, ops.Iteration):
                marks.mark(op.iteration, self.env.now)
                if self.numerics is not None and role.name == "worker-0":
                    self._evaluate(op.iteration)
                result = None
            elif isinstance(op, ops.Start | ops.Wait):
                result = yield from self._timed(role, op, blocking=True)
            else:  # _timed inlined: one generator frame less on every resume of every op
                handler, name, cat = self._kind(op)
                start = env.now
                result, nbytes = yield from handler(role, op)
                add(
                    SpanRecord(
                        role.name,
                        host,
                        name,
                        cat,
                        start,
                        env.now,
                        op.iteration,
                        nbytes,
                        True,
                        getattr(op, "on_behalf", ()),
                    )
                )
        marks.close(self.env.now)

    def _span(
        self,
        role: str,
        name: str,
        cat: str,
        start: float,
        iteration: int,
        nbytes: int = 0,
        blocking: bool = True,
        on_behalf: tuple[str, ...] = (),
        args: dict[str, Any] | None = None,
        host: str | None = None,
    ) -> None:
        self.trace.add(
            SpanRecord(
                role,
                host or self.host_of.get(role, role),
                name,
                cat,
                start,
                self.env.now,
                iteration,
                nbytes,
                blocking,
                on_behalf,
                args,
            )
        )

    def _timed(self, role: Role, op: ops.Op, blocking: bool) -> Proc:
        start = self.env.now
        if isinstance(op, ops.Start):
            assert op.op is not None
            proc = self.env.process(self._timed(role, op.op, blocking=False))
            return (proc, op.op.cat.value)
        if isinstance(op, ops.Wait):
            results = yield self.env.all_of([h[0] for h in op.handles])
            cat = wait_category({h[1] for h in op.handles})
            self._span(role.name, "wait", cat, start, op.iteration)
            return [results[h[0]] for h in op.handles]
        handler, name, cat = self._kind(op)
        result, nbytes = yield from handler(role, op)
        self._span(
            role.name,
            name,
            cat,
            start,
            op.iteration,
            nbytes,
            blocking,
            getattr(op, "on_behalf", ()),
        )
        return result

    def _kind(self, op: ops.Op) -> _OpKind:
        """An op type's ``_op_<name>`` method, name and category, looked up once per type."""
        kind = self._kinds.get(type(op))
        if kind is None:
            kind = self._kinds[type(op)] = (getattr(self, f"_op_{op.name}"), op.name, op.cat.value)
        return kind

    # ----------------------------------------------------------- local work

    def _device_work(self, role: Role, seconds: float) -> simpy.Event:
        return self.platform.compute(self.net, role, seconds)

    def _op_load(self, role: Role, op: ops.Load) -> Proc:
        yield self.platform.sleep(self.net, role, self.costs.io(self.rngs[role.name]))
        if self.numerics is not None:
            self.numerics.load(role.name, op.iteration)
        return None, 0

    def _op_compute(self, role: Role, op: ops.Compute) -> Proc:
        yield self._device_work(role, self.costs.compute(self.rngs[role.name], op.fraction))
        if self.numerics is not None:
            return self.numerics.compute(role.name, op.iteration, op.phase), 0
        return None, 0

    def _op_smooth(self, role: Role, op: ops.Smooth) -> Proc:
        yield self._device_work(role, self.costs.smooth_s)
        if self.numerics is not None:
            self.numerics.smooth(role.name, op.buf)
        return None, 0

    def _op_update(self, role: Role, op: ops.Update) -> Proc:
        if role.device is None:
            yield self.platform.cpu_work(
                self.net, self.cpu_of[role.name], self.costs.worker_update(self.model_bytes)
            )
        if self.numerics is not None:
            self.numerics.update(role.name, op.rule, op.kwargs)
        return None, 0

    # ------------------------------------------------------- parameter server

    def _op_push(self, role: Role, op: ops.Push) -> Proc:
        src = self.endpoint[role.name]
        if len(self.shards) == 1:  # the common case, without helper processes and conditions
            (shard,) = self.shards
            yield self.net.transfer(src, shard.host, shard.length * self.bpp)
            yield from self._serve_push(shard, role, op)
            return None, self.model_bytes
        sent = [self.net.transfer(src, s.host, s.length * self.bpp) for s in self.shards]
        yield self.env.all_of(sent)
        yield self.env.all_of(
            [self.env.process(self._serve_push(s, role, op)) for s in self.shards]
        )
        return None, self.model_bytes

    def _serve_push(self, shard: _Shard, role: Role, op: ops.Push) -> Proc:
        start = self.env.now
        nbytes = shard.length * self.bpp
        yield self.platform.cpu_work(self.net, shard.host, self.costs.update(nbytes))
        aggregate = shard.policy.aggregate
        received = (
            self.numerics.pushed(shard.index, role.name, op.buf, aggregate)
            if self.numerics is not None
            else None
        )
        applied = shard.policy.on_push(role.rank, op.version)
        if applied is None:
            return
        if shard.policy.aggregate:  # the round's mean is applied once all pushes are in
            shard.applying = True
            yield self.platform.cpu_work(self.net, shard.host, self.costs.update(nbytes))
            shard.applying = False
        if self.numerics is not None:
            total = None if aggregate else received
            self.numerics.apply(shard.index, total, len(applied.workers), op.mode)
        self._span(
            server_name(shard.index),
            "apply",
            "server",
            start,
            op.iteration,
            nbytes,
            args={"staleness": applied.staleness, "version": applied.version},
            host=shard.host,
        )
        self._release(shard)

    def _release(self, shard: _Shard) -> None:
        still = []
        for worker, event in shard.waiters:
            if shard.policy.may_pull(worker):
                event.succeed()
            else:
                still.append((worker, event))
        shard.waiters = still

    def _op_pull(self, role: Role, op: ops.Pull) -> Proc:
        dst = self.endpoint[role.name]
        for s in self.shards:
            if s.applying or not s.policy.may_pull(role.rank):
                gate = self.env.event()
                s.waiters.append((role.rank, gate))
                yield gate
            if self.numerics is not None:  # the server streams the version it has now
                self.numerics.pulled(s.index, role.name, op.buf)
        pulls = [self.net.transfer(s.host, dst, s.length * self.bpp) for s in self.shards]
        yield pulls[0] if len(pulls) == 1 else self.env.all_of(pulls)
        return min(s.policy.version for s in self.shards), self.model_bytes

    # ------------------------------------------------------------ collectives

    def _span_bytes(self, span: ops.Span) -> int:
        return self.model_bytes if span is None else (span[1] - span[0]) * self.bpp

    def _succeed_in(self, event: simpy.Event, delay: float) -> None:
        """Succeed ``event`` ``delay`` seconds from now, as a Timeout would: one event, not two."""
        if event._value is not PENDING:
            raise RuntimeError(f"{event} has already been triggered")
        event._ok = True
        event._value = None
        self.env.schedule(event, NORMAL, delay)

    @staticmethod
    def _when_all(events: list[simpy.Event], then: Callable[[], Any]) -> None:
        """Call ``then`` once every one of ``events`` (all fresh) has been processed.

        A countdown on the events' callbacks: what ``env.all_of`` does, without
        the Condition's own event and bookkeeping, for waits nobody yields on.
        """
        left = len(events)
        if left == 0:
            then()
            return

        def one(_event: simpy.Event) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                then()

        for event in events:
            event.callbacks.append(one)

    def _group_id(self, role: str, kind: Kind, group: tuple[str, ...]) -> int:
        """A small int naming a group's value, remembered per (role, kind) by identity.

        Programs mostly pass the same tuple object to every call of one kind,
        so the by-value lookup (hashing and comparing every name) runs once,
        not on every call. Only the last tuple per (role, kind) is held, so a
        program that builds a fresh tuple per call keeps no more alive than
        its calls in flight already do.
        """
        entry = self._last_group.get((role, kind))
        if entry is None or entry[0] is not group:
            gid = self._group_ids.setdefault(group, len(self._group_ids))
            entry = self._last_group[role, kind] = (group, gid)
        return entry[1]

    def _collective(
        self, role: Role, kind: Kind, group: tuple[str, ...], body: Body
    ) -> simpy.Event:
        """Join this role's next call of (kind, group); the last to arrive starts ``body``.

        Calls are matched by their sequence number per role, so members meet
        in the n-th call whatever order they arrive in. Returns the event that
        succeeds, for every member at once, when ``body`` says the work is done.
        """
        gid = self._group_id(role.name, kind, group)
        mine = (role.name, kind, gid)
        n = self.seq[mine]
        self.seq[mine] = n + 1
        key = (kind, gid, n)
        rv = self.rendezvous.get(key)
        if rv is None:
            rv = self.rendezvous[key] = _Rendezvous(self.env.event())
        rv.arrived += 1
        if rv.arrived == len(group):
            del self.rendezvous[key]
            body(rv.done)
        return rv.done

    def _hop(self, a: str, b: str) -> float:
        """Path latency from ``a`` to ``b`` (cached: rings ask for every pair every call)."""
        latency = self._latency.get((a, b))
        if latency is None:
            latency = self._latency[a, b] = self.cluster.path_latency(a, b)
        return latency

    def _ring(self, members: list[str], nbytes: int, factor: float, done: simpy.Event) -> None:
        """A ring collective: every member sends ``factor``·nbytes to its successor at once.

        ``factor`` is 2(n−1)/n for all-reduce; the ring's 2(n−1) steps each
        pay one neighbour latency, of which the flows already carry one.
        Succeeds ``done`` when the ring ends.
        """
        n = len(members)
        if n < 2 or nbytes == 0:
            done.succeed()
            return
        size = factor * nbytes
        pairs = [(members[j], members[(j + 1) % n]) for j in range(n)]
        sends = [self.net.transfer(a, b, size, collective=True) for a, b in pairs]
        steps = round(factor * n)
        tail = (steps - 1) * max(self._hop(a, b) for a, b in pairs) if steps > 1 else 0.0
        self._when_all(sends, lambda: self._succeed_in(done, tail))

    def _ring_event(self, members: list[str], nbytes: int, factor: float) -> simpy.Event:
        done = self.env.event()
        self._ring(members, nbytes, factor, done)
        return done

    def _allreduce_body(self, group: tuple[str, ...], nbytes: int, done: simpy.Event) -> None:
        n = len(group)
        if self.scenario.algorithm.allreduce_algo == "hierarchical" and all(
            g.startswith("worker-") for g in group
        ):
            proc = self.env.process(self._hierarchical(group, nbytes))
            proc.callbacks.append(lambda _event: done.succeed())
            return
        self._ring([self.endpoint[g] for g in group], nbytes, 2 * (n - 1) / n, done)

    def _hierarchical(self, group: tuple[str, ...], nbytes: int) -> Proc:
        """Reduce-scatter inside each node, ring all-reduce across nodes, all-gather inside."""
        by_node: dict[int, list[str]] = defaultdict(list)
        for g in group:
            rank = int(g.split("-", 1)[1])
            by_node[self.cluster.node_of_worker[rank]].append(self.endpoint[g])
        local = [v for v in by_node.values()]
        g_size = max(len(v) for v in local)

        def intra() -> Proc:
            yield self.env.all_of(
                [self._ring_event(m, nbytes, (len(m) - 1) / len(m)) for m in local]
            )

        yield from intra()
        rings = [[m[j] for m in local if j < len(m)] for j in range(g_size)]
        nodes = len(local)
        yield self.env.all_of(
            [self._ring_event(r, nbytes // g_size, 2 * (nodes - 1) / nodes) for r in rings]
        )
        yield from intra()

    def _op_allreduce(self, role: Role, op: ops.AllReduce) -> Proc:
        nbytes = self._span_bytes(op.span)

        def body(done: simpy.Event) -> None:
            if self.numerics is not None:
                self.numerics.allreduce(op.group, op.buf, op.span, op.average)
            self._allreduce_body(op.group, nbytes, done)

        yield self._collective(role, "allreduce", op.group, body)
        return None, nbytes

    def _op_reduce(self, role: Role, op: ops.Reduce) -> Proc:
        nbytes = self._span_bytes(op.span)
        root = self.endpoint[op.root]

        def body(done: simpy.Event) -> None:
            if self.numerics is not None:
                self.numerics.reduce(op.group, op.root, op.buf, op.span)
            sends = [
                self.net.transfer(src, root, nbytes)
                for src in map(self.endpoint.__getitem__, op.group)
                if src != root  # the root's own share stays put: no time, no event
            ]
            self._when_all(sends, done.succeed)

        yield self._collective(role, ("reduce", op.root), op.group, body)
        return None, nbytes

    def _op_broadcast(self, role: Role, op: ops.Broadcast) -> Proc:
        nbytes = self._span_bytes(op.span)
        root = self.endpoint[op.root]

        def body(done: simpy.Event) -> None:
            if self.numerics is not None:
                self.numerics.broadcast(op.group, op.root, op.buf, op.span)
            sends = [
                self.net.transfer(root, dst, nbytes)
                for dst in map(self.endpoint.__getitem__, op.group)
                if dst != root
            ]
            self._when_all(sends, done.succeed)

        yield self._collective(role, ("broadcast", op.root), op.group, body)
        return None, nbytes

    # --------------------------------------------------------- leader registry

    def _op_report_loss(self, role: Role, op: ops.ReportLoss) -> Proc:
        assert self.board is not None and self.plan.registry is not None
        src = self.endpoint[role.name]
        yield self.net.transfer(src, self.registry_host, SMALL_MESSAGE)
        self.board.report(role.rank, op.loss)
        if self.plan.registry.sync:
            everyone = tuple(w.name for w in self.plan.workers)
            yield self._collective(role, "report", everyone, lambda done: done.succeed())
        yield self.net.transfer(self.registry_host, src, SMALL_MESSAGE)
        local, global_ = self.board.leaders(role.rank)
        return ops.Leaders(f"worker-{local}", f"worker-{global_}"), SMALL_MESSAGE

    def _op_publish(self, role: Role, op: ops.Publish) -> Proc:
        yield self.net.transfer(self.endpoint[role.name], self.registry_host, self.model_bytes)
        self.latest_round[op.key] = max(self.latest_round.get(op.key, -1), op.round)
        if self.numerics is not None:
            self.numerics.publish(role.name, op.key, op.round, op.buf)
        waiting = self.fetchers.pop(op.key, [])
        for min_round, event in waiting:
            if op.round >= min_round:
                event.succeed()
            else:
                self.fetchers.setdefault(op.key, []).append((min_round, event))
        return None, self.model_bytes

    def _op_fetch(self, role: Role, op: ops.Fetch) -> Proc:
        if self.latest_round.get(op.key, -1) < op.round:
            if not op.wait:
                return False, 0
            event = self.env.event()
            self.fetchers.setdefault(op.key, []).append((op.round, event))
            yield event
        if self.numerics is not None:  # the registry streams the copy it holds now
            self.numerics.fetch(role.name, op.key, op.buf)
        yield self.net.transfer(self.registry_host, self.endpoint[role.name], self.model_bytes)
        return True, self.model_bytes
