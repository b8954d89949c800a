"""How close can any prediction come? The noise floor of `pslab validate` on this machine.

A validation measures every scenario once. Between validations the same scenario, with the
same code, measures differently: the machine moves between a cheap and a dear state over
minutes (docs/calibration.md, "One calibration is one moment"), and each run has its own
scatter on top. This experiment takes several recorded validations (the directories
``pslab validate -o DIR`` writes, one ``compare.json`` per scenario) and splits the
measured iteration times, in logs, into

    log t[s, v] = a[s] + b[v] + e[s, v]

a scenario's typical time ``a``, the moment's factor ``b`` (shared by every scenario of
validation ``v``) and the rest ``e``, fitted by alternating means over the scenarios each
validation has.

Two *oracles* predict from that split, and bound what a model can reach:

- *in-sample*: exp(a + b) with a and b fitted on every run, the one scored included. No
  prediction made before a run knows more; its error is the run's own scatter.
- *leave-one-out*: a[s] from the scenario's other validations, b[v] from the validation's
  other scenarios, both fitted without the run scored: the best a model could do that
  knew every scenario perfectly from other moments and read the moment from the other
  scenarios. A model sees neither.

The model's own error, log(predicted / measured), splits the same way into a bias per
scenario (a mechanism the model lacks or gets wrong), a factor per validation (the
calibration against the moment) and the rest. Predictions are those recorded in each
``compare.json``; ``--replay`` makes them again with this code from each run's
``replay/`` files (what ``pslab compare --replay`` does).

Prints the tables and, as its last line, one JSON object with every figure.
Usage: ``python -m experiments.noise_floor runs/val3 runs/val4 ... [--replay] [--bound 12]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from experiments.report import new_table, present, rounded

# (validation, scenario) -> (measured seconds, predicted seconds)
Runs = dict[tuple[str, str], tuple[float, float]]


def replayed_prediction(run: Path) -> float:
    """The iteration time this code predicts from a compare's recorded inputs alone."""
    from pslab.profile import Profile
    from pslab.scenario import load_scenario
    from pslab_cli.comparing import REPLAY, predict

    scenario = load_scenario(run / REPLAY / "scenario.yaml")
    metrics, _ = predict(scenario, Profile.load(run / REPLAY / "profile.yaml"))
    return float(metrics["iteration_time_s"])


def load_runs(validations: Sequence[Path], replay: bool = False, workers: int = 2) -> Runs:
    """Every scenario's measured and predicted iteration time in each validation."""
    found: list[tuple[str, str, Path, dict[str, Any]]] = []
    for v in validations:
        for path in sorted(v.glob("*/compare.json")):
            report = json.loads(path.read_text())
            found.append((str(v), path.parent.name, path.parent, report))
    if not found:
        raise SystemExit("no */compare.json under the validation directories given")
    predicted = [r["metrics"]["iteration_time_s"]["predicted"] for *_, r in found]
    if replay:
        with ProcessPoolExecutor(workers) as pool:
            predicted = list(pool.map(replayed_prediction, [d for _, _, d, _ in found]))
    return {
        (v, s): (float(r["metrics"]["iteration_time_s"]["measured"]), float(p))
        for (v, s, _, r), p in zip(found, predicted, strict=True)
    }


def two_way(y: np.ndarray, sweeps: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Row effects ``a`` and column effects ``b`` (mean zero) of ``y`` ~ a[s] + b[v], by
    alternating means over the cells present (NaN: missing). Least squares for a complete
    table; for a ragged one, the same fixed point."""
    a = np.nanmean(y, axis=1)
    b = np.zeros(y.shape[1])
    for _ in range(sweeps):
        b = np.nanmean(y - a[:, None], axis=0)
        b -= np.nanmean(b)
        a = np.nanmean(y - b[None, :], axis=1)
    return a, b


def leave_one_out(y: np.ndarray) -> np.ndarray:
    """Each cell predicted by the two-way fit of every other cell."""
    out = np.full(y.shape, np.nan)
    for i, j in zip(*np.nonzero(~np.isnan(y)), strict=True):
        held = y.copy()
        held[i, j] = np.nan
        if np.isnan(held[i]).all() or np.isnan(held[:, j]).all():
            continue  # nothing else to learn this scenario or this moment from
        a, b = two_way(held)
        out[i, j] = a[i] + b[j]
    return out


def pct(log_ratio: np.ndarray | float) -> Any:
    """A log ratio as a signed percentage error."""
    return 100 * (np.exp(log_ratio) - 1)


def _natural(name: str) -> tuple[str, int]:
    """val2 before val10."""
    stem = name.rstrip("0123456789")
    return stem, int(name[len(stem) :] or 0)


def split(runs: Runs, bound_pct: float) -> dict[str, Any]:
    """The noise floor and the model's error, per validation and per scenario."""
    validations = sorted({v for v, _ in runs}, key=_natural)
    scenarios = sorted({s for _, s in runs})
    shape = (len(scenarios), len(validations))
    y, p = np.full(shape, np.nan), np.full(shape, np.nan)
    for (v, s), (measured, predicted) in runs.items():
        i, j = scenarios.index(s), validations.index(v)
        y[i, j], p[i, j] = math.log(measured), math.log(predicted)
    a, b = two_way(y)
    oracle = a[:, None] + b[None, :]
    loo = leave_one_out(y)
    model = p - y  # the model's log error
    bias, calib = two_way(model)  # per scenario, per validation (mean zero)
    rest = model - bias[:, None] - calib[None, :]

    def errs(pred: np.ndarray, j: int) -> list[float]:
        col = np.abs(pct(pred[:, j] - y[:, j]))
        return [float(x) for x in col if not math.isnan(x)]

    per_validation = []
    for j, v in enumerate(validations):
        row: dict[str, Any] = {"validation": v, "moment_pct": float(pct(b[j]))}
        for name, pred in (("model", p), ("oracle", oracle), ("leave_one_out", loo)):
            e = errs(pred, j)
            row[name] = {"median_pct": statistics.median(e), "max_pct": max(e)}
        row["model_calibration_pct"] = float(pct(calib[j]))
        per_validation.append(row)
    per_scenario = []
    for i, s in enumerate(scenarios):
        times = [math.exp(x) for x in y[i] if not math.isnan(x)]
        per_scenario.append(
            {
                "scenario": s,
                "measured_min_s": min(times),
                "measured_max_s": max(times),
                "scatter_pct": float(100 * np.nanstd(y[i] - oracle[i])),
                "model_bias_pct": float(pct(bias[i])),
            }
        )

    def met(name: str) -> int:
        return sum(r[name]["max_pct"] <= bound_pct for r in per_validation)

    def sd(x: np.ndarray) -> float:
        return float(100 * np.sqrt(np.nanmean(x**2)))

    return {
        "validations": len(validations),
        "scenarios": len(scenarios),
        "bound_pct": bound_pct,
        "per_validation": per_validation,
        "per_scenario": per_scenario,
        "moment_sd_pct": sd(b),
        "scatter_sd_pct": sd(y - oracle),
        "model_overall_pct": float(pct(np.nanmean(bias))),
        "model_split_sd_pct": {
            "scenario_bias": sd(bias - np.nanmean(bias)),
            "calibration": sd(calib),
            "rest": sd(rest),
        },
        "all_within_bound": {name: met(name) for name in ("model", "oracle", "leave_one_out")},
        "median_of_medians_pct": {
            name: statistics.median(r[name]["median_pct"] for r in per_validation)
            for name in ("model", "oracle", "leave_one_out")
        },
    }


def tables(console: Any, summary: dict[str, Any]) -> None:
    bound = summary["bound_pct"]
    t = new_table(
        f"median / max |iteration-time error| per validation (bound {bound:g} %)",
        ["validation", "moment", "model", "leave-one-out", "oracle", "model's calibration"],
        left=("validation",),
    )

    def cell(error: dict[str, float]) -> str:
        return f"{error['median_pct']:.1f} / {error['max_pct']:.1f} %"

    for r in summary["per_validation"]:
        t.add_row(
            Path(r["validation"]).name,
            f"{r['moment_pct']:+.1f} %",
            cell(r["model"]),
            cell(r["leave_one_out"]),
            cell(r["oracle"]),
            f"{r['model_calibration_pct']:+.1f} %",
        )
    console.print(t)
    s = new_table(
        "per scenario: measured range, scatter about the split, the model's bias",
        ["scenario", "measured", "scatter sd", "model bias"],
        left=("scenario",),
    )
    for r in sorted(summary["per_scenario"], key=lambda r: -abs(r["model_bias_pct"])):
        s.add_row(
            r["scenario"],
            f"{1e3 * r['measured_min_s']:.1f}-{1e3 * r['measured_max_s']:.1f} ms",
            f"{r['scatter_pct']:.1f} %",
            f"{r['model_bias_pct']:+.1f} %",
        )
    console.print(s)
    split_sd = summary["model_split_sd_pct"]
    within = summary["all_within_bound"]
    n = summary["validations"]
    overall = summary["model_overall_pct"]
    console.print(
        f"moments: sd {summary['moment_sd_pct']:.1f} %; a run's scatter: sd "
        f"{summary['scatter_sd_pct']:.1f} %. The model's error: {overall:+.1f} % overall, "
        f"sd {split_sd['scenario_bias']:.1f} % between scenarios, "
        f"{split_sd['calibration']:.1f} % between validations, {split_sd['rest']:.1f} % the rest.\n"
        f"Validations with every scenario within {bound:g} %: model {within['model']}/{n}, "
        f"leave-one-out {within['leave_one_out']}/{n}, in-sample oracle {within['oracle']}/{n}."
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("validations", nargs="+", type=Path, help="directories of pslab validate -o")
    ap.add_argument("--replay", action="store_true", help="predict again with this code")
    ap.add_argument("--bound", type=float, default=12.0, help="every scenario within (%%)")
    args = ap.parse_args(argv)

    def experiment(console: Any, _progress: Any) -> dict[str, Any]:
        summary = split(load_runs(args.validations, args.replay), args.bound)
        tables(console, summary)
        return rounded(summary, 4)

    settings = {"validations": [str(v) for v in args.validations], "replay": args.replay}
    return present("noise floor of pslab validate", settings, experiment, 120)


if __name__ == "__main__":
    raise SystemExit(main())
