"""``pslab sweep``: a grid of simulations, in parallel processes, plotted per variant.

The answer to "which variant for my cluster": vary the algorithm and the
cluster, read throughput and (with a ``numerics`` section) time to the
target accuracy side by side.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from pslab.scenario import ScenarioError, load_scenario, parse_override
from pslab.trace import write_json_atomic
from sim.run import simulate

FIGURES = ("throughput_samples_per_s", "iteration_time_s", "time_to_target_s", "test_accuracy")


def parse_vary(texts: list[str]) -> list[tuple[str, list[Any]]]:
    """``key.path=v1,v2,...`` → (key, [values]); values parse as YAML scalars."""
    axes = []
    for text in texts:
        key, raw = parse_override(text)
        values = [yaml.safe_load(v) for v in str(raw).split(",")] if raw != "" else []
        if not values:
            raise ScenarioError(f"--vary {text}: give at least one value after '='")
        axes.append((key, values))
    return axes


def _run_point(path: str, overrides: list[str]) -> dict[str, Any]:
    scenario = load_scenario(Path(path), overrides)
    m = simulate(scenario, Path(path).parent).metrics
    return {k: m.get(k) for k in FIGURES}


def sweep(
    path: Path, vary: list[str], base: list[str], out_dir: Path, console: Console
) -> dict[str, Any]:
    axes = parse_vary(vary)
    load_scenario(path, base)  # a bad base scenario fails here, once, not in every process
    points = [
        dict(zip([k for k, _ in axes], combo, strict=True))
        for combo in itertools.product(*[vals for _, vals in axes])
    ]
    for point in points:  # every grid point must be a valid scenario before any runs
        load_scenario(path, base + [f"{k}={v}" for k, v in point.items()])
    results: list[dict[str, Any] | None] = [None] * len(points)
    with (
        Progress(console=console, transient=True) as bar,
        # spawn, not fork: the parent may hold gRPC and torch threads, and a forked child
        # inherits their locks mid-flight
        ProcessPoolExecutor(os.cpu_count() or 1, mp_context=get_context("spawn")) as pool,
    ):
        task = bar.add_task("simulating the grid", total=len(points))
        futures = {
            pool.submit(_run_point, str(path), base + [f"{k}={v}" for k, v in p.items()]): i
            for i, p in enumerate(points)
        }
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.advance(task)
    rows = [{**p, **r} for p, r in zip(points, results, strict=True) if r is not None]
    report = {"scenario": str(path), "vary": [k for k, _ in axes], "points": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "sweep.json", report)
    _plot(rows, [k for k, _ in axes], out_dir / "sweep.png")
    return report


def sweep_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"sweep: {report['scenario']}")
    for key in report["vary"]:
        table.add_column(key)
    for key in FIGURES:
        table.add_column(key, justify="right")
    for row in report["points"]:
        cells = [str(row[k]) for k in report["vary"]]
        cells += ["—" if row[k] is None else f"{row[k]:.4g}" for k in FIGURES]
        table.add_row(*cells)
    return table


def _plot(rows: list[dict[str, Any]], keys: list[str], path: Path) -> None:
    """Throughput and time to target per grid point, grouped by the first varied key."""
    panels = [
        f for f in ("throughput_samples_per_s", "time_to_target_s") if any(r[f] for r in rows)
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    first, rest = keys[0], keys[1:]
    groups = sorted({str(r[first]) for r in rows}, key=[str(r[first]) for r in rows].index)
    series = sorted({tuple(str(r[k]) for k in rest) for r in rows})
    width = 0.8 / max(len(series), 1)
    for ax, figure in zip(axes[0], panels, strict=True):
        for j, s in enumerate(series):
            xs, ys = [], []
            for i, g in enumerate(groups):
                for r in rows:
                    if str(r[first]) == g and tuple(str(r[k]) for k in rest) == s:
                        xs.append(i + j * width)
                        ys.append(r[figure] or 0.0)
            label = ", ".join(f"{k}={v}" for k, v in zip(rest, s, strict=True)) or None
            ax.bar(xs, ys, width=width, label=label)
        ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(groups))], groups)
        ax.set_xlabel(first)
        ax.set_ylabel(figure)
        if rest:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
