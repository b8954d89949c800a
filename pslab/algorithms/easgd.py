"""Elastic averaging SGD (Zhang, Choromanska, LeCun 2015).

Workers take local SGD steps; every τ steps a worker reads the center x̃,
moves toward it by δ = α(x_i − x̃) and pushes δ, which the server adds to
x̃. Asynchronous: the server adds each δ on arrival. Synchronous: it waits
for every worker's δ and adds their sum, so all read the same center.
"""

from __future__ import annotations

from pslab import ops
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


def alpha(ctx: Context) -> float:
    """α = ηρ; by default β/p with the paper's β = 0.9 (moving rate shared by p workers)."""
    return ctx.algo.alpha if ctx.algo.alpha is not None else 0.9 / ctx.n_workers


def worker(ctx: Context) -> Program:
    def step(i: int) -> Program:
        yield ops.Compute(i)
        yield from smooth_if_asked(ctx, i)
        yield ctx.sgd(i)
        if (i + 1) % ctx.algo.tau == 0:
            version = yield ops.Pull(i, buf="center")
            yield ops.Update(i, rule="elastic", args=(("alpha", alpha(ctx)),))
            yield ops.Push(i, buf="delta", mode="delta", version=version)

    yield from with_batches(ctx, step)


def build(scenario: Scenario) -> Plan:
    sync = scenario.algorithm.synchronous
    spec = ServerSpec(
        scenario.topology.servers, bound=0 if sync else None, aggregate=sync, mode="delta"
    )
    return make_plan(scenario, worker, server=spec)
