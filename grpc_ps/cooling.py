"""How much other processes' CPU work in an op's idle gap cools its caches beyond the gap.

The profile's ramps are measured across idle sleeps. In a run, other processes use the
cores while a process waits, and evict what it left in the caches. Measured here on
7 December (a small torch op after a 5 ms sleep, two burner processes copying 8 MiB
arrays for part of it): the op's extra over its hot cost went from 43 % of its fully
cold extra (idle) to 53, 61 and 64 % with 1, 2 and 4 ms of the others' CPU in the
gap; digits_mlp's forward and backward from 59 % to 78 % with 1 ms or more. So the
others' work adds a share of the cold extra, built up over a little of their CPU, and
stops there: what the idle gap does beyond the caches (an idle vCPU slow to get going)
it does not do.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from grpc_ps.timing import COLD_GAP_S, per_call

GAP_S = 0.005  # the op's idle gap, short of its ramp, so the others' share is seen
# each burner's CPU in the gap; two burners (the machine's two cores) double it
WORK_S = (0.0, 0.00025, 0.0005, 0.001, 0.002)


def fit_cooling(extras: dict[float, float], cold_extra: float) -> tuple[float, float]:
    """(share, cpu_s): the others' work adds ``share`` of the cold extra, built up linearly
    over ``cpu_s`` of their CPU. ``extras``: the op's extra after the gap, by the others'
    CPU in it (0.0: the gap idle). (0, 0): no measurable cooling."""
    works = sorted(extras)
    if cold_extra <= 0 or works[0] != 0.0 or len(works) < 3:
        return 0.0, 0.0
    idle = extras[0.0]
    top = float(np.median([extras[w] for w in works[-2:]]))
    share = (top - idle) / cold_extra
    if share <= 0.02:  # within the scatter of a median of medians
        return 0.0, 0.0
    shape = np.clip([(extras[w] - idle) / (top - idle) for w in works], 0.0, 1.0)
    busy = np.asarray(works)
    candidates = np.linspace(busy[1] / 4, busy[-1], 80)
    misfit = [float(np.sum((np.minimum(busy / c, 1.0) - shape) ** 2)) for c in candidates]
    return min(share, 1.0), float(candidates[int(np.argmin(misfit))])


def measure_cooling(
    op: Callable[[int], object], burners: int, rounds: int = 40
) -> tuple[float, float]:
    """``fit_cooling`` of ``op`` with ``burners`` other processes busy for part of its gap."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "grpc_ps.burner"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        for _ in range(burners)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            p.stdout.readline()  # ready
        per_call(op, range(20))
        after: dict[float, list[float]] = {w: [] for w in WORK_S}
        call = 0
        for _ in range(rounds):  # the works take turns, so a slow minute lands on each alike
            for w in WORK_S:
                after[w].append(_after_gap(op, call, procs, w))
                call += 1
        hot = per_call(op, range(call, call + rounds))
        cold = per_call(op, range(call + rounds, call + 2 * rounds), COLD_GAP_S)
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        for p in procs:
            p.wait(timeout=10)
    extras = {w * burners: float(np.median(s)) - hot for w, s in after.items()}
    return fit_cooling(extras, cold - hot)


def _after_gap(
    op: Callable[[int], object], call: int, procs: list[subprocess.Popen], work: float
) -> float:
    if work:
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{work}\n")
    time.sleep(GAP_S)
    if work:
        for p in procs:
            assert p.stdout is not None
            p.stdout.readline()  # done: its work was all in the gap
    t0 = time.perf_counter()
    op(call)
    return time.perf_counter() - t0
