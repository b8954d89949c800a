"""Parameter-server SGD: sync_ps (BSP), async_ps (ASP, Downpour-style) and ssp (bounded staleness).

One worker program serves all three; only the server's consistency policy
differs, which is the point of Petuum's formulation: bound 0 is BSP (here
with the round's gradients averaged into one update), no bound is ASP.
"""

from __future__ import annotations

from pslab import ops
from pslab.algorithm_config import SSP, SyncPS
from pslab.algorithms.base import (
    Context,
    Plan,
    Program,
    ServerSpec,
    make_plan,
    smooth_if_asked,
    with_batches,
)
from pslab.scenario import Scenario


def worker(ctx: Context) -> Program:
    version = 0

    def step(i: int) -> Program:
        nonlocal version
        yield ops.Compute(i)
        yield from smooth_if_asked(ctx, i)
        yield ops.Push(i, buf="grad", mode="grad", version=version)
        version = yield ops.Pull(i, buf="params")

    yield from with_batches(ctx, step)


DEFAULT_STALENESS = 3


def build(scenario: Scenario) -> Plan:
    algo = scenario.algorithm
    servers = scenario.topology.servers
    if isinstance(algo, SyncPS):
        spec = ServerSpec(servers, bound=0, aggregate=True, mode="grad")
    elif isinstance(algo, SSP):
        bound = algo.staleness_bound if algo.staleness_bound is not None else DEFAULT_STALENESS
        spec = ServerSpec(servers, bound=bound, aggregate=False, mode="grad")
    else:
        spec = ServerSpec(servers, bound=None, aggregate=False, mode="grad")
    return make_plan(scenario, worker, server=spec)
