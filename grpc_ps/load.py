"""What other jobs take from this machine while a run is measured.

A prediction of an emulated run must know how many cores the run really had.
One spin before or after the run measures a different moment: a validation
on a quiet machine once predicted compute at 7.0 ms against 0.72 ms measured,
because a job elsewhere happened to hold a core during the 0.5 s spin. So the
launcher samples the machine *through* the run: the kernel's busy time
(``/proc/stat``) minus the CPU time of the run's own processes
(``/proc/PID/stat``), both in the kernel's clock ticks so the two counts
round alike. What is left is what other jobs (and the launcher itself, which
the model does not price) took from the run.
"""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.1
WINDOW_S = 0.5  # the other jobs' share is reported per window of this length
UNSTEADY_CORES = 0.5  # windows this far apart: the run is flagged


def _busy_ticks() -> int:
    """Ticks every core spent not idle since boot (steal included: a core the
    hypervisor gave to someone else was not the run's either)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return user + nice + system + irq + softirq + steal


def _proc_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` with its exited threads; None once it has gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name in brackets may hold spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


@dataclass(frozen=True)
class _Sample:
    t: float
    busy: int
    own: dict[int, int | None]


class LoadSampler:
    """Samples busy and own ticks every :data:`SAMPLE_S` in a thread while a run goes on.

    ``pids`` is asked at every sample, so processes started later (the
    workers) are counted from their first sample on. An interval counts only
    where every pid seen at either end was alive at both: a process that ended
    inside it took ticks the busy count has and the own count lost.
    """

    def __init__(self, pids: Callable[[], list[int]], cores: int | None = None) -> None:
        self.pids = pids
        self.cores = cores or os.cpu_count() or 1
        self.samples: list[_Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> LoadSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        own = {pid: _proc_ticks(pid) for pid in self.pids()}
        self.samples.append(_Sample(time.monotonic(), _busy_ticks(), own))

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def summary(
        self, during: tuple[float, float] | None = None, names: dict[int, str] | None = None
    ) -> dict[str, Any]:
        """Cores other jobs took, on average and per window; what the run took.

        ``during``: only the samples inside this span of ``time.monotonic()`` (the workers'
        first op to their last: their seconds of imports are not the run's steady state).
        ``names``: the run's processes by pid, for each one's CPU (``own_s_by_name``)."""
        samples = self.samples
        if during is not None:
            samples = [s for s in samples if during[0] <= s.t <= during[1]]
        windows: list[tuple[float, float, float]] = []  # (seconds, other ticks, own ticks)
        span = other = own = 0.0
        by_pid: dict[int, int] = {}
        for a, b in itertools.pairwise(samples):
            pids = set(a.own) | set(b.own)
            if any(a.own.get(p) is None or b.own.get(p) is None for p in pids):
                continue
            deltas = {p: b.own[p] - a.own[p] for p in pids}  # type: ignore[operator]
            for p, d in deltas.items():
                by_pid[p] = by_pid.get(p, 0) + d
            d_own = sum(deltas.values())
            d_other = max(b.busy - a.busy - d_own, 0)
            dt = b.t - a.t
            span, other, own = span + dt, other + d_other, own + d_own
            if not windows or windows[-1][0] >= WINDOW_S:
                windows.append((0.0, 0.0, 0.0))
            w = windows[-1]
            windows[-1] = (w[0] + dt, w[1] + d_other, w[2] + d_own)
        if span <= 0:  # no two samples in the window (a run shorter than a sample or two)
            return {}  # no figure: the prediction keeps the calibration's free cores
        per_window = [w[1] * TICK_S / w[0] for w in windows if w[0] >= WINDOW_S / 2]
        spread = (max(per_window) - min(per_window)) if len(per_window) > 1 else 0.0
        return {
            "cores": self.cores,
            "other_cores": min(other * TICK_S / span, float(self.cores)),
            "own_cores": own * TICK_S / span,
            "other_cores_min": min(per_window, default=0.0),
            "other_cores_max": max(per_window, default=0.0),
            "other_cores_stdev": statistics.pstdev(per_window) if per_window else 0.0,
            "seconds": span,
            "unsteady": spread > UNSTEADY_CORES,
            "own_s_by_name": {
                names[p]: t * TICK_S for p, t in by_pid.items() if names and p in names
            },
        }


def free_cores(load: dict[str, float | bool | int], cores: int, floor: float = 0.25) -> float:
    """The cores a measured run had: the machine's less what other jobs took (at least
    ``floor``, so a swamped machine still predicts a finite time)."""
    return max(float(cores) - float(load["other_cores"]), floor)


def steady_window(spans: Iterable[Any], warmup: int, iterations: int) -> tuple[float, float] | None:
    """When every worker was in its counted iterations: from the last one's start of its
    first to the first one's end of its last, in trace seconds. Where they never all were
    (a run too short), the workers' whole span; None without worker spans."""
    workers = [s for s in spans if s.role.startswith("worker-")]
    if not workers:
        return None
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for s in workers:
        if s.name == "iteration" and warmup <= s.iteration < iterations - 1:
            first[s.role] = min(first.get(s.role, s.start), s.start)
            last[s.role] = max(last.get(s.role, s.end), s.end)
    roles = {s.role for s in workers}
    if set(first) == roles and max(first.values()) < min(last.values()):
        return max(first.values()), min(last.values())
    return min(s.start for s in workers), max(s.end for s in workers)
