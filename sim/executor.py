"""Runs a plan's role programs as SimPy processes; ops become priced events.

The executor is the simulator's half of "one definition, two executors": it
reads ops, never algorithm logic. Costs: compute and loading from the
workload (GPU or CPU, processor-shared where roles outnumber cores), network
transfers through the flow-level max–min model, server updates on the server
host's cores, collectives decomposed into the flows they make.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from pslab import ops
from pslab.algorithms.base import Plan, Role, server_name
from pslab.metrics import compute_metrics
from pslab.policies import LeaderBoard, StalenessPolicy
from pslab.scenario import Scenario
from pslab.shards import shard_ranges
from pslab.trace import SpanRecord, Trace
from sim.costs import Costs, role_rng
from sim.network import FlowNetwork
from sim.topology import Cluster

SMALL_MESSAGE = 64  # bytes of a control message (loss report, barrier)

Proc = Generator[simpy.Event, Any, Any]


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts processed events (for the benchmark's events/s)."""

    def __init__(self) -> None:
        super().__init__()
        self.events_processed = 0

    def step(self) -> None:
        self.events_processed += 1
        super().step()


@dataclass
class _Shard:
    index: int
    host: str
    offset: int
    length: int
    policy: StalenessPolicy
    waiters: list[tuple[int, simpy.Event]] = field(default_factory=list)


@dataclass
class _Rendezvous:
    """Members of one collective call, gathered until all arrived."""

    arrived: dict[str, simpy.Event] = field(default_factory=dict)


@dataclass
class SimResult:
    metrics: dict[str, Any]
    trace: Trace


class SimExecutor:
    def __init__(self, scenario: Scenario, plan: Plan, cluster: Cluster) -> None:
        self.scenario = scenario
        self.plan = plan
        self.cluster = cluster
        self.env = CountingEnvironment()
        self.net = FlowNetwork(self.env, cluster)
        model = plan.model
        self.bpp = model.bytes_per_param
        self.model_bytes = model.nbytes
        self.costs = Costs(scenario, model.layers or [model.params], self.bpp)
        self.trace = Trace("sim", meta={"scenario": scenario.name})
        self.n_workers = len(plan.workers)
        for host, cores in cluster.hosts.items():
            self.net.add_resource(f"cpu:{host}", cores)
        for gpu in {cluster.workers[r.rank] for r in plan.workers if r.device is not None}:
            self.net.add_resource(f"gpu:{gpu}", 1.0)
        self.shards: list[_Shard] = []
        if plan.server:
            ranges = shard_ranges(model.params, plan.server.shards)
            for k, (off, length) in enumerate(ranges):
                self.shards.append(
                    _Shard(
                        k,
                        cluster.servers[k],
                        off,
                        length,
                        plan.server.policy(self.n_workers),
                    )
                )
        self.registry_host = cluster.servers[0] if cluster.servers else cluster.node_hosts[0]
        self.board = LeaderBoard([list(g) for g in plan.registry.groups]) if plan.registry else None
        self.published: dict[str, simpy.Event] = {}
        self.rendezvous: dict[tuple, _Rendezvous] = {}
        self.seq: dict[tuple, int] = defaultdict(int)
        self.endpoint: dict[str, str] = {}
        self.host_of: dict[str, str] = {}
        for r in plan.workers:
            self.endpoint[r.name] = cluster.workers[r.rank]
            self.host_of[r.name] = cluster.worker_host[r.rank]
        for r in plan.comms:
            self.endpoint[r.name] = self.host_of[r.name] = cluster.node_hosts[r.node]
        self.rngs = {r.name: role_rng(scenario.run.seed, r.name) for r in plan.roles}

    # ----------------------------------------------------------------- running

    def run(self) -> SimResult:
        wall0 = time.perf_counter()
        for role in self.plan.roles:
            self.env.process(self._drive(role))
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
                "events": self.env.events_processed,
                "wall_time_s": wall,
                "simulated_time_s": elapsed,
                "source": "sim",
            },
        )
        return SimResult(metrics, self.trace)

    def _drive(self, role: Role) -> Proc:
        program = role.program()
        result: Any = None
        it_start: tuple[int, float] | None = None
        while True:
            try:
                op = program.send(result)
            except StopIteration:
                break
            if isinstance(op, ops.Iteration):
                if it_start is not None:
                    self._span(role.name, "iteration", "iteration", it_start[1], it_start[0])
                it_start = (op.iteration, self.env.now)
                result = None
                continue
            result = yield from self._timed(role, op, blocking=True)
        if it_start is not None:
            self._span(role.name, "iteration", "iteration", it_start[1], it_start[0])

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
            cats = {h[1] for h in op.handles}
            cat = "io" if cats == {"io"} else "comm"
            self._span(role.name, "wait", cat, start, op.iteration)
            return [results[h[0]] for h in op.handles]
        handler = getattr(self, f"_op_{op.name}")
        result, nbytes = yield from handler(role, op)
        self._span(
            role.name,
            op.name,
            op.cat.value,
            start,
            op.iteration,
            nbytes,
            blocking,
            getattr(op, "on_behalf", ()),
        )
        return result

    # ----------------------------------------------------------- local work

    def _device_work(self, role: Role, seconds: float) -> simpy.Event:
        if role.device is not None:
            return self.net.work(f"gpu:{self.endpoint[role.name]}", seconds)
        return self.net.work(f"cpu:{self.host_of[role.name]}", seconds)

    def _op_load(self, role: Role, op: ops.Load) -> Proc:
        yield self.env.timeout(self.costs.io(self.rngs[role.name]))
        return None, 0

    def _op_compute(self, role: Role, op: ops.Compute) -> Proc:
        yield self._device_work(role, self.costs.compute(self.rngs[role.name], op.fraction))
        return None, 0

    def _op_smooth(self, role: Role, op: ops.Smooth) -> Proc:
        yield self._device_work(role, self.costs.smooth_s)
        return None, 0

    def _op_update(self, role: Role, op: ops.Update) -> Proc:
        if role.device is None:
            yield self.net.work(
                f"cpu:{self.host_of[role.name]}", self.costs.update(self.model_bytes)
            )
        return None, 0

    # ------------------------------------------------------- parameter server

    def _op_push(self, role: Role, op: ops.Push) -> Proc:
        src = self.endpoint[role.name]
        sent = [self.net.transfer(src, s.host, s.length * self.bpp) for s in self.shards]
        yield self.env.all_of(sent)
        yield self.env.all_of(
            [self.env.process(self._serve_push(s, role, op)) for s in self.shards]
        )
        return None, self.model_bytes

    def _serve_push(self, shard: _Shard, role: Role, op: ops.Push) -> Proc:
        start = self.env.now
        nbytes = shard.length * self.bpp
        yield self.net.work(f"cpu:{shard.host}", self.costs.update(nbytes))
        applied = shard.policy.on_push(role.rank, op.version)
        if applied is None:
            return
        if shard.policy.aggregate:  # the round's mean is applied once all pushes are in
            yield self.net.work(f"cpu:{shard.host}", self.costs.update(nbytes))
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
            if not s.policy.may_pull(role.rank):
                gate = self.env.event()
                s.waiters.append((role.rank, gate))
                yield gate
        yield self.env.all_of(
            [self.net.transfer(s.host, dst, s.length * self.bpp) for s in self.shards]
        )
        return min(s.policy.version for s in self.shards), self.model_bytes

    # ------------------------------------------------------------ collectives

    def _span_bytes(self, span: ops.Span) -> int:
        return self.model_bytes if span is None else (span[1] - span[0]) * self.bpp

    def _finish_after(self, work: Proc, members: list[simpy.Event]) -> Proc:
        yield from work
        for event in members:
            event.succeed()

    def _run_collective(
        self, role: Role, kind: str, group: tuple[str, ...], body: Callable[[], Proc]
    ) -> Proc:
        key = (kind, group)
        n = self.seq[(role.name, key)]
        self.seq[(role.name, key)] = n + 1
        rkey = (*key, n)
        rv = self.rendezvous.setdefault(rkey, _Rendezvous())
        done = self.env.event()
        rv.arrived[role.name] = done
        if len(rv.arrived) == len(group):
            del self.rendezvous[rkey]
            self.env.process(self._finish_after(body(), list(rv.arrived.values())))
        yield done

    def _ring(self, members: list[str], nbytes: int, factor: float) -> Proc:
        """A ring collective: every member sends ``factor``·nbytes to its successor at once.

        ``factor`` is 2(n−1)/n for all-reduce; the ring's 2(n−1) steps each
        pay one neighbour latency, of which the flows already carry one.
        """
        n = len(members)
        if n < 2 or nbytes == 0:
            return
        size = factor * nbytes
        pairs = [(members[j], members[(j + 1) % n]) for j in range(n)]
        yield self.env.all_of([self.net.transfer(a, b, size) for a, b in pairs])
        steps = round(factor * n)
        hop = max(self.cluster.path_latency(a, b) for a, b in pairs)
        if steps > 1:
            yield self.env.timeout((steps - 1) * hop)

    def _allreduce_body(self, group: tuple[str, ...], nbytes: int) -> Proc:
        n = len(group)
        if self.scenario.algorithm.allreduce_algo == "hierarchical" and all(
            g.startswith("worker-") for g in group
        ):
            yield from self._hierarchical(group, nbytes)
            return
        yield from self._ring([self.endpoint[g] for g in group], nbytes, 2 * (n - 1) / n)

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
                [self.env.process(self._ring(m, nbytes, (len(m) - 1) / len(m))) for m in local]
            )

        yield from intra()
        rings = [[m[j] for m in local if j < len(m)] for j in range(g_size)]
        nodes = len(local)
        yield self.env.all_of(
            [
                self.env.process(self._ring(r, nbytes // g_size, 2 * (nodes - 1) / nodes))
                for r in rings
            ]
        )
        yield from intra()

    def _op_allreduce(self, role: Role, op: ops.AllReduce) -> Proc:
        nbytes = self._span_bytes(op.span)
        yield from self._run_collective(
            role, "allreduce", op.group, lambda: self._allreduce_body(op.group, nbytes)
        )
        return None, nbytes

    def _op_reduce(self, role: Role, op: ops.Reduce) -> Proc:
        nbytes = self._span_bytes(op.span)
        root = self.endpoint[op.root]

        def body() -> Proc:
            sends = [self.net.transfer(self.endpoint[m], root, nbytes) for m in op.group]
            yield self.env.all_of(sends)

        yield from self._run_collective(role, f"reduce:{op.root}", op.group, body)
        return None, nbytes

    def _op_broadcast(self, role: Role, op: ops.Broadcast) -> Proc:
        nbytes = self._span_bytes(op.span)
        root = self.endpoint[op.root]

        def body() -> Proc:
            sends = [self.net.transfer(root, self.endpoint[m], nbytes) for m in op.group]
            yield self.env.all_of(sends)

        yield from self._run_collective(role, f"broadcast:{op.root}", op.group, body)
        return None, nbytes

    def _op_barrier(self, role: Role, op: ops.Barrier) -> Proc:
        first = self.endpoint[op.group[0]]

        def body() -> Proc:
            hop = max(self.cluster.path_latency(self.endpoint[m], first) for m in op.group)
            yield self.env.timeout(2 * hop)

        yield from self._run_collective(role, "barrier", op.group, body)
        return None, 0

    # --------------------------------------------------------- leader registry

    def _op_report_loss(self, role: Role, op: ops.ReportLoss) -> Proc:
        assert self.board is not None and self.plan.registry is not None
        src = self.endpoint[role.name]
        yield self.net.transfer(src, self.registry_host, SMALL_MESSAGE)
        self.board.report(role.rank, op.loss)
        if self.plan.registry.sync:
            everyone = tuple(w.name for w in self.plan.workers)
            yield from self._run_collective(role, "report", everyone, lambda: iter(()))
        yield self.net.transfer(self.registry_host, src, SMALL_MESSAGE)
        local, global_ = self.board.leaders(role.rank)
        return ops.Leaders(f"worker-{local}", f"worker-{global_}"), SMALL_MESSAGE

    def _published(self, key: str) -> simpy.Event:
        if key not in self.published:
            self.published[key] = self.env.event()
        return self.published[key]

    def _op_publish(self, role: Role, op: ops.Publish) -> Proc:
        yield self.net.transfer(self.endpoint[role.name], self.registry_host, self.model_bytes)
        event = self._published(op.key)
        if not event.triggered:
            event.succeed()
        return None, self.model_bytes

    def _op_fetch(self, role: Role, op: ops.Fetch) -> Proc:
        event = self._published(op.key)
        if not event.triggered:
            if not self.plan.registry or not self.plan.registry.sync:
                return False, 0  # asynchronous: nothing published yet, go on
            yield event
        yield self.net.transfer(self.registry_host, self.endpoint[role.name], self.model_bytes)
        return True, self.model_bytes
