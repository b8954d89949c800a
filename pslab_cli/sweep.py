"""``pslab sweep``: a grid of simulations as Dask tasks, cached per point, plotted per variant.

The answer to "which variant for my cluster": vary the algorithm and the cluster,
read throughput, communication (total, exposed, overlap) and, with a ``numerics``
section, time to the target accuracy side by side.

Points run on a Dask ``LocalCluster`` (``-j`` worker processes), on an existing
scheduler (``--scheduler ADDRESS``) or on SLURM through dask-jobqueue (``--slurm
CONFIG``). Each point's result lands in ``OUT/points/HASH/`` (metrics.json,
scenario.yaml, trace.json with ``--trace``), HASH naming its resolved scenario;
a point whose folder holds its metrics is not run again, so an interrupted or
extended sweep computes only what is missing. The Dask workers return results
and this process writes them: a remote cluster needs no shared file system.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from pslab import units
from pslab.results import write_text_atomic
from pslab.scenario import ScenarioError, dump_scenario, load_scenario, read_yaml
from pslab.trace import write_json_atomic
from pslab_cli.sweep_grid import Grid, Point, build_grid

FIGURES = (
    "throughput_samples_per_s",
    "iteration_time_s",
    "comm_time_s",
    "exposed_comm_time_s",
    "overlap_ratio",
    "time_to_target_s",
    "test_accuracy",
)
TIMES = {"iteration_time_s", "comm_time_s", "exposed_comm_time_s", "time_to_target_s"}


def run_point(path: str, overrides: tuple[str, ...], trace: bool) -> dict[str, Any]:
    """One point, on a Dask worker: its metrics and, if asked, its Chrome trace. It travels
    as the scenario's path and overrides, plain strings, and is resolved again there exactly
    as it was here (the grid checked that it resolves)."""
    from sim.run import simulate

    result = simulate(load_scenario(path, list(overrides)), Path(path).parent)
    return {"metrics": result.metrics, "trace": result.trace.to_chrome() if trace else None}


def point_dir(out_dir: Path, point: Point) -> Path:
    return out_dir / "points" / point.key


def cached(out_dir: Path, point: Point, trace: bool) -> dict[str, Any] | None:
    """The point's metrics from an earlier sweep, if it wrote them (and the trace asked for)."""
    folder = point_dir(out_dir, point)
    if not (folder / "metrics.json").exists() or (trace and not (folder / "trace.json").exists()):
        return None
    return json.loads((folder / "metrics.json").read_text())


def write_point(out_dir: Path, point: Point, result: dict[str, Any]) -> None:
    """metrics.json last: its presence is what marks the point done."""
    folder = point_dir(out_dir, point)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "scenario.yaml", dump_scenario(point.scenario))
    if result["trace"] is not None:
        write_json_atomic(folder / "trace.json", result["trace"])
    write_json_atomic(folder / "metrics.json", result["metrics"])


def slurm_cluster(config: Path) -> Any:
    """A dask-jobqueue SLURMCluster from a YAML of its keyword arguments (no jobs yet)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ScenarioError("--slurm needs dask-jobqueue: pip install 'pslab[slurm]'") from None
    kwargs = read_yaml(config)
    try:
        cluster = SLURMCluster(**kwargs)
    except (TypeError, ValueError) as e:
        raise ScenarioError(f"{config}: not a SLURMCluster configuration ({e})") from None
    return cluster


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int, slurm: Path | None) -> Iterator[Any]:
    """A client of the cluster asked for; a LocalCluster of ``workers`` processes by default
    (one thread each: a simulation is pure Python and holds the GIL). Its workers run without
    Dask's statistical profiler, which samples every thread's stack each 10 ms: work that a
    pure-Python simulation pays for and that, with no dashboard, no one reads."""
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    if slurm is not None:
        cluster = slurm_cluster(slurm)
        cluster.scale(jobs=workers)  # sbatch, one job per worker
    else:
        with dask.config.set({"distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,  # not a warning per worker slow to exit
            )
    with cluster, Client(cluster) as client:
        yield client


def compute(
    grid: Grid,
    out_dir: Path,
    console: Console,
    scheduler: str | None = None,
    workers: int | None = None,
    slurm: Path | None = None,
    trace: bool = False,
) -> tuple[dict[str, dict[str, Any]], int]:
    """Metrics of every point by key, and how many were computed (the rest were cached)."""
    results: dict[str, dict[str, Any]] = {}
    todo: dict[str, Point] = {}
    for point in grid.points:
        hit = cached(out_dir, point, trace)
        if hit is not None:
            results[point.key] = hit
        else:
            todo.setdefault(point.key, point)  # one run for points that resolve alike
    if not todo:
        return results, 0
    from dask.distributed import as_completed

    path = str(grid.scenario_path.resolve())
    with (
        dask_client(scheduler, workers or os.cpu_count() or 1, slurm) as client,
        Progress(console=console, transient=True) as bar,
    ):
        task = bar.add_task(f"simulating {len(todo)} points", total=len(todo))
        points = list(todo.values())
        futures = client.map(
            run_point,
            [path] * len(points),
            [p.overrides for p in points],
            trace=trace,
            key=[f"pslab-point-{p.key}" for p in points],
        )
        by_key = {f.key: p for f, p in zip(futures, points, strict=True)}
        for future in as_completed(futures):
            point = by_key[future.key]
            result = future.result()
            write_point(out_dir, point, result)  # at once: an interrupted sweep keeps it
            results[point.key] = result["metrics"]
            bar.advance(task)
    return results, len(todo)


def sweep(
    path: Path,
    vary: list[str],
    base: list[str],
    out_dir: Path,
    console: Console,
    scheduler: str | None = None,
    workers: int | None = None,
    slurm: Path | None = None,
    trace: bool = False,
) -> dict[str, Any]:
    grid = build_grid(path, vary, base)
    results, computed = compute(grid, out_dir, console, scheduler, workers, slurm, trace)
    rows = [
        {**p.label, **{k: results[p.key].get(k) for k in FIGURES}, "point": p.key}
        for p in grid.points
    ]
    report = {
        "scenario": str(grid.scenario_path),
        "vary": grid.keys,
        "computed": computed,
        "cached": len(grid.points) - computed,
        "points": rows,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "sweep.json", report)
    from pslab_cli.sweep_plot import plot

    plot(rows, grid.keys, out_dir / "sweep.png")
    return report


HEADERS = {
    "throughput_samples_per_s": "samples/s",
    "iteration_time_s": "iteration",
    "comm_time_s": "comm",
    "exposed_comm_time_s": "exposed",
    "overlap_ratio": "overlap",
    "time_to_target_s": "to target",
    "test_accuracy": "accuracy",
}


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if key == "throughput_samples_per_s":
        return f"{value:,.0f}"
    return units.fmt_time(value) if key in TIMES else f"{value:.4g}"


def sweep_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"sweep: {report['scenario']}")
    for key in report["vary"]:
        table.add_column(key)
    figures = [k for k in FIGURES if any(r[k] is not None for r in report["points"])]
    for key in figures:
        table.add_column(HEADERS[key], justify="right")
    for row in report["points"]:
        cells = [str(row.get(k, "")) for k in report["vary"]]
        table.add_row(*cells, *[_cell(k, row[k]) for k in figures])
    return table
