"""Simulator scale: wall time and event rate from 16 to 1,024 workers.

The issue's targets: 1,024 workers x 100 iterations of sync_ps (one parameter
server, so 1,024 pushes incast through max–min sharing every iteration) in
under 60 s on a 2-core machine, and wall time growing about linearly with
workers x iterations. Ring all-reduce is run beside it because it loads the
simulator differently: one collective of n members, n flows on n different
links, instead of n flows converging on one.

Each case is built like ``scenarios/scale_1024.yaml`` (cluster preset, one GPU
per node, 100 Gb/s links, a 400 Gb/s server NIC, a 1M-parameter model) and run
end to end through ``sim.run.simulate``, so the wall time is what a user
waits for: plan, cluster, the SimPy run and the metrics.

Absolute times say little on a shared or unknown machine, so every case is
also divided by *bare SimPy*: a loop of processes that do nothing but yield
timeouts, measured right before that case in the same process. Its event rate
is the ceiling for any SimPy model; the ratio says how much of it the
simulator's own bookkeeping (flows, rate recomputes, trace spans) costs, and
it moves far less than raw seconds when the machine is busy.

Linearity is read two ways: wall time per (worker x iteration), which stays
flat when growth is linear, and the least-squares slope of log(wall) against
log(workers x iterations) per algorithm (1 means linear, 2 quadratic).

A rich progress bar (on stderr) and table are printed; the last line of stdout
is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import simpy
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pslab.scenario import Scenario, scenario_from_dict
from sim.run import simulate

ALGOS = ("sync_ps", "allreduce")
WORKERS = (16, 64, 256, 1024)
ITERATIONS = 100


def scenario_for(algo: str, workers: int, iterations: int) -> Scenario:
    """A scale_1024.yaml-shaped scenario with ``workers`` one-GPU nodes.

    All-reduce gets no server host: an idle one would add a vertex and a CPU
    resource that nothing uses, and the two algorithms should differ only in
    what they do, not in what they are given.
    """
    if iterations < 2:
        raise ValueError("iterations must be >= 2 (the last one is left out of the metrics)")
    data: dict[str, Any] = {
        "name": f"sim-scale-{algo}-{workers}",
        "topology": {
            "preset": "cluster",
            "nodes": workers,
            "gpus_per_node": 1,
            "inter_link": {"bandwidth": "100Gb/s", "latency": "5us"},
            "server_link": {"bandwidth": "400Gb/s", "latency": "5us"},
            "servers": 1 if algo != "allreduce" else 0,
            "server_cores": 64,
        },
        "workload": {
            "model": {"params": "1M"},
            "batch_size": 32,
            "compute_time": "50ms",
            "io_time": "10ms",
        },
        "algorithm": {"name": algo},
        "run": {
            "iterations": iterations,
            "seed": 0,
            # scale_1024.yaml uses 5; short runs need warmup < iterations - 1
            "warmup": min(5, iterations - 2),
            "trace_sample": {"workers": 16, "iterations": 10},
        },
    }
    return scenario_from_dict(data, f"<sim_scale {algo} x{workers}>")


def bare_simpy_rate(processes: int = 500, timeouts: int = 400) -> tuple[float, int]:
    """Events/s of plain SimPy: ``processes`` coroutines each yielding ``timeouts`` timeouts.

    Every process costs timeouts + 2 events (its Initialize, its timeouts and
    its own completion), all processed by ``Environment.step``, exactly what
    the simulator's events go through. Staggered delays keep the event heap
    as mixed as a real run's rather than one long tie. Returns (rate, events).
    """
    env = simpy.Environment()

    def proc(delay: float) -> simpy.events.ProcessGenerator:
        for _ in range(timeouts):
            yield env.timeout(delay)

    for k in range(processes):
        env.process(proc(1.0 + k / processes))
    events = processes * (timeouts + 2)
    start = time.perf_counter()
    env.run()
    return events / (time.perf_counter() - start), events


def run_case(algo: str, workers: int, iterations: int) -> dict[str, Any]:
    """Simulate one case end to end and return its figures (bare rate filled in by main)."""
    scenario = scenario_for(algo, workers, iterations)
    start = time.perf_counter()
    result = simulate(scenario)
    wall = time.perf_counter() - start
    m = result.metrics
    events = int(m["events"])
    return {
        "algo": algo,
        "workers": workers,
        "iterations": iterations,
        "wall_s": wall,
        "sim_run_s": float(m["wall_time_s"]),
        "events": events,
        "events_per_s": events / wall,
        "wall_per_worker_iteration_us": wall / (workers * iterations) * 1e6,
        "events_per_worker_iteration": events / (workers * iterations),
        "simulated_time_s": float(m["simulated_time_s"]),
    }


def loglog_slope(sizes: Sequence[float], walls: Sequence[float]) -> float | None:
    """Least-squares slope of log(wall) on log(size); None with fewer than two sizes."""
    if len(set(sizes)) < 2:
        return None
    slope, _ = np.polyfit(np.log(sizes), np.log(walls), 1)
    return float(slope)


def _table(cases: list[dict[str, Any]], slopes: dict[str, float | None]) -> Table:
    table = Table(title="Simulator scale (wall = plan + cluster + SimPy run + metrics)")
    for col in (
        "algo",
        "workers",
        "iters",
        "wall s",
        "events",
        "events/s",
        "vs bare",
        "µs/(w·it)",
    ):
        table.add_column(col, justify="left" if col == "algo" else "right", no_wrap=True)
    for c in cases:
        table.add_row(
            c["algo"],
            str(c["workers"]),
            str(c["iterations"]),
            f"{c['wall_s']:.2f}",
            f"{c['events']:,}",
            f"{c['events_per_s']:,.0f}",
            f"{c['ratio_to_bare']:.1%}",
            f"{c['wall_per_worker_iteration_us']:.1f}",
        )
    shown = ", ".join(f"{a} {s:.2f}" if s is not None else f"{a} n/a" for a, s in slopes.items())
    table.caption = f"log-log slope, wall vs workers × iterations, 1 = linear: {shown}"
    return table


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the grid, print progress, a table and the JSON line; return the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=_ints, default=list(WORKERS), help="e.g. 16,64,256")
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--algos", default=",".join(ALGOS), help="comma-separated")
    parser.add_argument(
        "--bare-timeouts",
        type=int,
        default=400,
        help="timeouts per process of the bare SimPy loop (500 processes)",
    )
    args = parser.parse_args(argv)
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    grid = [(a, w) for a in algos for w in args.workers]

    cases: list[dict[str, Any]] = []
    bare_rates: list[float] = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task("warm-up", total=len(grid))
        for algo in algos:  # one-off import and first-call costs must not land on case one
            simulate(scenario_for(algo, 2, 3))
        for algo, workers in grid:
            progress.update(task, description=f"bare SimPy before {algo} x{workers}")
            bare, _ = bare_simpy_rate(timeouts=args.bare_timeouts)
            bare_rates.append(bare)
            progress.update(
                task, description=f"{algo} {workers} workers x {args.iterations} iterations"
            )
            case = run_case(algo, workers, args.iterations)
            case["bare_simpy_events_per_s"] = bare
            case["ratio_to_bare"] = case["events_per_s"] / bare
            cases.append(case)
            progress.advance(task)

    slopes: dict[str, float | None] = {}
    for algo in algos:
        mine = [c for c in cases if c["algo"] == algo]
        slopes[algo] = loglog_slope(
            [c["workers"] * c["iterations"] for c in mine], [c["wall_s"] for c in mine]
        )
    wall_1024 = next(
        (c["wall_s"] for c in cases if c["algo"] == "sync_ps" and c["workers"] == 1024), None
    )
    report: dict[str, Any] = {
        "cases": cases,
        "bare_simpy_events_per_s": statistics.median(bare_rates) if bare_rates else None,
        "loglog_slope": slopes,
        "wall_1024_sync_ps_s": wall_1024,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "simpy": simpy.__version__,
        },
    }
    # Piped output (CI logs, the test) gets a width that fits the table.
    out = Console(width=None if sys.stdout.isatty() else 110)
    out.print(_table(cases, slopes))
    out.print(
        f"bare SimPy: {report['bare_simpy_events_per_s']:,.0f} events/s (median over cases)",
        highlight=False,
    )
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
