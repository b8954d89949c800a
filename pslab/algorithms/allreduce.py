"""Data-parallel all-reduce without a server (Horovod / DDP), and CSGD.

``per_tensor`` gives Yu et al.'s CSGD baseline: one blocking all-reduce per
parameter tensor after backward. ``overlap_backward`` gives the modern
bucketed scheme: backward produces gradients last layer first, and each
bucket's all-reduce starts as soon as its gradients exist.
"""

from __future__ import annotations

from pslab import ops
from pslab.algorithms.base import Context, Plan, Program, make_plan, smooth_if_asked, with_batches
from pslab.scenario import Scenario

BUCKET_BYTES = 25 * 2**20  # PyTorch DDP's default bucket_cap_mb
FORWARD_SHARE = 1 / 3  # backward costs about twice the forward pass


def buckets(ctx: Context) -> list[tuple[tuple[int, int], float]]:
    """Element ranges in backward order (last layer first), with each one's share of the model."""
    sizes = ctx.model.layers or [ctx.model.params]
    cap = BUCKET_BYTES // ctx.model.bytes_per_param
    out: list[tuple[tuple[int, int], float]] = []
    end = ctx.model.params
    acc = 0
    for size in reversed(sizes):
        acc += size
        if acc >= cap:
            out.append(((end - acc, end), acc / ctx.model.params))
            end -= acc
            acc = 0
    if acc:
        out.append(((end - acc, end), acc / ctx.model.params))
    return out


def worker(ctx: Context) -> Program:
    group = ctx.all_workers

    def step(i: int) -> Program:
        if ctx.algo.overlap_backward and ctx.algo.smoothing.sigma == 0:
            yield ops.Compute(i, fraction=FORWARD_SHARE, phase="forward")
            handles = []
            for span, share in buckets(ctx):
                yield ops.Compute(i, fraction=(1 - FORWARD_SHARE) * share, phase="backward")
                handles.append((yield ops.Start(i, op=ops.AllReduce(i, group=group, span=span))))
            yield ops.Wait(i, handles=tuple(handles))
        else:
            yield ops.Compute(i)
            yield from smooth_if_asked(ctx, i)
            for span in ctx.spans(ctx.algo.per_tensor):
                yield ops.AllReduce(i, group=group, buf="grad", span=span)
        yield ctx.sgd(i)

    yield from with_batches(ctx, step)


def build(scenario: Scenario) -> Plan:
    return make_plan(scenario, worker)
