"""A 200-point sweep through Dask against the process pool ``pslab sweep`` used before.

Both run the same resolved points (digits_tta: 5 variants x 2 node counts x 20
learning rates, 30 iterations each, with numerics) on the same number of
processes, end to end (grid, points, sweep.json, sweep.png). The process pool is
the old path as it was: a spawn-context ``ProcessPoolExecutor``, results gathered
in memory, nothing written per point. The Dask run is ``pslab sweep`` itself: a
LocalCluster, every point's folder written. Each path runs ``--rounds`` times,
alternating (pool, Dask, Dask, pool, ...), so a machine load that drifts weighs
on both alike; wall and CPU time (of every process involved) are reported per
run and as medians. Then the first Dask sweep again, which must come entirely
from the cache.

    python benchmarks/sweep_dask.py [-j 2] [--lrs 20] [--rounds 3]

Last line: one JSON object with every run's times, the Dask / pool ratios and the cache hits.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pslab.trace import write_json_atomic  # noqa: E402
from pslab_cli.sweep import FIGURES, run_point, sweep  # noqa: E402
from pslab_cli.sweep_grid import build_grid  # noqa: E402
from pslab_cli.sweep_plot import plot  # noqa: E402

SCENARIO = ROOT / "scenarios" / "digits_tta.yaml"
VARIANTS = "sync_ps,async_ps,easgd,leader_sgd,local_sgd"
BASE = ["run.iterations=30"]
T = TypeVar("T")


def vary(lrs: int) -> list[str]:
    rates = ",".join(f"{0.05 + 0.02 * i:.2f}" for i in range(lrs))
    return [f"algorithm.name={VARIANTS}", "topology.nodes=1,2", f"algorithm.lr={rates}"]


def process_pool(args: list[str], jobs: int, out: Path) -> list[dict]:
    """The old path, end to end: every point validated, run in a spawn-context process
    pool, results kept in memory, then sweep.json and sweep.png."""
    grid = build_grid(SCENARIO, args, BASE)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(run_point, str(SCENARIO), p.overrides, False): i
            for i, p in enumerate(grid.points)
        }
        rows: list[dict] = [{}] * len(grid.points)
        for future in as_completed(futures):
            m = future.result()["metrics"]
            rows[futures[future]] = {k: m.get(k) for k in FIGURES}
    labelled = [{**p.label, **r} for p, r in zip(grid.points, rows, strict=True)]
    out.mkdir(parents=True)
    write_json_atomic(out / "sweep.json", {"points": labelled})
    plot(labelled, grid.keys, out / "sweep.png")
    return rows


def dask_sweep(args: list[str], jobs: int, out: Path) -> dict:
    """``pslab sweep`` itself, on a LocalCluster of ``jobs`` workers."""
    return sweep(SCENARIO, args, BASE, out, Console(file=io.StringIO()), workers=jobs)


def timed(fn: Callable[[], T]) -> tuple[float, float, T]:
    """Wall seconds and CPU seconds of this process and every child it reaped (the pool's
    processes, the Dask workers) while ``fn`` ran: CPU time is what other jobs on a shared
    machine disturb least."""

    def cpu() -> float:
        own, kids = (
            resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    wall0, cpu0 = time.perf_counter(), cpu()
    value = fn()
    return time.perf_counter() - wall0, cpu() - cpu0, value


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("-j", "--jobs", type=int, default=2)
    p.add_argument("--lrs", type=int, default=20, help="learning rates (points = 10 x this)")
    p.add_argument("--rounds", type=int, default=3, help="runs of each path, alternating")
    a = p.parse_args()
    args = vary(a.lrs)
    tmp = Path(tempfile.mkdtemp(prefix="pslab-sweep-bench-"))
    runs: dict[str, list[tuple[float, float]]] = {"pool": [], "dask": []}
    try:  # A B, B A, A B ...: a load that drifts through the run weighs on both alike
        for r in range(a.rounds):
            order = ["pool", "dask"] if r % 2 == 0 else ["dask", "pool"]
            for path in order:
                out = tmp / f"{path}{r}"
                if path == "pool":
                    wall, cpu, pool_rows = timed(lambda o=out: process_pool(args, a.jobs, o))
                else:
                    wall, cpu, report = timed(lambda o=out: dask_sweep(args, a.jobs, o))
                runs[path].append((wall, cpu))
        again_s, _, again = timed(lambda: dask_sweep(args, a.jobs, tmp / "dask0"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    same = all(
        {k: r[k] for k in FIGURES} == q for r, q in zip(report["points"], pool_rows, strict=True)
    )
    table = Table(title=f"{len(pool_rows)}-point sweep, {a.jobs} processes, {a.rounds} rounds")
    for col in ("path", "wall (s), each run", "median wall", "CPU (s), each run", "median CPU"):
        table.add_column(col, justify="left" if col == "path" else "right")
    names = {"pool": "process pool (old)", "dask": "Dask LocalCluster"}
    med: dict[str, tuple[float, float]] = {}
    for path, got in runs.items():
        med[path] = (statistics.median(w for w, _ in got), statistics.median(c for _, c in got))
        table.add_row(
            names[path],
            " ".join(f"{w:.1f}" for w, _ in got),
            f"{med[path][0]:.1f}",
            " ".join(f"{c:.1f}" for _, c in got),
            f"{med[path][1]:.1f}",
        )
    table.add_row("Dask, rerun (cache)", f"{again_s:.2f}", "", "", "")
    Console().print(table)
    print(
        json.dumps(
            {
                "points": len(pool_rows),
                "jobs": a.jobs,
                "process_pool_wall_s": [round(w, 2) for w, _ in runs["pool"]],
                "dask_wall_s": [round(w, 2) for w, _ in runs["dask"]],
                "process_pool_cpu_s": [round(c, 2) for _, c in runs["pool"]],
                "dask_cpu_s": [round(c, 2) for _, c in runs["dask"]],
                "dask_over_pool_median_wall": round(med["dask"][0] / med["pool"][0], 3),
                "dask_over_pool_best_wall": round(
                    min(w for w, _ in runs["dask"]) / min(w for w, _ in runs["pool"]), 3
                ),
                "dask_over_pool_median_cpu": round(med["dask"][1] / med["pool"][1], 3),
                "rerun_s": round(again_s, 3),
                "rerun_cached": again["cached"],
                "rerun_computed": again["computed"],
                "same_results": same,
            }
        )
    )


if __name__ == "__main__":
    main()
