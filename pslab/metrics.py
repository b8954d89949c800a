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

from collections import Counter, defaultdict
from typing import Any

from pslab.compare import COMPARED
from pslab.trace import SpanRecord, Trace


def union_length(intervals: list[tuple[float, float]]) -> float:
    total = 0.0
    cur_s = cur_e = None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def compute_metrics(
    trace: Trace,
    n_workers: int,
    batch_size: int,
    warmup: int,
    iterations: int,
    links: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    workers = [f"worker-{r}" for r in range(n_workers)]
    counted = set(workers)
    iters: dict[str, list[float]] = defaultdict(list)
    compute: dict[str, float] = defaultdict(float)
    io: dict[str, float] = defaultdict(float)
    exposed: dict[str, float] = defaultdict(float)
    comm_iv: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    staleness: list[int] = []

    def add_comm(worker: str, s: SpanRecord) -> None:
        comm_iv[(worker, s.iteration)].append((s.start, s.end))

    for s in trace.spans:
        if s.args and "staleness" in s.args:
            staleness.extend(s.args["staleness"])
        if not warmup <= s.iteration < iterations - 1:
            continue
        if s.role in counted:
            if s.cat == "iteration":
                iters[s.role].append(s.dur)
            elif s.cat == "compute":
                compute[s.role] += s.dur
            elif s.cat == "io":
                io[s.role] += s.dur
            elif s.cat == "comm":
                add_comm(s.role, s)
                if s.blocking:
                    exposed[s.role] += s.dur
        if s.cat == "comm":
            for w in s.on_behalf:
                if w in counted:
                    add_comm(w, s)

    comm: dict[str, float] = defaultdict(float)
    for (w, _), ivs in comm_iv.items():
        comm[w] += union_length(ivs)

    per_worker_iter = {w: _mean(iters[w]) for w in workers if iters[w]}
    n_iter = {w: len(iters[w]) for w in workers}

    def per_iter(values: dict[str, float]) -> float:
        return _mean([values[w] / n_iter[w] for w in workers if n_iter[w]])

    overlaps = [1.0 - exposed[w] / comm[w] if comm[w] > 0 else 0.0 for w in workers if n_iter[w]]
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


def mean_metrics(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's metrics with every compared figure (and the staleness mean)
    replaced by its mean over ``runs``: one prediction from several equally likely runs."""
    out = dict(runs[0])
    for key in COMPARED:
        out[key] = _mean([float(r[key]) for r in runs])
    out["staleness"] = {**runs[0]["staleness"]}
    out["staleness"]["mean"] = _mean([r["staleness"]["mean"] for r in runs])
    return out
