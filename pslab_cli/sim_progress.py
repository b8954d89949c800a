"""A progress bar for ``pslab sim``: on stderr, only on a terminal, only for long runs.

The simulator runs in this thread; a daemon thread polls the executor (its
simulated clock and its event count, two plain reads) five times a second and
draws a rich bar, transient, so nothing is left on the screen or in a pipe.
The bar's total is the simulated time the first worker-iterations predict
(the clock of the last worker span, scaled by iterations done), so it is an
estimate that settles after the first few iterations; a run that ends within
a second never shows it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

SHOW_AFTER_S = 1.0
POLL_S = 0.2


class _Estimate:
    """Share of the run done: iterations the trace reached, extrapolated on the simulated
    clock once the trace stops growing (a trace may sample the first iterations only)."""

    def __init__(self, iterations: int) -> None:
        self.iterations = iterations
        self.reached = -1
        self.clock_at_reached = 0.0

    def fraction(self, executor: Any) -> float:
        spans = executor.trace.spans
        reached = max((s.iteration for s in spans[-64:]), default=-1)
        now = executor.env.now
        if reached > self.reached:
            self.reached, self.clock_at_reached = reached, now
        if self.reached < 0 or self.clock_at_reached <= 0:
            return 0.0
        per_iteration = self.clock_at_reached / (self.reached + 1)
        done = max(self.reached + 1, now / per_iteration)
        return min(1.0, done / self.iterations)


@contextmanager
def sim_progress(console: Console, iterations: int) -> Iterator[Callable[[Any], None]]:
    """Yields the ``on_start`` hook for :func:`sim.run.simulate`; draws while it runs."""
    stop = threading.Event()
    started: list[Any] = []

    def watch() -> None:
        if stop.wait(SHOW_AFTER_S):
            return
        while not started:  # the executor is built after this thread starts
            if stop.wait(POLL_S):
                return
        executor = started[0]
        estimate = _Estimate(iterations)
        with Progress(
            TextColumn("[bold]simulating[/]"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%  {task.fields[clock]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("sim", total=1.0, clock="")
            while not stop.wait(POLL_S):
                clock = f"t={executor.env.now:.3g} s, {executor.env.events_processed:,} events"
                bar.update(task, completed=estimate.fraction(executor), clock=clock)

    thread = threading.Thread(target=watch, daemon=True)
    if console.is_terminal:
        thread.start()
    try:
        yield started.append
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
