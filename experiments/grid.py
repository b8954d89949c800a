"""The one grid runner: every experiment's grid of scenario variants goes through here.

A grid point is independent of every other (one SimPy run, or one run of the
emulator), so the runner's only jobs are to spread the points over worker
processes, start the slowest first so the pool stays busy to the end, and
show one progress bar.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

T = TypeVar("T")
R = TypeVar("R")
StartMethod = Literal["fork", "spawn"]


def run_grid(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    jobs: int = 1,
    cost: Callable[[T], float] | None = None,
    start_method: StartMethod = "fork",
    console: Any = None,
    description: str = "simulating grid",
) -> list[R]:
    """``[fn(t) for t in tasks]``, in ``jobs`` processes when > 1, in the order of ``tasks``.

    ``cost`` is a rough relative wall time: the costliest tasks start first
    (ties keep their order), so one long task does not run alone at the end.
    ``fn`` must be a module-level function of an importable module and the
    tasks and results picklable. ``start_method`` is ``"fork"`` (cheap, for
    SimPy-only work) or ``"spawn"`` (for torch, whose thread pool a fork would
    copy in an undefined state). ``console`` (a rich Console, e.g. on stderr)
    shows a progress bar; None shows nothing.
    """
    order = list(range(len(tasks)))
    if cost is not None:
        order.sort(key=lambda i: -cost(tasks[i]))
    results: list[Any] = [None] * len(tasks)
    with _progress(console, description, len(tasks)) as tick:
        for i, result in _completions(fn, tasks, order, jobs, start_method):
            results[i] = result
            tick()
    return results


def _completions(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    order: Sequence[int],
    jobs: int,
    start_method: StartMethod,
) -> Iterator[tuple[int, R]]:
    """(index, result) as each task finishes; in this process when ``jobs`` <= 1."""
    if jobs <= 1:
        for i in order:
            yield i, fn(tasks[i])
        return
    ctx = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures: dict[Future[R], int] = {pool.submit(fn, tasks[i]): i for i in order}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


@contextmanager
def _progress(console: Any, description: str, total: int) -> Iterator[Callable[[], None]]:
    """A ``tick()`` that advances a rich bar on ``console`` (a no-op without one).

    The bar is redrawn on each tick, never by rich's refresh thread: a fork
    start method must see a single-threaded parent.
    """
    if console is None:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        auto_refresh=False,
    )
    task = bar.add_task(description, total=total)

    def tick() -> None:
        bar.advance(task)
        bar.refresh()

    with bar:
        yield tick
