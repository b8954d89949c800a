"""Layered SGD (Yu, Flynn, Yoo, D'Imperio 2019), after the authors' LSGD.py.

Each group (one per node) has a communicator: a CPU process with no data.
Workers reduce their gradient to it and go on to load the next batch; the
communicator all-reduces the group sums with the other communicators
meanwhile and broadcasts the average back, which the workers receive after
loading. So the inter-group all-reduce hides behind I/O when it is shorter
than one batch's load. Numerically it is synchronous SGD.
"""

from __future__ import annotations

from pslab import ops
from pslab.algorithms.base import (
    Context,
    Plan,
    Program,
    comm_name,
    make_plan,
    smooth_if_asked,
    with_batches,
)
from pslab.scenario import Scenario


def _members(ctx: Context) -> tuple[str, ...]:
    return (comm_name(ctx.group), *ctx.group_workers)


def worker(ctx: Context) -> Program:
    members = _members(ctx)
    root = comm_name(ctx.group)
    spans = ctx.spans(ctx.algo.per_tensor)

    def receive_and_step(i: int) -> Program:
        for span in spans:
            yield ops.Broadcast(i, group=members, root=root, buf="grad", span=span)
        yield ctx.sgd(i)

    def step(i: int) -> Program:
        if i > 0:
            yield from receive_and_step(i - 1)
        yield ops.Compute(i)
        yield from smooth_if_asked(ctx, i)
        for span in spans:
            yield ops.Reduce(i, group=members, root=root, buf="grad", span=span)

    yield from with_batches(ctx, step)
    yield from receive_and_step(ctx.iterations - 1)


def communicator(ctx: Context) -> Program:
    members = _members(ctx)
    me = comm_name(ctx.group)
    comms = tuple(comm_name(g) for g in range(len(ctx.groups)))
    spans = ctx.spans(ctx.algo.per_tensor)
    for i in range(ctx.iterations):
        yield ops.Iteration(i)
        for span in spans:
            yield ops.Reduce(i, group=members, root=me, buf="grad", span=span)
        yield ops.Update(i, rule="scale", args=(("buf", "grad"), ("factor", 1 / ctx.n_workers)))
        for span in spans:
            yield ops.AllReduce(
                i, group=comms, buf="grad", average=False, span=span, on_behalf=ctx.group_workers
            )
        for span in spans:
            yield ops.Broadcast(i, group=members, root=me, buf="grad", span=span)


def build(scenario: Scenario) -> Plan:
    return make_plan(scenario, worker, comm=communicator)
