"""How much work a CPU second of this machine does (:class:`pslab.profile.Speed`).

A VM's cores do not keep one speed: what its host runs beside it moves how
much work a CPU second buys. Calibration and every emulated run track it, and
compare reports the ratio, so a prediction made from a calibration taken at
another speed says so. (It does not rescale by it: see :mod:`pslab.profile`.)

The probe is an interpreter loop timed in its thread's CPU time, so a core
that other jobs share (which ``grpc_ps.load`` counts) does not read as a slow
one. It is sampled *through* the stretch it speaks for, a block every 0.1 s,
not once at its edges: on a quiet machine single 0.1 s probes read 24 to 40 M
loops per CPU second a few seconds apart, so two of them either side of a run
put its speed anywhere in 0.74-1.09 of the calibration's. Copies of arrays
larger than the caches were tried beside it: from one probe to the next they
read 8 to 18 GB per CPU second, without following the runs' times.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from pslab.profile import Speed

LOOPS = 20_000  # per timed block: about 0.5 ms, long beside thread_time's resolution
EVERY_S = 0.1  # a tracked stretch's blocks: about 1 % of a core


def _loop_block() -> float:
    t0 = time.thread_time()
    x = 0
    for i in range(LOOPS):
        x += i
    return time.thread_time() - t0


def block_speed() -> float:
    """Loops per CPU second of one block, after one untimed: the first block after a
    sleep reads about 6 % slow (its code cold), which is not the cores' speed."""
    _loop_block()
    return LOOPS / _loop_block()


def speed_of(rates: Sequence[float]) -> Speed | None:
    """The speed of a stretch from its blocks: the harmonic mean (CPU seconds per loop
    add up, rates do not), and the interval its standard error puts it in (two errors
    each way). None for fewer than two blocks."""
    if len(rates) < 2:
        return None
    per_loop = [1.0 / r for r in rates]
    mean = statistics.fmean(per_loop)
    err = 2 * statistics.stdev(per_loop) / math.sqrt(len(per_loop))
    fastest = 1 / max(mean - err, mean / 2)  # at most twice the mean: a wild stretch
    return Speed(loops_per_cpu_s=1 / mean, low=1 / (mean + err), high=fastest)


class SpeedTrack:
    """Blocks timed every :data:`EVERY_S` while the ``with`` body runs, in a process of
    their own: in the caller's, their CPU would count as the caller's (calibration
    times its client by ``process_time``) and they would take its interpreter lock."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (time.monotonic(), rate)

    def __enter__(self) -> SpeedTrack:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "grpc_ps.speed_probe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # tracking: the body is covered from its start
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self._proc.communicate("", timeout=30)
        self.samples = [(t, r) for t, r in json.loads(out or "[]")]

    def speed(self, during: tuple[float, float] | None = None) -> Speed | None:
        """The speed over the blocks taken (``during``: only those in this span of
        ``time.monotonic()``, one clock for every process)."""
        lo, hi = during or (-math.inf, math.inf)
        return speed_of([r for t, r in self.samples if lo <= t <= hi])


def _track_until_stdin_closes() -> None:
    stop = threading.Event()
    samples: list[tuple[float, float]] = []

    def loop() -> None:
        while not stop.wait(EVERY_S):
            samples.append((time.monotonic(), block_speed()))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    print("tracking", flush=True)
    sys.stdin.read()
    stop.set()
    thread.join()
    print(json.dumps(samples))


if __name__ == "__main__":
    _track_until_stdin_closes()
