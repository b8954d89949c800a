"""A simulated run against a measured one: the error of every metric, and op by op.

Both traces share span names, roles and iteration numbers (one definition
of each algorithm, two executors), so lining them up is a join on
(op, iteration) over the workers, not a heuristic.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pslab.trace import Trace

COMPARED = (
    "iteration_time_s",
    "throughput_samples_per_s",
    "compute_time_s",
    "io_time_s",
    "comm_time_s",
    "exposed_comm_time_s",
    "overlap_ratio",
)
ABSOLUTE = {"overlap_ratio"}  # a ratio in [0, 1]: compared by absolute difference


def error_pct(predicted: float, measured: float) -> float | None:
    """100·(predicted − measured)/measured; None when nothing was measured."""
    if measured == 0:
        return None if predicted != 0 else 0.0
    return 100.0 * (predicted - measured) / measured


def compare_metrics(predicted: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in COMPARED:
        p, m = float(predicted[key]), float(measured[key])
        entry: dict[str, Any] = {"predicted": p, "measured": m, "error_pct": error_pct(p, m)}
        if key in ABSOLUTE:
            entry["abs_error"] = p - m
        out[key] = entry
    p_st, m_st = predicted["staleness"]["mean"], measured["staleness"]["mean"]
    out["staleness_mean"] = {
        "predicted": p_st,
        "measured": m_st,
        "error_pct": error_pct(p_st, m_st),
    }
    return out


def op_durations(trace: Trace, warmup: int, iterations: int) -> dict[str, float]:
    """Mean duration of each worker op (blocking spans, steady-state iterations)."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for s in trace.spans:
        if s.role.startswith("worker-") and s.blocking and warmup <= s.iteration < iterations - 1:
            sums[s.name] += s.dur
            counts[s.name] += 1
    return {name: sums[name] / counts[name] for name in sorted(sums)}


def compare_ops(
    p: dict[str, float], measured: Trace, warmup: int, iterations: int
) -> dict[str, dict[str, Any]]:
    """``p``: the predicted mean op seconds, from a prediction's ``op_time_s`` or its trace."""
    m = op_durations(measured, warmup, iterations)
    return {
        name: {
            "predicted": p.get(name, 0.0),
            "measured": m.get(name, 0.0),
            "error_pct": error_pct(p.get(name, 0.0), m.get(name, 0.0)),
        }
        for name in sorted(set(p) | set(m))
    }
