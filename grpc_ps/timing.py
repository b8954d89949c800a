"""Timing an op against how long it idled first: the calibration's shared yardstick.

An op run after an idle gap costs more than back to back (cold caches); the profile keeps
the hot and the cold figure and the gap over which one turns into the other, fitted here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

COLD_GAP_S = 0.04  # idle this long, an op has gone fully cold
RAMP_GAPS_S = (0.0, 0.001, 0.0025, 0.005, 0.01, 0.02, COLD_GAP_S)


def per_call(
    fn: Callable[[int], object],
    calls: range,
    gap: float = 0.0,
    prepare: Callable[[int], object] | None = None,
) -> float:
    """Median seconds of ``fn(i)`` over ``calls``, each after ``gap`` seconds asleep
    (the median: a call another job preempted says nothing about this one).

    ``prepare(i)``: what a run does between the gap and the op, untimed: a worker's load
    fetches its batch after the load's sleep, and the compute op starts on it."""
    seconds = []
    for i in calls:
        if gap:
            time.sleep(gap)
        if prepare is not None:
            prepare(i)
        t0 = time.perf_counter()
        fn(i)
        seconds.append(time.perf_counter() - t0)
    return float(np.median(seconds))


def costs_after_gaps(
    fn: Callable[[int], object],
    rounds: int = 30,
    prepare: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Median seconds of ``fn`` after each idle gap of :data:`RAMP_GAPS_S` (the last is
    :data:`COLD_GAP_S`).

    The gaps take turns, one call each per round, so a minute in which the machine ran
    slow lands on every gap alike. Measured gap by gap, one block after the other, three
    fits of a small push's ramp came out 4.0, 12.5 and 6.0 ms; taking turns, 5.5, 7.5 and
    6.0 ms. A ramp decides whether an RPC after a 5 ms load is charged as hot or as cold,
    which moved the real-compute predictions by up to 20 %."""
    per_call(fn, range(20), prepare=prepare)
    seconds: list[list[float]] = [[] for _ in RAMP_GAPS_S]
    call = 0
    for _ in range(rounds):
        for after, gap in zip(seconds, RAMP_GAPS_S, strict=True):
            # one call, after its gap
            after.append(per_call(fn, range(call, call + 1), gap, prepare))
            call += 1
    return np.array([np.median(s) for s in seconds])


def ramp(costs: np.ndarray) -> float:
    """The idle gap over which an op goes from hot to cold, fitted as a linear ramp: the
    length whose ``min(gap / ramp, 1)`` best fits the slow-down after each gap of
    :data:`RAMP_GAPS_S`, normalised by the longest gap's. 0: never measurably cold."""
    extra = costs - costs[0]
    if extra[-1] <= 0.1 * costs[0]:
        return 0.0
    shape = np.clip(extra / extra[-1], 0.0, 1.0)
    gaps = np.asarray(RAMP_GAPS_S)
    candidates = np.linspace(0.0005, max(RAMP_GAPS_S), 80)
    misfit = [float(np.sum((np.minimum(gaps / r, 1.0) - shape) ** 2)) for r in candidates]
    return float(candidates[int(np.argmin(misfit))])
