"""Local SGD: local steps, and every τ steps the workers' parameters are averaged (all-reduce)."""

from __future__ import annotations

from pslab import ops
from pslab.algorithms.base import Context, Plan, Program, make_plan, smooth_if_asked, with_batches
from pslab.scenario import Scenario


def worker(ctx: Context) -> Program:
    def step(i: int) -> Program:
        yield ops.Compute(i)
        yield from smooth_if_asked(ctx, i)
        yield ctx.sgd(i)
        if (i + 1) % ctx.algo.tau == 0:
            yield ops.AllReduce(i, group=ctx.all_workers, buf="params", average=True)

    yield from with_batches(ctx, step)


def build(scenario: Scenario) -> Plan:
    return make_plan(scenario, worker)
