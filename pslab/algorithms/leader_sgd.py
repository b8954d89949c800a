"""Leader SGD (Teng et al., NeurIPS 2019), after the authors' yunfei-teng/LSGD code.

Workers step on their own; every τ steps each reports its running-mean loss
to the leader registry, which names the lowest-loss worker of its group (the
local leader) and overall (the global leader). Only leaders' parameters
travel: a leader publishes its copy and the others fetch it and move toward
it, x ← (1 − λ)x + λx̂, with λ_local every communication and λ_global every
τ_global steps. Synchronous: a report is a barrier, so every worker of a
round sees the same leaders. Asynchronous: a worker fetches whatever copy its
leader published last.

Simplification, stated: the code's extra per-step pull toward the last
received leader copies (weights p₁/τ_l, p₂/τ_g) is not modelled; the pull
happens at communications only.
"""

from __future__ import annotations

from collections import deque

from pslab import ops
from pslab.algorithms.base import (
    Context,
    Plan,
    Program,
    RegistrySpec,
    default_groups,
    make_plan,
    smooth_if_asked,
    with_batches,
    worker_name,
)
from pslab.scenario import Scenario


def _pull(i: int, buf: str, strength: float) -> ops.Update:
    return ops.Update(i, rule="leader_pull", args=(("buf", buf), ("strength", strength)))


def worker(ctx: Context) -> Program:
    algo = ctx.algo
    me = worker_name(ctx.rank)
    tau_global = algo.tau_global or 4 * algo.tau
    window: deque[float] = deque(maxlen=algo.loss_window)
    sync = algo.synchronous

    def step(i: int) -> Program:
        loss = yield ops.Compute(i)
        if loss is not None:
            window.append(float(loss))
        yield from smooth_if_asked(ctx, i)
        yield ctx.sgd(i)
        if (i + 1) % algo.tau:
            return
        rnd = (i + 1) // algo.tau
        mean = sum(window) / len(window) if window else 0.0
        leaders = yield ops.ReportLoss(i, loss=mean)
        scopes = [("local", leaders.local, f"local/{ctx.group}", algo.lambda_local)]
        if (i + 1) % tau_global == 0:
            scopes.append(("global", leaders.global_, "global", algo.lambda_global))
        for scope, leader, key, strength in scopes:
            if leader == me:
                yield ops.Publish(i, key=key, round=rnd, buf="params")
                continue
            fetch = ops.Fetch(
                i, key=key, round=rnd if sync else 0, wait=sync, buf=f"leader_{scope}"
            )
            if (yield fetch):
                yield _pull(i, f"leader_{scope}", strength)

    yield from with_batches(ctx, step)


def build(scenario: Scenario) -> Plan:
    groups = tuple(tuple(g) for g in default_groups(scenario))
    registry = RegistrySpec(groups=groups, sync=scenario.algorithm.synchronous)
    return make_plan(scenario, worker, registry=registry)
