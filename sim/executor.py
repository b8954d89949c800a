"""Runs a plan's role programs as SimPy processes; ops become priced events.

The executor is the simulator's half of "one definition, two executors": it
reads ops, never algorithm logic. Costs: compute and loading from the
workload (GPU or CPU, processor-shared where roles outnumber cores), network
transfers through the flow-level max–min model, server updates on the server
host's cores (``sim.server_ops``: shards close their own rounds), collectives
decomposed into the flows they make (``sim.collectives``: rings are dataflows).
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Generator, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from pslab import ops
from pslab.algorithms.base import Plan, Role, server_name
from pslab.distributions import role_rng
from pslab.driver import Delay, drive
from pslab.metrics import compute_metrics
from pslab.rounds import LeaderRounds, Publications
from pslab.scenario import Scenario
from pslab.torch_threads import one_torch_thread
from pslab.trace import Trace
from sim.collectives import CollectiveOps, Kind, Rendezvous
from sim.costs import Costs
from sim.environment import CountingEnvironment
from sim.flow_events import At
from sim.network import SMALL_MESSAGE
from sim.platform import LocalPlatform, NominalPlatform
from sim.server_ops import ServerOps, Shard

if TYPE_CHECKING:
    from sim.numerics import Numerics


Proc = Generator[simpy.Event, Any, Any]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a simulation is set up, runs and is measured.

    A run allocates millions of short-lived, acyclic objects (events, flows,
    trace spans) that reference counting frees; the trace keeps growing, so
    the collector's full passes walk ever more live objects and find almost
    nothing: on scale_1024.yaml they were a third of the wall time. Setting up
    10,240 workers (their graph, roles and lanes) and measuring their spans
    afterwards cost another nine full passes, 0.5 s each once the trace was
    there (async_ps 10,240 x 20: 2.0 s of 19.4). The few cycles a run makes are
    collected once the collector is back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


class SimExecutor(ServerOps, CollectiveOps):
    def __init__(
        self,
        scenario: Scenario,
        plan: Plan,
        platform: NominalPlatform | LocalPlatform,
        start_at: dict[str, float] | None = None,
    ) -> None:
        """``start_at``: when each role's program begins (default: all at 0, as the
        launcher's start gate begins them); ``simulate_emulated`` draws other phases to say
        how much they matter."""
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
            scenario, model.layers or [model.params], self.bpp, platform.machine_costs
        )
        self.trace = Trace("sim", meta={"scenario": scenario.name})
        self.n_workers = len(plan.workers)
        self.shards: list[Shard] = []
        if plan.server:
            for k, (off, length) in enumerate(plan.shard_ranges):
                host = platform.server_host(k)
                self.shards.append(
                    Shard(
                        k,
                        host,
                        off,
                        length,
                        plan.server.policy(self.n_workers),
                        length * self.bpp,
                        self.trace.lane(server_name(k), host, "apply", "server"),
                    )
                )
        self.registry_host = platform.registry_host
        self.leaders = (
            LeaderRounds([list(g) for g in plan.registry.groups], plan.registry.sync)
            if plan.registry
            else None
        )
        # the numerics' copies (None without numerics: only the rounds matter then)
        self.published: Publications[Any] = Publications()
        self.fetchers: dict[str, list[tuple[int, simpy.Event]]] = {}
        self.rendezvous: dict[tuple, Rendezvous] = {}
        self.seq: dict[tuple, int] = defaultdict(int)
        # Groups are keyed by a small id, not by the tuple: hashing a 1,024-name
        # tuple on every arrival made a ring all-reduce quadratic in its size.
        self._group_ids: dict[tuple[str, ...], int] = {}
        self._last_group: dict[tuple[str, Kind], tuple[tuple[str, ...], int]] = {}
        self._latency: dict[tuple[str, str], float] = {}
        self.endpoint = {r.name: platform.endpoint(r) for r in plan.roles}
        self.host_of = {r.name: platform.host(r) for r in plan.roles}
        self.cpu_of = {r.name: platform.cpu_of(r) for r in plan.roles}  # where its CPU work runs
        self.rngs = {r.name: role_rng(scenario.run.seed, r.name) for r in plan.roles}
        self.numerics = (
            _numerics(plan, [(s.offset, s.length) for s in self.shards])
            if scenario.numerics is not None
            else None
        )

    # ----------------------------------------------------------------- running

    def run(self) -> SimResult:
        with gc_paused():
            return self._run()

    def _run(self) -> SimResult:
        wall0 = time.perf_counter()
        for role in self.plan.roles:
            self.env.process(self._drive(role))
        with one_torch_thread() if self.numerics is not None else nullcontext():
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
                "cpu_time_by_process_s": self.net.carried_each("proc:"),
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
        """The role's program under the core's driver, from its start offset, if any."""
        name = role.name
        evaluate = self.numerics is not None and name == "worker-0"
        proc = drive(
            role.program(),
            handler=lambda op_name: partial(getattr(type(self), f"_op_{op_name}"), self, role),
            spawn=lambda run, _cat: self.env.process(run),
            join=self._join,
            clock=self.env,
            trace=self.trace,
            role=name,
            host=self.host_of.get(name, name),
            on_iteration=self._evaluate if evaluate else None,
            delay=self._delays(role).get,
            wait_until=partial(At, self.env),
        )
        delay = self.start_at.get(name)
        return self._after(delay, proc) if delay else proc

    def _delays(self, role: Role) -> dict[str, Delay]:
        """The role's ops that are pure delays (``drive``): its loads, and its computes where
        nothing else shares the device. With numerics they touch the model and are ops."""
        if self.numerics is not None:
            return {}
        rng, costs, platform = self.rngs[role.name], self.costs, self.platform
        delays: dict[str, Delay] = {
            "load": lambda _op, _start: platform.sleep_s(role, costs.io(rng))
        }
        book = platform.compute_delay(self.net, role)
        if book is not None:
            delays["compute"] = lambda op, start: book(costs.compute(rng, op.fraction), start)
            delays["smooth"] = lambda _op, start: book(costs.smooth_s, start)
        return delays

    def _after(self, delay: float, proc: Proc) -> Proc:
        """Only a late role pays for this extra frame: the others' resumes stay one shorter."""
        yield self.env.timeout(delay)
        yield from proc

    def _join(self, procs: list[simpy.Process]) -> Proc:
        results = yield self.env.all_of(procs)
        return [results[p] for p in procs]

    # ----------------------------------------------------------- local work

    def _op_load(self, role: Role, op: ops.Load) -> Proc:
        yield self.env.timeout(self.platform.sleep_s(role, self.costs.io(self.rngs[role.name])))
        if self.numerics is not None:
            self.numerics.load(role.name, op.iteration)
        return None, 0

    def _op_compute(self, role: Role, op: ops.Compute) -> Proc:
        yield self.platform.compute(
            self.net, role, self.costs.compute(self.rngs[role.name], op.fraction)
        )
        if self.numerics is not None:
            return self.numerics.compute(role.name, op.iteration, op.phase), 0
        return None, 0

    def _op_smooth(self, role: Role, op: ops.Smooth) -> Proc:
        yield self.platform.compute(self.net, role, self.costs.smooth_s)
        if self.numerics is not None:
            self.numerics.smooth(role.name, op.buf)
        return None, 0

    def _op_update(self, role: Role, op: ops.Update) -> Proc:
        if role.device is None:
            n, costs = self.model_bytes, self.costs
            yield self.platform.update(
                self.net, role, costs.worker_update_hot(n), costs.worker_update(n)
            )
        if self.numerics is not None:
            self.numerics.update(role.name, op.rule, op.kwargs)
        return None, 0

    # --------------------------------------------------------- leader registry

    def _op_report_loss(self, role: Role, op: ops.ReportLoss) -> Proc:
        """Answered as the registry answers: asynchronous at arrival, synchronous once the
        round's last report is in (``LeaderRounds``), whenever the reply arrives. The
        request and the reply are one RPC: each leg carries half its fixed cost."""
        assert self.leaders is not None
        src = self.endpoint[role.name]
        yield self.net.message(src, self.registry_host)
        self.leaders.report(role.rank, op.iteration, op.loss)
        if self.leaders.sync:
            everyone = tuple(w.name for w in self.plan.workers)
            yield self._collective(role, "report", everyone, lambda done: done.succeed())
        yield self.net.message(self.registry_host, src)
        local, global_ = self.leaders.answer(role.rank, op.iteration)
        return ops.Leaders(f"worker-{local}", f"worker-{global_}"), SMALL_MESSAGE

    def _op_publish(self, role: Role, op: ops.Publish) -> Proc:
        yield self.net.transfer(self.endpoint[role.name], self.registry_host, self.model_bytes)
        copy = self.numerics.copy(role.name, op.buf) if self.numerics is not None else None
        self.published.publish(op.key, op.round, copy)
        waiting = self.fetchers.pop(op.key, [])
        for min_round, event in waiting:
            if self.published.ready(op.key, min_round):
                event.succeed()
            else:
                self.fetchers.setdefault(op.key, []).append((min_round, event))
        return None, self.model_bytes

    def _op_fetch(self, role: Role, op: ops.Fetch) -> Proc:
        """A request to the registry, held there until the copy is published, then the copy
        streamed back: one RPC, each leg carrying half its fixed cost (as ``_op_report_loss``).
        The request leg is the registry's work too: fetches that a synchronous round's
        leaders' peers send as its publication streams in take the registry's interpreter
        from it. Priced as the reply alone, a leader's publish was predicted at 1.27 ms
        where the runs took 2.30 (leader_sgd-real, validation run 27)."""
        src = self.endpoint[role.name]
        yield self.net.message(src, self.registry_host)
        if not self.published.ready(op.key, op.round):
            if not op.wait:  # nothing yet: the registry answers at once, empty
                yield self.net.message(self.registry_host, src)
                return False, 0
            event = self.env.event()
            self.fetchers.setdefault(op.key, []).append((op.round, event))
            yield event
        if self.numerics is not None:  # the registry streams the copy it holds now
            self.numerics.into(role.name, op.buf, self.published.get(op.key)[1])
        yield self.net.transfer(self.registry_host, src, self.model_bytes, rpc_share=0.5)
        return True, self.model_bytes
