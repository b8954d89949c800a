"""What an algorithm is: a plan of roles, each with a program, plus the services they talk to.

An algorithm module turns a scenario into a :class:`Plan`. Executors read the
plan: they start one process per role (a SimPy process, or an OS process
with a gRPC client), run its program, and host the services the plan asks
for (parameter-server shards under a :class:`ServerSpec`, a leader registry).
Nothing here knows about clocks or sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Literal

from pslab import ops
from pslab.algorithm_config import Grouped, Sharded
from pslab.catalogue import resolve_model
from pslab.policies import StalenessPolicy
from pslab.scenario import ModelSpec, Scenario
from pslab.shards import shard_ranges

Collective = Literal["workers", "comms"] | None

Program = Generator[ops.Op, Any, None]


def worker_name(rank: int) -> str:
    return f"worker-{rank}"


@lru_cache(maxsize=8)
def worker_names(n: int) -> tuple[str, ...]:
    """All workers' names; one shared tuple per run size (1,024 contexts ask for it)."""
    return tuple(worker_name(r) for r in range(n))


def comm_name(group: int) -> str:
    return f"comm-{group}"


def server_name(shard: int) -> str:
    return f"ps-{shard}"


REGISTRY = "registry"


@dataclass(frozen=True)
class Role:
    """One process of the run: a worker, a communicator, ...

    ``node`` is the topology node it runs on; ``device`` is the GPU index on
    that node, or None for a CPU process.
    """

    name: str
    kind: str
    rank: int
    node: int
    device: int | None
    program: Callable[[], Program]


@dataclass(frozen=True)
class ServerSpec:
    """Parameter-server shards and the consistency policy each runs."""

    shards: int
    bound: int | None
    aggregate: bool
    mode: str  # what workers push: "grad" or "delta"

    def policy(self, n_workers: int) -> StalenessPolicy:
        return StalenessPolicy(n_workers, bound=self.bound, aggregate=self.aggregate)


@dataclass(frozen=True)
class RegistrySpec:
    """The leader registry: groups of worker ranks; ``sync`` makes each report a barrier."""

    groups: tuple[tuple[int, ...], ...]
    sync: bool


@dataclass
class Plan:
    scenario: Scenario
    model: ModelSpec
    workers: list[Role] = field(default_factory=list)
    comms: list[Role] = field(default_factory=list)
    server: ServerSpec | None = None
    registry: RegistrySpec | None = None
    groups: list[list[int]] = field(default_factory=list)
    # each server shard's (offset, length) of the flat parameters: see shard_layout
    shard_ranges: tuple[tuple[int, int], ...] = ()
    # from the algorithm's registry entry (pslab/algorithms/__init__.py)
    asynchronous: bool = False  # a dead worker leaves the run instead of ending it
    collective: Collective = None  # which roles all-reduce through one group

    @property
    def roles(self) -> list[Role]:
        return self.workers + self.comms

    @property
    def collective_world(self) -> list[Role]:
        """The roles that all-reduce through one torch.distributed group: the workers, or
        the communicators when there are several (one group needs no all-reduce)."""
        if self.collective == "workers":
            return self.workers
        if self.collective == "comms" and len(self.comms) > 1:
            return self.comms
        return []

    def processes(self) -> list[str]:
        """Every process of the run: roles, then server shards, then the registry."""
        names = [r.name for r in self.roles]
        if self.server is not None:
            names += [server_name(k) for k in range(self.server.shards)]
        if self.registry is not None:
            names.append(REGISTRY)
        return names


@dataclass(frozen=True)
class Context:
    """What a role program may know about the run; built by :func:`make_plan`."""

    scenario: Scenario
    model: ModelSpec
    rank: int
    n_workers: int
    group: int
    groups: tuple[tuple[int, ...], ...]

    @property
    def algo(self) -> Any:
        """The variant's settings; each module reads the fields its variant has."""
        return self.scenario.algorithm

    @property
    def iterations(self) -> int:
        return self.scenario.run.iterations

    @property
    def all_workers(self) -> tuple[str, ...]:
        return worker_names(self.n_workers)

    @cached_property
    def group_workers(self) -> tuple[str, ...]:
        return tuple(worker_name(r) for r in self.groups[self.group])

    def spans(self, per_tensor: bool) -> list[ops.Span]:
        """Element ranges of the flat buffer: one per parameter tensor, or the whole."""
        if not per_tensor:
            return [None]
        out: list[ops.Span] = []
        start = 0
        for size in self.model.layers or [self.model.params]:
            out.append((start, start + size))
            start += size
        return out

    def sgd(self, iteration: int) -> ops.Update:
        return ops.Update(
            iteration, rule="sgd", args=(("lr", self.algo.lr), ("momentum", self.algo.momentum))
        )


def default_groups(scenario: Scenario) -> list[list[int]]:
    """One group per node unless ``algorithm.groups`` says how many (contiguous ranks)."""
    n = scenario.topology.n_workers
    algo = scenario.algorithm
    k = (algo.groups if isinstance(algo, Grouped) else None) or scenario.topology.nodes
    k = min(k, n)
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(k)]


def with_batches(ctx: Context, body: Callable[[int], Program]) -> Program:
    """Run ``body(i)`` for every iteration, with batch i loaded first.

    Without ``workload.io_prefetch`` the batch is loaded inside the iteration,
    as the papers' baselines did. With it a background loader fetches batch
    i+1 while the worker trains on batch i, and the worker waits only if that
    batch is not ready yet.
    """
    prefetch = ctx.scenario.workload.io_prefetch
    pending = (yield ops.Start(0, op=ops.Load(0))) if prefetch else None
    for i in range(ctx.iterations):
        yield ops.Iteration(i)
        if prefetch:
            yield ops.Wait(i, handles=(pending,))
            if i + 1 < ctx.iterations:
                pending = yield ops.Start(i + 1, op=ops.Load(i + 1))
        else:
            yield ops.Load(i)
        yield from body(i)


def smooth_if_asked(ctx: Context, iteration: int) -> Iterator[ops.Op]:
    if ctx.algo.smoothing.sigma > 0:
        yield ops.Smooth(iteration, buf="grad")


def shard_layout(scenario: Scenario, model: ModelSpec, shards: int) -> tuple[tuple[int, int], ...]:
    """Every shard's key range, cut once for both executors at the model's element size
    (a float16 model's 4,096,000-byte partition holds 2,048,000 keys, a float32 one's half)."""
    algo = scenario.algorithm
    assert isinstance(algo, Sharded), f"{algo.name.value} has no parameter server"
    return tuple(shard_ranges(model.params, shards, algo.partition_bytes, model.bytes_per_param))


def make_plan(
    scenario: Scenario,
    worker: Callable[[Context], Program],
    comm: Callable[[Context], Program] | None = None,
    server: ServerSpec | None = None,
    registry: RegistrySpec | None = None,
) -> Plan:
    """Place workers on nodes and GPUs (rank order) and bind each role to its program."""
    topo = scenario.topology
    model = resolve_model(scenario.workload)
    groups = default_groups(scenario)
    frozen = tuple(tuple(g) for g in groups)
    n = topo.n_workers
    per_node = topo.workers_each_node
    group_of = {r: gi for gi, g in enumerate(groups) for r in g}

    def ctx(rank: int, group: int) -> Context:
        return Context(scenario, model, rank, n, group, frozen)

    plan = Plan(scenario, model, server=server, registry=registry, groups=groups)
    if server is not None:
        plan.shard_ranges = shard_layout(scenario, model, server.shards)
    for r in range(n):
        local = r % per_node
        device = local % topo.gpus_per_node if topo.gpus_per_node else None
        c = ctx(r, group_of[r])
        plan.workers.append(
            Role(worker_name(r), "worker", r, r // per_node, device, lambda c=c: worker(c))
        )
    if comm is not None:
        for gi, g in enumerate(groups):
            c = ctx(-1, gi)
            node = g[0] // per_node
            plan.comms.append(Role(comm_name(gi), "comm", gi, node, None, lambda c=c: comm(c)))
    return plan
