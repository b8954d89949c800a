"""How much work a CPU second of this machine does now (:class:`pslab.profile.Speed`).

A calibration profile's CPU figures hold at the speed they were measured at;
a run minutes later may meet cores 1.5x slower or faster (what the VM's host
runs beside it), which no share-of-a-core count sees: the CPU seconds are all
the run's, each just buys less. So calibration and every emulated run take
this short probe, and the prediction rescales the profile by the ratio
(:meth:`pslab.profile.Profile.at_speed`).

The probe is an interpreter loop timed in this thread's CPU time, so a core
that other jobs share (which ``grpc_ps.load`` counts) does not read as a slow
one. Copies of arrays larger than the caches were tried beside it: from one
probe to the next they read 8 to 18 GB per CPU second, without following the
runs' times, so they would only have added noise.
"""

from __future__ import annotations

import time
from typing import Any

from pslab.profile import Speed

PROBE_CPU_S = 0.1  # two probes around a run cost about 0.2 s
LOOPS = 20_000  # per timed block: long beside thread_time's resolution


def _loop_block() -> float:
    t0 = time.thread_time()
    x = 0
    for i in range(LOOPS):
        x += i
    return time.thread_time() - t0


def measure_speed(cpu_s: float = PROBE_CPU_S) -> Speed:
    """Loop iterations per CPU second, over ``cpu_s`` of CPU."""
    loop_s, loops = 0.0, 0
    while loop_s < cpu_s:
        loop_s += _loop_block()
        loops += LOOPS
    rate = loops / loop_s
    return Speed(loops_per_cpu_s=rate, low=rate, high=rate)


def mean_speed(speeds: list[Speed]) -> Speed:
    """The speed a stretch ran at, from probes taken through it (harmonic: CPU seconds
    per unit of work add up, rates do not), with their range."""
    return Speed(
        loops_per_cpu_s=len(speeds) / sum(1 / s.loops_per_cpu_s for s in speeds),
        low=min(s.low for s in speeds),
        high=max(s.high for s in speeds),
    )


def speed_record(speeds: list[Speed]) -> dict[str, Any] | None:
    """A run's speed for its metrics: mean and range over its probes."""
    return mean_speed(speeds).model_dump() if speeds else None
