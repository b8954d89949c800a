"""Columnar spans and vectorised metrics: the same figures, to the last bit, as one loop
over SpanRecords (the definition ``pslab.metrics`` had before it was vectorised)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from pslab.metrics import compute_metrics
from pslab.trace import SpanRecord, Trace, load_spans


def _union(intervals: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
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


def _reference(trace: Trace, n: int, warmup: int, iterations: int) -> dict[str, float]:
    """The per-worker figures the loop computed, averaged as compute_metrics does."""
    workers = [f"worker-{r}" for r in range(n)]
    iters: dict[str, list[float]] = defaultdict(list)
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    comm_iv: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for s in trace.spans:
        if not warmup <= s.iteration < iterations - 1:
            continue
        if s.role in workers:
            if s.cat == "iteration":
                iters[s.role].append(s.dur)
            elif s.cat in ("compute", "io"):
                sums[s.cat][s.role] += s.dur
            elif s.cat == "comm":
                comm_iv[s.role, s.iteration].append((s.start, s.end))
                if s.blocking:
                    sums["exposed"][s.role] += s.dur
        if s.cat == "comm":
            for w in s.on_behalf:
                if w in workers:
                    comm_iv[w, s.iteration].append((s.start, s.end))
    comm: dict[str, float] = defaultdict(float)
    for (w, _), ivs in comm_iv.items():
        comm[w] += _union(ivs)
    counted = [w for w in workers if iters[w]]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    def per_iter(values: dict[str, float]) -> float:
        return mean([values[w] / len(iters[w]) for w in counted])

    return {
        "iteration_time_s": mean([mean(iters[w]) for w in counted]),
        "compute_time_s": per_iter(sums["compute"]),
        "io_time_s": per_iter(sums["io"]),
        "comm_time_s": per_iter(comm),
        "exposed_comm_time_s": per_iter(sums["exposed"]),
        "overlap_ratio": mean(
            [1.0 - sums["exposed"][w] / comm[w] if comm[w] > 0 else 0.0 for w in counted]
        ),
    }


def _random_trace(rng: np.random.Generator, n: int, iterations: int) -> Trace:
    """Workers' lanes with overlapping, touching and repeated comm intervals, collectives
    run by a communicator on behalf of some workers (and of a name that is not counted),
    and server spans carrying staleness; more spans than one packed chunk."""
    trace = Trace("sim")
    for it in range(iterations):
        for r in range(n):
            role, t = f"worker-{r}", float(rng.uniform(0, 1))
            trace.add(SpanRecord(role, "h", "iteration", "iteration", t, t + 0.5, it))
            trace.add(SpanRecord(role, "h", "compute", "compute", t, t + 0.1, it))
            for _ in range(int(rng.integers(0, 4))):
                s = round(float(rng.uniform(t, t + 0.4)), 2)  # rounded: ties and touches
                e = s + round(float(rng.uniform(0, 0.1)), 2)
                trace.add(SpanRecord(role, "h", "push", "comm", s, e, it, 8, bool(rng.integers(2))))
            if rng.random() < 0.3:
                trace.add(SpanRecord(role, "h", "load", "io", t, t + 0.01, it, blocking=False))
        behalf = (*(f"worker-{r}" for r in range(0, n, 2)), "worker-99")
        trace.add(SpanRecord("comm-0", "h", "allreduce", "comm", 0.2, 0.3, it, on_behalf=behalf))
        trace.add(
            SpanRecord("ps-0", "s", "apply", "server", 0.0, 0.1, it, args={"staleness": [0, it]})
        )
    return trace


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_metrics_are_the_loops_to_the_last_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, iterations, warmup = 7, 300, 2
    trace = _random_trace(rng, n, iterations)
    assert len(trace.spans) > 8192  # some packed into columns, some still rows
    got = compute_metrics(trace, n, 32, warmup, iterations)
    for key, want in _reference(trace, n, warmup, iterations).items():
        assert got[key] == want, key
    assert got["staleness"]["max"] == iterations - 1
    assert got["iterations_counted"] == iterations - 1 - warmup


def test_spans_read_back_as_the_records_that_were_added() -> None:
    trace = _random_trace(np.random.default_rng(1), 6, 400)
    spans = list(trace.spans)
    assert len(spans) == len(trace.spans) > 8192
    assert trace.spans[-1] == spans[-1] and trace.spans[3] == spans[3]
    assert trace.spans[-64:] == spans[-64:]
    with pytest.raises(IndexError):
        trace.spans[len(spans)]
    copy = Trace("sim")
    copy.extend(trace)
    assert list(copy.spans) == spans
    assert len(load_spans(trace.to_chrome()).spans) == len(spans)
    assert Trace("sim", spans=spans).to_chrome() == trace.to_chrome()


def test_an_empty_trace_has_zero_metrics() -> None:
    m = compute_metrics(Trace("sim"), 4, 32, 0, 10)
    assert m["iteration_time_s"] == 0.0 and m["comm_time_s"] == 0.0
    assert m["iterations_counted"] == 0 and m["staleness"]["max"] == 0
