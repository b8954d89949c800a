"""``pslab compare`` and ``pslab validate``: predict the run the emulator makes, then make it.

The prediction simulates the *emulated platform* (this machine, from its
calibration profile), never the scenario's nominal cluster, and no tolerance
or factor is tuned per scenario: where the two disagree, the model is wrong.
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from grpc_ps.calibrate import profile_for
from grpc_ps.load import free_cores
from pslab import plots
from pslab.compare import compare_metrics, compare_ops, op_durations
from pslab.profile import Profile, Speed
from pslab.results import read_metrics, write_results, write_text_atomic
from pslab.scenario import Scenario, ScenarioError, dump_scenario, load_scenario
from pslab.topology import lay_out
from pslab.trace import Trace, load_spans, write_json_atomic
from sim.run import simulate_emulated


class Run(Protocol):
    """What a launch returns: its metrics and its whole trace (the file on disk is sampled)."""

    metrics: dict[str, Any]
    trace: Trace


Measure = Callable[[Scenario, Path], Run]  # emulate, writing results to the path


REPLAY = "replay"  # beside compare.json: the files a prediction was made from


def _load_run(run_dir: Path) -> tuple[dict[str, Any], Trace]:
    return read_metrics(run_dir), load_spans(json.loads((run_dir / "trace.json").read_text()))


def with_run_machine(profile: Profile, measured: dict[str, Any]) -> Profile:
    """The profile as the machine was during the measured run: the cores it had (what
    other jobs took, sampled through the run); a run without the figure keeps the
    calibration's. The cores' speed is reported beside it, not applied (see
    :mod:`pslab.profile`)."""
    load = measured.get("machine_load")
    if load:
        cores = free_cores(load, profile.machine.cores)
        profile = profile.model_copy(update={"effective_cores": cores})
    return profile


def record_inputs(out_dir: Path, simulated: Scenario, profile: Profile) -> None:
    """What a prediction is a function of, so ``--replay`` can make it again: the
    scenario as simulated (laid out: a graph's workers are its hosts'), the profile
    with the run's free cores (every machine figure the simulator uses comes from it,
    through the platform), and which pslab made it."""
    d = out_dir / REPLAY
    d.mkdir(parents=True, exist_ok=True)
    write_text_atomic(d / "scenario.yaml", dump_scenario(simulated))
    profile.save(d / "profile.yaml")
    write_json_atomic(
        d / "pslab.json",
        {
            "version": version("pslab"),
            "python": platform.python_version(),
            "network": simulated.emulation.network,
        },
    )


def predict(simulated: Scenario, profile: Profile) -> tuple[dict[str, Any], Trace]:
    result = simulate_emulated(simulated, profile)
    return result.metrics, result.trace


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
    The prediction is made after the run, with the cores that run had.
    """
    scenario, _ = lay_out(scenario)  # a graph's workers are its hosts', not topology.nodes
    out_dir.mkdir(parents=True, exist_ok=True)
    if sim_dir is None:  # calibrate first: measuring the machine while the run uses it would lie
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("calibrating", total=1.0)
            profile = profile_for(
                scenario, lambda what, frac: bar.update(task, completed=frac, description=what)
            )
    runs: list[float] = []
    if measured_dir is None:
        run, runs = measure_median(scenario, out_dir, measure, repeat)
        measured, m_trace = run.metrics, run.trace
    else:
        measured, m_trace = _load_run(measured_dir)
    calibrated = None
    if sim_dir is not None:
        predicted, p_trace = _load_run(sim_dir)
    else:
        calibrated = profile
        profile = with_run_machine(profile, measured)
        record_inputs(out_dir, scenario, profile)
        predicted, p_trace = predict(scenario, profile)
        write_results(out_dir / "sim", scenario, predicted, p_trace)
    return _report(
        scenario, out_dir, predicted, p_trace, measured, m_trace, runs, calibrated=calibrated
    )


def replay(run: Path, out_dir: Path) -> dict[str, Any]:
    """Predict again from what an earlier compare recorded in ``run`` alone, and compare
    with its measured run; the report says whether the prediction came out identical."""
    d = run / REPLAY
    if not (d / "scenario.yaml").exists() or not (d / "profile.yaml").exists():
        raise ScenarioError(f"{run}: no {REPLAY}/scenario.yaml and profile.yaml to replay")
    simulated = load_scenario(d / "scenario.yaml")
    profile = Profile.load(d / "profile.yaml")
    predicted, p_trace = predict(simulated, profile)
    measured, m_trace = _load_run(run / "measured")
    runs = json.loads((run / "compare.json").read_text()).get("measured_runs_s", [])
    recorded = read_metrics(run / "sim")["iteration_time_s"]
    same = {
        "recorded_iteration_time_s": recorded,
        "identical": recorded == predicted["iteration_time_s"],
    }
    return _report(simulated, out_dir, predicted, p_trace, measured, m_trace, runs, same)


def _report(
    scenario: Scenario,
    out_dir: Path,
    predicted: dict[str, Any],
    p_trace: Trace,
    measured: dict[str, Any],
    m_trace: Trace,
    runs: list[float],
    replayed: dict[str, Any] | None = None,
    calibrated: Profile | None = None,
) -> dict[str, Any]:
    """``calibrated``: the profile as measured, whose speed the run's is set beside."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run = scenario.run
    p_ops = predicted.get("op_time_s") or op_durations(p_trace, run.warmup, run.iterations)
    report: dict[str, Any] = {
        "scenario": scenario.name,
        "metrics": compare_metrics(predicted, measured),
        "ops": compare_ops(p_ops, m_trace, run.warmup, run.iterations),
    }
    if "iteration_time_s_phases" in predicted:
        report["predicted_phase_range_s"] = predicted["iteration_time_s_phases"]
    load = measured.get("machine_load")
    if load:
        report["machine_load"] = load
    speed = measured.get("machine_speed")
    if speed:
        report["machine_speed"] = speed
        if calibrated is not None and calibrated.speed is not None:
            run_speed = Speed.model_validate(speed)
            report["speed_vs_calibration"] = {
                "ratio": run_speed.loops_per_cpu_s / calibrated.speed.loops_per_cpu_s,
                "beyond_errors": run_speed.differs_from(calibrated.speed),
            }
    if predicted.get("cpu_time_s") and measured.get("cpu_time_s"):
        # where an error comes from: the CPU the model charged, or how it overlapped
        n = scenario.topology.n_workers
        # the simulated CPU covers every iteration; the measured, the steady window in which
        # all workers were in their counted iterations (grpc_ps.load.steady_window)
        window = (measured.get("machine_load") or {}).get("seconds")
        iteration = measured.get("iteration_time_s")
        per = {"predicted": n * run.iterations, "measured": n * run.iterations}
        if window and iteration:
            per["measured"] = n * window / iteration
        report["cpu_s_per_worker_iteration"] = {
            side: metrics["cpu_time_s"] / per[side]
            for side, metrics in (("predicted", predicted), ("measured", measured))
        }
        by_role = _cpu_by_role(predicted, measured, per)
        if by_role:
            report["cpu_s_per_worker_iteration"]["by_role"] = by_role
    if len(runs) > 1:
        p = float(predicted["iteration_time_s"])
        report["measured_runs_s"] = runs
        report["measured_range_s"] = [min(runs), max(runs)]
        report["prediction_in_range"] = min(runs) <= p <= max(runs)
    if replayed is not None:
        report["replay"] = replayed
    write_json_atomic(out_dir / "compare.json", report)
    middle = (run.warmup + run.iterations - 1) // 2
    plots.timeline(p_trace, m_trace, middle, out_dir / "timeline.png")
    plots.breakdown(predicted, measured, out_dir / "breakdown.png")
    return report


def measure_median(
    scenario: Scenario, out_dir: Path, measure: Measure, repeat: int
) -> tuple[Run, list[float]]:
    """Emulate ``repeat`` times; the run of median iteration time (its files copied to
    ``out_dir/measured``), and every run's iteration time."""
    if repeat <= 1:
        return measure(scenario, out_dir / "measured"), []
    dirs = [out_dir / "measured-runs" / str(k) for k in range(1, repeat + 1)]
    results = [measure(scenario, d) for d in dirs]
    times = [float(r.metrics["iteration_time_s"]) for r in results]
    median = sorted(range(repeat), key=times.__getitem__)[repeat // 2]
    shutil.copytree(dirs[median], out_dir / "measured", dirs_exist_ok=True)
    return results[median], times


def _cpu_by_role(
    predicted: dict[str, Any], measured: dict[str, Any], per: dict[str, float]
) -> dict[str, dict[str, float]]:
    """Each kind of role's CPU per worker-iteration, predicted and measured: the workers
    summed as one, each server and communicator on its own, so the parts add up to the
    total and a cost the model misses shows in the role that pays it."""
    out: dict[str, dict[str, float]] = {}
    for side, metrics in (("predicted", predicted), ("measured", measured)):
        for name, seconds in (metrics.get("cpu_time_by_process_s") or {}).items():
            role = "workers" if name.startswith("worker-") else name
            entry = out.setdefault(role, {"predicted": 0.0, "measured": 0.0})
            entry[side] += seconds / per[side]
    return out


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
    table.caption = "\n".join(report_notes(report))
    return table


def report_notes(report: dict[str, Any]) -> list[str]:
    """The lines a reader needs to judge one comparison: the runs' spread, the load."""
    notes = []
    if "measured_range_s" in report:
        lo, hi = report["measured_range_s"]
        inside = "inside" if report["prediction_in_range"] else "outside"
        notes.append(
            f"{len(report['measured_runs_s'])} measured runs took {lo:.4g}-{hi:.4g} s per "
            f"iteration; the prediction is {inside} that range (error above: the median run)"
        )
    load = report.get("machine_load")
    if load:
        notes.append(
            f"other jobs took {load['other_cores']:.2f} of {load['cores']} cores during the run "
            f"(per 0.5 s: {load['other_cores_min']:.2f}-{load['other_cores_max']:.2f})"
        )
        if load["unsteady"]:
            notes.append("warning: the other jobs' share moved a lot during the run")
    ratio = report.get("speed_vs_calibration")
    if ratio:
        how = (
            "beyond both speeds' errors; the figures are not rescaled by it"
            if ratio["beyond_errors"]
            else "within both speeds' errors"
        )
        notes.append(f"a CPU second did {ratio['ratio']:.2f}x the calibration's work ({how})")
    cpu = report.get("cpu_s_per_worker_iteration")
    if cpu:
        notes.append(
            f"CPU per worker-iteration, every process's: predicted {cpu['predicted'] * 1e3:.3g} "
            f"ms, measured {cpu['measured'] * 1e3:.3g} ms"
        )
        if cpu.get("by_role"):
            parts = [
                f"{role} {e['predicted'] * 1e3:.3g}/{e['measured'] * 1e3:.3g}"
                for role, e in cpu["by_role"].items()
            ]
            notes.append("  by role, predicted/measured ms: " + ", ".join(parts))
    if "replay" in report:
        same = "identical to" if report["replay"]["identical"] else "DIFFERENT from"
        notes.append(f"replayed prediction {same} the recorded one")
    return notes


def validate(
    directory: Path,
    out_dir: Path,
    measure: Measure,
    console: Console | None = None,
    repeat: int = 1,
    failures: tuple[type[Exception], ...] = (),
) -> dict[str, Any]:
    """Compare every scenario of a suite; the summary the issue's acceptance reads.

    A scenario this machine cannot emulate (netns without root) is skipped and named. One
    whose compare raises one of ``failures`` (an emulation that died) is named with its
    error, and the suite goes on: one flaky run should not cost the other scenarios'."""
    rows = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    per_scenario: dict[str, dict[str, Any]] = {}
    table = Table(title=f"validation: {directory}")
    for col in ("scenario", "iteration time error", "overlap abs error", "measured runs"):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for path in sorted(directory.glob("*.yaml")):
        scenario = load_scenario(path)
        why = cannot_emulate(scenario)
        if why:
            skipped[scenario.name] = why
            if console is not None:
                console.print(f"skipped {scenario.name}: {why}", highlight=False, markup=False)
            continue
        try:
            report = compare(scenario, out_dir / path.stem, measure, console=console, repeat=repeat)
        except failures as e:
            failed[scenario.name] = str(e)
            table.add_row(scenario.name, "failed", "", "")
            if console is not None:
                console.print(f"{scenario.name} failed: {e}", highlight=False, markup=False)
            continue
        it = report["metrics"]["iteration_time_s"]["error_pct"]
        ov = report["metrics"]["overlap_ratio"]["abs_error"]
        rows.append((scenario.name, it, ov))
        runs = report.get("measured_runs_s") or [report["metrics"]["iteration_time_s"]["measured"]]
        entry: dict[str, Any] = {
            "error_pct": it,
            "overlap_abs_error": ov,
            "measured_runs_s": runs,
            "spread_pct": 100.0 * (max(runs) - min(runs)) / statistics.median(runs),
            "prediction_in_range": report.get("prediction_in_range"),
            "other_cores": report.get("machine_load", {}).get("other_cores"),
            "cpu_s_per_worker_iteration": report.get("cpu_s_per_worker_iteration"),
            "speed_vs_calibration": report.get("speed_vs_calibration", {}).get("ratio"),
        }
        per_scenario[scenario.name] = entry
        spread = f"{min(runs) * 1e3:.4g}-{max(runs) * 1e3:.4g} ms" if len(runs) > 1 else "1"
        table.add_row(scenario.name, f"{it:+.1f}%", f"{ov:+.3f}", spread)
    errors = [abs(r[1]) for r in rows]
    summary = {
        "scenarios": len(rows),
        "median_abs_error_pct": statistics.median(errors) if errors else None,
        "max_abs_error_pct": max(errors) if errors else None,
        "max_overlap_abs_error": max((abs(r[2]) for r in rows), default=None),
        "machine": machine_moment(per_scenario),
        "per_scenario": per_scenario,
        "skipped": skipped,
        "failed": failed,
    }
    return {"table": table, "summary": summary}


def machine_moment(per_scenario: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """What the machine was like through a validation, over its scenarios (medians): the
    CPU its processes spent against the CPU predicted, and the speed probe's reading against
    the calibration's. Every prediction moves with them together: validation 17 (7
    December) spent 1.25x the predicted CPU where runs 15 and 16 spent 1.11x, and 24 of its
    28 scenarios came out under-predicted, sync_ps-2shards at -17.9 against +0.4 and +6.1 %.
    So the summary says which moment a validation's errors come from (None: not measured)."""
    cpu, speed = [], []
    for entry in per_scenario.values():
        used = entry.get("cpu_s_per_worker_iteration") or {}
        if used.get("predicted") and used.get("measured") is not None:
            cpu.append(used["measured"] / used["predicted"])
        if entry.get("speed_vs_calibration") is not None:
            speed.append(entry["speed_vs_calibration"])
    return {
        "cpu_measured_over_predicted": statistics.median(cpu) if cpu else None,
        "speed_vs_calibration": statistics.median(speed) if speed else None,
    }


def machine_note(moment: dict[str, float | None]) -> str | None:
    """``machine_moment`` in words, where it was measured."""
    cpu, speed = moment.get("cpu_measured_over_predicted"), moment.get("speed_vs_calibration")
    parts = []
    if cpu is not None:
        parts.append(f"the runs' processes spent {cpu:.2f}x the CPU predicted")
    if speed is not None:
        parts.append(f"the speed probe read {speed:.2f}x the calibration's")
    if not parts:
        return None
    return (
        f"over the scenarios (medians), {' and '.join(parts)}: a moment the calibration did "
        "not see moves every prediction the same way"
    )


def cannot_emulate(scenario: Scenario) -> str | None:
    """Why this machine cannot emulate ``scenario`` (netns without root), else None."""
    from grpc_ps import netns_launch

    if scenario.emulation.network != "netns":
        return None
    try:
        netns_launch.check(scenario)
    except ScenarioError as err:
        return str(err)
    return None
