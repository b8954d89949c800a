"""``pslab compare`` and ``pslab validate``: predict the run the emulator makes, then make it.

The prediction simulates the *emulated platform* (this machine, from its
calibration profile), never the scenario's nominal cluster, and no tolerance
or factor is tuned per scenario: where the two disagree, the model is wrong.
"""

from __future__ import annotations

import json
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from grpc_ps.calibrate import profile_for
from pslab import plots
from pslab.compare import compare_metrics, compare_ops, op_durations
from pslab.results import read_metrics, write_results
from pslab.scenario import Scenario, load_scenario
from pslab.trace import Trace, load_spans, write_json_atomic
from sim.run import simulate_emulated

Measure = Callable[[Scenario, Path], dict[str, Any]]  # emulate, writing results to the path


def _load_run(run_dir: Path) -> tuple[dict[str, Any], Trace]:
    return read_metrics(run_dir), load_spans(json.loads((run_dir / "trace.json").read_text()))


def compare(
    scenario: Scenario,
    out_dir: Path,
    measure: Measure,
    sim_dir: Path | None = None,
    measured_dir: Path | None = None,
    console: Console | None = None,
    repeat: int = 1,
) -> dict[str, Any]:
    """Predict and measure (or read earlier runs), write compare.json and the PNGs.

    ``repeat``: emulate that many times and compare with the run of median
    iteration time. A 10 ms-iteration run on a shared 2-core machine varies
    by 10–24 % from one launch to the next; one run's error is partly noise.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if sim_dir is None:  # calibrate first: measuring the machine while the run uses it would lie
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("calibrating", total=1.0)
            profile = profile_for(
                scenario, lambda what, frac: bar.update(task, completed=frac, description=what)
            )
    runs: list[float] = []
    if measured_dir is None:
        measured_dir, runs = measure_median(scenario, out_dir, measure, repeat)
    measured, m_trace = _load_run(measured_dir)
    if sim_dir is not None:
        predicted, p_trace = _load_run(sim_dir)
    else:
        result = simulate_emulated(scenario, profile)
        predicted, p_trace = result.metrics, result.trace
        write_results(out_dir / "sim", scenario, predicted, p_trace)
    run = scenario.run
    p_ops = predicted.get("op_time_s") or op_durations(p_trace, run.warmup, run.iterations)
    report = {
        "scenario": scenario.name,
        "metrics": compare_metrics(predicted, measured),
        "ops": compare_ops(p_ops, m_trace, run.warmup, run.iterations),
    }
    if "iteration_time_s_phases" in predicted:
        report["predicted_phase_range_s"] = predicted["iteration_time_s_phases"]
    if len(runs) > 1:
        report["measured_runs_s"] = runs
    write_json_atomic(out_dir / "compare.json", report)
    middle = (run.warmup + run.iterations - 1) // 2
    plots.timeline(p_trace, m_trace, middle, out_dir / "timeline.png")
    plots.breakdown(predicted, measured, out_dir / "breakdown.png")
    return report


def measure_median(
    scenario: Scenario, out_dir: Path, measure: Measure, repeat: int
) -> tuple[Path, list[float]]:
    """Emulate ``repeat`` times; the run of median iteration time, and every run's."""
    if repeat <= 1:
        measure(scenario, out_dir / "measured")
        return out_dir / "measured", []
    dirs = [out_dir / "measured-runs" / str(k) for k in range(1, repeat + 1)]
    times = [float(measure(scenario, d)["iteration_time_s"]) for d in dirs]
    median = sorted(range(repeat), key=times.__getitem__)[repeat // 2]
    shutil.copytree(dirs[median], out_dir / "measured", dirs_exist_ok=True)
    return out_dir / "measured", times


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.1f}%" if pct else f"{value:.4g}"


def compare_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"predicted vs measured: {report['scenario']}")
    for col in ("metric", "predicted", "measured", "error"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, e in report["metrics"].items():
        error = f"{e['abs_error']:+.3f} abs" if "abs_error" in e else _fmt(e["error_pct"], pct=True)
        table.add_row(key, _fmt(e["predicted"]), _fmt(e["measured"]), error)
    for name, e in report["ops"].items():
        table.add_row(
            f"op {name} (s)", _fmt(e["predicted"]), _fmt(e["measured"]), _fmt(e["error_pct"], True)
        )
    return table


def validate(
    directory: Path,
    out_dir: Path,
    measure: Measure,
    console: Console | None = None,
    repeat: int = 1,
) -> dict[str, Any]:
    """Compare every scenario of a suite; the summary the issue's acceptance reads."""
    rows = []
    table = Table(title=f"validation: {directory}")
    for col in ("scenario", "iteration time error", "overlap abs error"):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for path in sorted(directory.glob("*.yaml")):
        scenario = load_scenario(path)
        report = compare(scenario, out_dir / path.stem, measure, console=console, repeat=repeat)
        it = report["metrics"]["iteration_time_s"]["error_pct"]
        ov = report["metrics"]["overlap_ratio"]["abs_error"]
        rows.append((scenario.name, it, ov))
        table.add_row(scenario.name, f"{it:+.1f}%", f"{ov:+.3f}")
    errors = [abs(r[1]) for r in rows]
    summary = {
        "scenarios": len(rows),
        "median_abs_error_pct": statistics.median(errors) if errors else None,
        "max_abs_error_pct": max(errors) if errors else None,
        "max_overlap_abs_error": max((abs(r[2]) for r in rows), default=None),
        "per_scenario": {name: {"error_pct": it, "overlap_abs_error": ov} for name, it, ov in rows},
    }
    return {"table": table, "summary": summary}
