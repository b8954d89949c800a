"""Metrics from a trace: one function for simulated and measured runs alike.

Definitions (all per worker per iteration, averaged over workers and over
the steady-state iterations, unless the name says otherwise). Steady state
is ``warmup <= i < iterations - 1``: the last iteration is left out too,
because it drains what a pipelined variant would overlap with a next one
(Layered SGD's last broadcast has no next batch to hide behind).

- ``iteration_time_s``: duration of the worker's ``iteration`` spans.
- ``compute_time_s`` / ``io_time_s``: time in compute / loading spans
  (loading counted even when a background loader hides it).
- ``comm_time_s``: the length of the union of every communication interval
  that carries this worker's update for that iteration: its own push/pull
  or collectives, blocking or started in the background, *and* collectives
  another role runs on its behalf (Layered SGD's inter-group all-reduce).
- ``exposed_comm_time_s``: the time the worker is blocked in communication.
- ``overlap_ratio``: 1 − exposed/comm per worker, then averaged (0 when a
  worker has no communication at all).
- ``staleness``: server version at apply − version the push was computed on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from pslab.trace import SpanColumns, Trace

# Span categories the metrics read, as small codes (any other category: len(_CATS)).
_CATS = {"iteration": 0, "compute": 1, "io": 2, "comm": 3}


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _per_worker(worker: np.ndarray, values: np.ndarray, n_workers: int) -> list[float]:
    """Per worker, the sum of its ``values`` added one by one in span order (as ``+=``
    would: ``np.bincount`` accumulates in input order), 0.0 for a worker without any."""
    return np.bincount(worker, weights=values, minlength=n_workers).tolist()


def _comm_per_worker(
    spans: SpanColumns, comm: np.ndarray, worker: np.ndarray, index: dict[str, int]
) -> list[float]:
    """Per worker, the union length of its communication per iteration, summed.

    ``comm`` marks the steady-state comm spans, ``worker`` each span's own worker
    (-1: not counted). A span counts for its own worker, then for each counted worker
    it is ``on_behalf`` of. The union of one (worker, iteration)'s intervals is the
    interval-merging loop's (tests/test_trace_columns.py keeps it as the reference),
    vectorised: sorted by start then end, a segment opens where a
    start passes every end before it in the group, segments add up in that order, and
    a worker's iterations add up in the order each first appeared. Every sum runs in
    the order of the loop it replaced, so the figures are the same to the last bit.
    """
    own = np.flatnonzero(comm & (worker >= 0))
    span, who, sub = [own], [worker[own]], [np.zeros(own.size, dtype=np.intp)]
    for k, names in spans.on_behalf.items():  # sparse: a few spans of a few variants
        if comm[k]:
            ws = [index[w] for w in names if w in index]
            span.append(np.full(len(ws), k, dtype=np.intp))
            who.append(np.array(ws, dtype=np.intp))
            sub.append(np.arange(1, len(ws) + 1, dtype=np.intp))
    k_all, sub_all = np.concatenate(span), np.concatenate(sub)
    entry = np.lexsort((sub_all, k_all))  # span order, its own worker first
    n_workers = len(index)
    if not entry.size:
        return [0.0] * n_workers
    k_all, w_all = k_all[entry], np.concatenate(who)[entry]
    it = np.asarray(spans.iteration)[k_all]
    start, end = np.asarray(spans.start)[k_all], np.asarray(spans.end)[k_all]
    key = w_all.astype(np.int64) * (int(it.max() - it.min()) + 1) + (it - it.min())
    _, first, group = np.unique(key, return_index=True, return_inverse=True)
    by = np.lexsort((end, start, group))
    g, st, en = group[by], start[by], end[by]
    # the running max of end within each group, exactly: on ranks offset by group
    ranked = np.argsort(en, kind="stable")
    rank = np.empty(en.size, dtype=np.int64)
    rank[ranked] = np.arange(en.size)
    top = np.maximum.accumulate(g.astype(np.int64) * en.size + rank) - g * en.size
    reach = en[ranked[top]]
    opens = np.ones(g.size, dtype=bool)
    opens[1:] = (g[1:] != g[:-1]) | (st[1:] > reach[:-1])
    closes = np.append(np.flatnonzero(opens)[1:] - 1, g.size - 1)
    union = np.bincount(g[opens], weights=reach[closes] - st[opens], minlength=first.size)
    appeared = np.argsort(first, kind="stable")  # groups in the order they first appeared
    return _per_worker(w_all[first[appeared]], union[appeared], n_workers)


def compute_metrics(
    trace: Trace,
    n_workers: int,
    batch_size: int,
    warmup: int,
    iterations: int,
    links: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spans = trace.columns()
    workers = [f"worker-{r}" for r in range(n_workers)]
    index = {w: r for r, w in enumerate(workers)}
    staleness: list[int] = spans.args.values("staleness")
    lane_worker = np.array([index.get(lane[0], -1) for lane in spans.lanes], dtype=np.intp)
    lane_cat = np.array([_CATS.get(lane[3], len(_CATS)) for lane in spans.lanes], dtype=np.int8)
    codes = np.asarray(spans.lane, dtype=np.intp)
    it = np.asarray(spans.iteration)
    keep = (warmup <= it) & (it < iterations - 1)
    worker, cat = lane_worker[codes], lane_cat[codes]
    counted = keep & (worker >= 0)
    dur = np.asarray(spans.end) - np.asarray(spans.start)

    def total(mask: np.ndarray) -> list[float]:
        k = np.flatnonzero(mask)
        return _per_worker(worker[k], dur[k], n_workers)

    is_iter = counted & (cat == _CATS["iteration"])
    iter_sum = total(is_iter)
    iter_n = np.bincount(worker[is_iter], minlength=n_workers).tolist()
    compute = total(counted & (cat == _CATS["compute"]))
    io = total(counted & (cat == _CATS["io"]))
    is_comm = keep & (cat == _CATS["comm"])
    exposed = total(is_comm & counted & np.asarray(spans.blocking, dtype=bool))
    comm = _comm_per_worker(spans, is_comm, worker, index)

    n_iter = dict(zip(workers, iter_n, strict=True))
    per_worker_iter = {w: iter_sum[r] / iter_n[r] for r, w in enumerate(workers) if iter_n[r]}

    def per_iter(values: list[float]) -> float:
        return _mean([values[r] / iter_n[r] for r in range(n_workers) if iter_n[r]])

    overlaps = [
        1.0 - exposed[r] / comm[r] if comm[r] > 0 else 0.0 for r in range(n_workers) if iter_n[r]
    ]
    hist = Counter(staleness)
    iteration_time = _mean(list(per_worker_iter.values()))
    return {
        "iteration_time_s": iteration_time,
        "throughput_samples_per_s": sum(batch_size / t for t in per_worker_iter.values() if t > 0),
        "compute_time_s": per_iter(compute),
        "io_time_s": per_iter(io),
        "comm_time_s": per_iter(comm),
        "exposed_comm_time_s": per_iter(exposed),
        "overlap_ratio": _mean(overlaps),
        "staleness": {
            "mean": _mean([float(x) for x in staleness]),
            "max": max(staleness) if staleness else 0,
            "histogram": {str(k): hist[k] for k in sorted(hist)},
        },
        "links": links or [],
        "workers": n_workers,
        "iterations_counted": int(_mean([float(v) for v in n_iter.values()])),
        **(extra or {}),
    }
