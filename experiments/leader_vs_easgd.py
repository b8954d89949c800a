"""Leader SGD vs EASGD vs sync/async SGD on digits, with real SGD math on a simulated clock.

Teng et al. (NeurIPS 2019; code yunfei-teng/LSGD) claim Leader SGD reaches a
lower test error sooner than EASGD; their reviewers found the gains small.
The paper reports curves only, and no table of it was readable to us, so **no
number here is the paper's**. This script asks the question at toy scale: the
digits CNN (11,498 parameters) with 4 and 8 workers on nodes of 4 "GPUs", in
the simulator's numerics mode (the emulator's models, data shards, update
rules and server policies; the clock is simulated, the accuracy is real).

Why these settings:
- The pull strengths are the code's defaults, unscaled: c₁ = c₂ = 0.1 per
  communication. The periods are the code's two smallest settings,
  τ_l ∈ {1, 4} with τ_g = 4·τ_l (its sweep is τ_g ∈ {4, 16, 64}, τ_l = τ_g/4).
  What is scaled down is the rest: model, data, workers, and the budget of
  iterations (the code gives each run 12 minutes of wall clock).
- EASGD is the paper's baseline: synchronous, α = β/p with β = 0.43, and the
  same period as the local leader (τ = τ_l).
- Single leader: one group (the local and the global leader coincide).
  Multi-leader: max(2, n/4) groups, one per node at 8 workers; at 4 workers
  (one node) "one group per node" would equal the single leader, so the node
  is split into 2 groups of 2.
- The code's extra per-step pull towards the last leader copies (p₁/τ_l,
  p₂/τ_g) is not modelled (see pslab/algorithms/leader_sgd.py); neither are
  momentum and weight decay (plain SGD, lr 0.1 for every variant but
  async_ps, whose lr is 0.05 because at 0.1 the CNN diverges with 8 workers).
- Compute 4 ms per batch of 32 (lognormal, cv 0.2: stragglers), 1 ms load,
  1 Gb/s Ethernet between nodes (the paper's nodes were joined by Ethernet),
  12 GB/s PCIe inside a node: **illustrative** times, not measurements.
- The evaluated model is the average of the workers' parameters, as in the
  authors' code; a control with λ = 0 (no pull at all, same schedule) shows
  what the leader pull itself adds.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

PAPER_NUMBERS = (
    "not available: Teng et al. report test error vs wall-clock time as curves only and no "
    "table of theirs was readable to us; every figure here is this simulation's"
)
TEST_SET = 360  # digits test split (20 % of 1,797): one sample is 0.28 points of error


@dataclass(frozen=True)
class Settings:
    """Everything a grid point depends on besides variant, worker count and seed."""

    model: str = "digits_cnn"
    iterations: int = 120
    batch_size: int = 32
    lr: float = 0.1
    async_lr: float = 0.05
    pull: float = 0.1  # c₁ = c₂ (λ_local = λ_global), the code's default
    beta: float = 0.43  # EASGD: α = β / p
    loss_window: int = 10  # running-mean loss that picks the leader (the paper's CIFAR value)
    compute_ms: float = 4.0
    compute_cv: float = 0.2
    io_ms: float = 1.0
    inter_gbps: float = 1.0
    inter_latency_us: float = 50.0
    intra_gBps: float = 12.0
    intra_latency_us: float = 5.0
    targets: tuple[float, ...] = (0.9, 0.95)

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["illustrative"] = "compute, load and link times are illustrative, not measured"
        return d


@dataclass(frozen=True)
class Variant:
    """One line of the table: an algorithm section, less what depends on the worker count."""

    key: str
    label: str
    family: str  # baseline | easgd | leader | control
    tau_l: int | None = None
    groups: str | None = None  # "single" | "multi" (leader_sgd)
    synchronous: bool = True
    pull: bool = True

    def algorithm(self, s: Settings, n: int) -> dict[str, Any]:
        if self.key == "sync_ps":
            return {"name": "sync_ps", "lr": s.lr}
        if self.key == "async_ps":
            return {"name": "async_ps", "lr": s.async_lr}
        assert self.tau_l is not None
        if self.family == "easgd":
            return {
                "name": "easgd",
                "lr": s.lr,
                "tau": self.tau_l,
                "alpha": s.beta / n,
                "synchronous": True,
            }
        lam = s.pull if self.pull else 0.0
        return {
            "name": "leader_sgd",
            "lr": s.lr,
            "tau": self.tau_l,
            "tau_global": 4 * self.tau_l,
            "lambda_local": lam,
            "lambda_global": lam,
            "groups": 1 if self.groups == "single" else multi_groups(n),
            "synchronous": self.synchronous,
            "loss_window": s.loss_window,
        }


def multi_groups(n: int) -> int:
    """One group per node of 4, but at least 2: one group would be the single leader."""
    return max(2, n // 4)


def variants(tau_ls: Sequence[int]) -> list[Variant]:
    """Baselines, then per period EASGD and the four leader versions, then the λ = 0 control."""
    out = [
        Variant("sync_ps", "sync PS (BSP)", "baseline"),
        Variant("async_ps", "async PS (ASP)", "baseline"),
    ]
    for t in tau_ls:
        out.append(Variant(f"easgd_tl{t}", f"EASGD sync τ={t}", "easgd", t))
        for groups in ("single", "multi"):
            for sync in (True, False):
                mode = "sync" if sync else "async"
                out.append(
                    Variant(
                        f"leader_{groups}_{mode}_tl{t}",
                        f"LSGD {groups} {mode} τ={t}/{4 * t}",
                        "leader",
                        t,
                        groups,
                        sync,
                    )
                )
    t = max(tau_ls)
    out.append(
        Variant(f"no_pull_tl{t}", f"no pull (λ=0) τ={t}", "control", t, "single", True, False)
    )
    return out


def scenario_dict(s: Settings, v: Variant, n: int, seed: int) -> dict[str, Any]:
    """The scenario of one run, in SI units, built here so every knob is visible."""
    gpn = min(4, n)
    return {
        "name": f"leader-vs-easgd-{v.key}-n{n}-s{seed}",
        "topology": {
            "preset": "cluster",
            "nodes": max(1, n // gpn),
            "gpus_per_node": gpn,
            "intra_link": {"bandwidth": s.intra_gBps * 1e9, "latency": s.intra_latency_us * 1e-6},
            "inter_link": {
                "bandwidth": s.inter_gbps * 1e9 / 8,
                "latency": s.inter_latency_us * 1e-6,
            },
            "servers": 1,
        },
        "workload": {
            "model": s.model,
            "batch_size": s.batch_size,
            "compute_time": {"dist": "lognormal", "mean": s.compute_ms / 1e3, "cv": s.compute_cv},
            "io_time": s.io_ms / 1e3,
        },
        "algorithm": v.algorithm(s, n),
        "run": {"iterations": s.iterations, "seed": seed, "warmup": 2},
        "numerics": {"model": s.model, "target_accuracy": s.targets[0]},
    }


# ------------------------------------------------------------------------ one run


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """Simulate one (variant, n, seed) and read the workers' tensors afterwards.

    Plain dicts in and out: a spawned child can then unpickle the task even
    when the parent loaded this script by path. The executor is driven
    directly (not through ``simulate``) because the spread of the workers'
    parameters and each worker's own accuracy are only in its numerics state.
    """
    import torch

    # One intra-op thread: on a loaded 2-core machine torch's thread pool spins
    # against the other process and a 1 s run can take 25 s. Restored after, since
    # a test may call this in its own process.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _simulate(task)
    finally:
        torch.set_num_threads(threads)


def _simulate(task: dict[str, Any]) -> dict[str, Any]:
    import torch

    from pslab.algorithms import build_plan
    from pslab.scenario import scenario_from_dict
    from sim.executor import SimExecutor
    from sim.platform import NominalPlatform
    from sim.topology import build_cluster

    t0 = time.perf_counter()
    scenario = scenario_from_dict(task["scenario"])
    plan = build_plan(scenario)
    ex = SimExecutor(scenario, plan, NominalPlatform(build_cluster(scenario.topology)))
    result = ex.run()
    num = ex.numerics
    assert num is not None
    params = torch.stack([m.params for m in num.models.values()])
    mean = params.mean(0)
    spread = float(((params - mean) ** 2).sum(1).mean().sqrt() / mean.norm())
    model = next(iter(num.models.values()))
    worker_acc = [model.evaluate(p.clone(), num.data.x_test, num.data.y_test)[1] for p in params]
    m = result.metrics
    return {
        "key": task["key"],
        "n": task["n"],
        "seed": task["seed"],
        "curve": [[t, it, loss, acc] for t, it, loss, acc in num.curve],
        "final_accuracy": m["test_accuracy"],
        "final_loss": m["final_loss"],
        "simulated_time_s": m["simulated_time_s"],
        "iteration_time_s": m["iteration_time_s"],
        "spread": spread,
        "worker_accuracy": worker_acc,
        "wall_s": time.perf_counter() - t0,
    }


def _pool_run_one() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``run_one`` under a name a spawned child can import.

    Run as a script, the children re-run this file as ``__mp_main__``; loaded
    by path (tests) the module's name is not importable, so import it again
    as ``leader_vs_easgd`` from this directory, which spawn puts on the
    children's sys.path too.
    """
    if __name__ in ("__main__", "leader_vs_easgd"):
        return run_one
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module("leader_vs_easgd").run_one


Tick = Callable[[int, int], None]


def run_grid(tasks: list[dict[str, Any]], jobs: int, tick: Tick | None = None) -> list[dict]:
    """Every task, in ``jobs`` spawned processes when > 1 (never fork: torch threads)."""
    order = sorted(range(len(tasks)), key=lambda i: -tasks[i]["n"])  # big runs first
    results: list[dict | None] = [None] * len(tasks)
    done = 0
    if jobs <= 1:
        for i in order:
            results[i] = run_one(tasks[i])
            done += 1
            if tick:
                tick(done, len(tasks))
    else:
        fn = _pool_run_one()
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures: dict[Future, int] = {pool.submit(fn, tasks[i]): i for i in order}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                done += 1
                if tick:
                    tick(done, len(tasks))
    return [r for r in results if r is not None]


# ----------------------------------------------------------------------- summaries


def reach(curve: list[list[float]], target: float) -> tuple[float | None, int | None]:
    """(simulated time, worker-0 iteration) of the first evaluation at or above ``target``."""
    for t, it, _, acc in curve:
        if acc >= target:
            return t, int(it)
    return None, None


def tail_error(curve: list[list[float]], frac: float = 0.1) -> float:
    """Mean test error (%) over the last ``frac`` of the iterations.

    The last iterate's error on 360 test samples jumps by a point or two from
    one iteration to the next; the tail mean is the steadier figure to compare.
    """
    last = max(p[1] for p in curve)
    tail = [100 * (1 - p[3]) for p in curve if p[1] >= (1 - frac) * last]
    return statistics.fmean(tail)


def _ms(xs: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample sd (0 for one value); None for none."""
    if not xs:
        return None, None
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarise(runs: list[dict], targets: Sequence[float]) -> dict[str, Any]:
    """One variant at one worker count, over seeds: errors in percent, times in seconds."""
    err = [100 * (1 - r["final_accuracy"]) for r in runs]
    out: dict[str, Any] = {"seeds": len(runs)}
    out["final_error_pct"], out["final_error_sd"] = _ms(err)
    out["tail_error_pct"], out["tail_error_sd"] = _ms([tail_error(r["curve"]) for r in runs])
    out["final_loss"], out["final_loss_sd"] = _ms([r["final_loss"] for r in runs])
    out["best_worker_error_pct"], _ = _ms([100 * (1 - max(r["worker_accuracy"])) for r in runs])
    out["mean_worker_error_pct"], _ = _ms(
        [100 * (1 - statistics.fmean(r["worker_accuracy"])) for r in runs]
    )
    out["spread"], _ = _ms([r["spread"] for r in runs])
    out["simulated_time_s"], _ = _ms([r["simulated_time_s"] for r in runs])
    out["iteration_time_ms"], _ = _ms([1e3 * r["iteration_time_s"] for r in runs])
    for target in targets:
        hits = [reach(r["curve"], target) for r in runs]
        times = [t for t, _ in hits if t is not None]
        its = [float(i) for _, i in hits if i is not None]
        tag = f"{round(100 * target)}"
        out[f"time_to_{tag}_s"], out[f"time_to_{tag}_sd"] = _ms(times)
        out[f"iters_to_{tag}"], _ = _ms(its)
        out[f"reached_{tag}"] = len(times)
    return out


def _t_crit(df: int) -> float:
    """Two-sided 95 % Student t quantile (scipy ships with scikit-learn, which pslab uses)."""
    from scipy.stats import t as student

    return float(student.ppf(0.975, df))


def _paired(name: str, diffs: list[float]) -> dict[str, Any]:
    """Mean ± sd of paired differences (a − b), 95 % t half-width, and a verdict for a.

    Lower is better for every quantity compared (error, time, iterations).
    """
    mean, sd = _ms(diffs)
    verdict, half = "n/a (one seed)", None
    if len(diffs) > 1 and mean is not None and sd is not None:
        half = _t_crit(len(diffs) - 1) * sd / math.sqrt(len(diffs))
        verdict = "tie" if abs(mean) <= half else ("better" if mean < 0 else "worse")
    return {name: mean, f"{name}_sd": sd, f"{name}_ci95": half, f"{name}_verdict": verdict}


def pair_row(a: list[dict], b: list[dict], target: float) -> dict[str, Any]:
    """Runs ``a`` against runs ``b`` of the same n, paired by seed: differences a − b.

    Same seed = same initial model, data shards and batch order, so the
    paired difference removes most of the seed-to-seed noise. Time and
    iterations to ``target`` are paired over the seeds where both reach it.
    """
    tag = f"{round(100 * target)}"
    ra = {r["seed"]: r for r in a}
    rb = {r["seed"]: r for r in b}
    seeds = sorted(set(ra) & set(rb))
    d_err = [100 * (rb[k]["final_accuracy"] - ra[k]["final_accuracy"]) for k in seeds]
    d_tail = [tail_error(ra[k]["curve"]) - tail_error(rb[k]["curve"]) for k in seeds]
    d_t, d_it = [], []
    for k in seeds:
        ta, ia = reach(ra[k]["curve"], target)
        tb, ib = reach(rb[k]["curve"], target)
        if ta is not None and tb is not None and ia is not None and ib is not None:
            d_t.append(ta - tb)
            d_it.append(float(ia - ib))
    return {
        **_paired("d_error_pts", d_err),
        **_paired("d_tail_error_pts", d_tail),
        **_paired(f"d_time_to_{tag}_s", d_t),
        **_paired(f"d_iters_to_{tag}", d_it),
        "paired_seeds": len(seeds),
        f"both_reached_{tag}": len(d_t),
    }


def compare(
    by: dict[tuple[int, str], list[dict]], vs: list[Variant], workers: Sequence[int], target: float
) -> list[dict[str, Any]]:
    """Paired differences: each leader version − EASGD at the same n and period (the
    paper's claim); the λ = 0 control − EASGD (is it the leader, or EASGD's pull?);
    the sync leaders − the control (what the leader pull itself changes)."""
    ctrl = next(v for v in vs if v.family == "control")
    pairs: list[tuple[Variant, str]] = [
        (v, f"easgd_tl{v.tau_l}") for v in vs if v.family in ("leader", "control")
    ]
    pairs += [
        (v, ctrl.key)
        for v in vs
        if v.family == "leader" and v.tau_l == ctrl.tau_l and v.synchronous
    ]
    rows = []
    for n in workers:
        for v, b in pairs:
            row = {"n": n, "tau_l": v.tau_l, "a": v.key, "b": b}
            rows.append(row | pair_row(by[(n, v.key)], by[(n, b)], target))
    return rows


def findings(
    table: dict[int, dict[str, dict[str, Any]]], comps: list[dict], vs: list[Variant], tag: str
) -> dict[str, Any]:
    """The answers the README quotes, computed rather than typed in."""
    out: dict[str, Any] = {}
    claim = [c for c in comps if c["a"].startswith("leader_") and c["b"].startswith("easgd_")]
    for name in ("d_error_pts", "d_tail_error_pts", f"d_time_to_{tag}_s", f"d_iters_to_{tag}"):
        verdicts = [c[f"{name}_verdict"] for c in claim]
        d = [c[name] for c in claim if c[name] is not None]
        out[f"leader_vs_easgd_{name}"] = {
            "verdicts": {k: verdicts.count(k) for k in ("better", "tie", "worse")},
            "mean": statistics.fmean(d) if d else None,
            "range": [min(d), max(d)] if d else None,
            "negative": f"{sum(x < 0 for x in d)}/{len(d)}",
        }
    # The paper's ordering "holds" here only if the leader's tail error wins
    # significantly in most (n, τ, version) comparisons.
    wins = out["leader_vs_easgd_d_tail_error_pts"]["verdicts"]["better"]
    out["ordering_holds"] = wins > len(claim) / 2
    for mode in ("sync", "async"):
        mine = [c[f"d_time_to_{tag}_s"] for c in claim if f"_{mode}_" in c["a"]]
        mine = [x for x in mine if x is not None]
        out[f"leader_{mode}_minus_easgd_time_to_{tag}_s"] = {
            "mean": statistics.fmean(mine) if mine else None,
            "negative": f"{sum(x < 0 for x in mine)}/{len(mine)}",
        }
    for name, rows in (
        ("no_pull_vs_easgd", [c for c in comps if c["a"].startswith("no_pull")]),
        ("leader_vs_no_pull", [c for c in comps if c["b"].startswith("no_pull")]),
    ):
        out[name] = {}
        for k in ("d_tail_error_pts", f"d_iters_to_{tag}"):
            d = [c[k] for c in rows if c[k] is not None]
            out[name][k] = {
                "mean": statistics.fmean(d) if d else None,
                "verdicts": [c[f"{k}_verdict"] for c in rows],
            }
    per_n = {}
    for n, rows in table.items():
        leaders = [v.key for v in vs if v.family == "leader"]
        easgds = [v.key for v in vs if v.family == "easgd"]
        best_leader = min(leaders, key=lambda k: rows[k]["tail_error_pct"])
        best_easgd = min(easgds, key=lambda k: rows[k]["tail_error_pct"])
        timed = [k for k in rows if rows[k][f"time_to_{tag}_s"] is not None]
        fastest = min(timed, key=lambda k: rows[k][f"time_to_{tag}_s"]) if timed else None
        ctrl = next(v.key for v in vs if v.family == "control")
        twin = ctrl.replace("no_pull", "leader_single_sync")
        per_n[str(n)] = {
            "best_leader": best_leader,
            "best_leader_error_pct": rows[best_leader]["final_error_pct"],
            "best_leader_tail_error_pct": rows[best_leader]["tail_error_pct"],
            "best_easgd": best_easgd,
            "best_easgd_error_pct": rows[best_easgd]["final_error_pct"],
            "best_easgd_tail_error_pct": rows[best_easgd]["tail_error_pct"],
            "lowest_tail_error": min(rows, key=lambda k: rows[k]["tail_error_pct"]),
            f"fastest_to_{tag}": fastest,
            "pull_minus_no_pull_tail_error_pts": rows[twin]["tail_error_pct"]
            - rows[ctrl]["tail_error_pct"],
            "pull_spread_ratio": rows[twin]["spread"] / rows[ctrl]["spread"]
            if rows[ctrl]["spread"]
            else None,
            # In a pure drift phase (every worker moving at the same speed) synchronous
            # EASGD's workers settle at a lag L behind the center with βL = vτ − αL, so
            # they advance at p/(p+1) of the free speed, whatever β: (p+1)/p iterations.
            "easgd_over_no_pull_iters_to_target": _ratio(
                rows[ctrl.replace("no_pull", "easgd")][f"iters_to_{tag}"],
                rows[ctrl][f"iters_to_{tag}"],
            ),
            "easgd_drift_model_iters_ratio": (n + 1) / n,
            "leader_avg_minus_best_worker_pts": statistics.fmean(
                rows[k]["final_error_pct"] - rows[k]["best_worker_error_pct"] for k in leaders
            ),
        }
    out["per_workers"] = per_n
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def rounded(obj: Any, digits: int = 5) -> Any:
    """Floats to ``digits`` significant digits: the JSON line stays readable."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    return obj


# --------------------------------------------------------------------- presenting


def _pm(mean: float | None, sd: float | None, fmt: str = "{:.2f}") -> str:
    if mean is None:
        return "—"
    return fmt.format(mean) + ("" if sd is None else " ± " + fmt.format(sd))


def print_tables(
    console: Any,
    table: dict[int, dict[str, dict[str, Any]]],
    comps: list[dict],
    vs: list[Variant],
    s: Settings,
) -> None:
    from rich.table import Table

    labels = {v.key: v.label for v in vs}
    tags = [f"{round(100 * t)}" for t in s.targets]
    for n, rows in table.items():
        seeds = next(iter(rows.values()))["seeds"]
        t = Table(
            title=f"{n} workers, {s.model}, {s.iterations} iterations, mean ± sd over {seeds} "
            f"seeds (test set {TEST_SET}: 1 sample = 0.28 pts)"
        )
        cols = [
            "variant",
            "test error %",
            "tail error %",
            "loss",
            "best worker %",
            "spread",
            "ms/iter",
            "sim s",
        ]
        for tag in tags:
            cols += [f"t→{tag}% s", f"it→{tag}%"]
        for c in cols:
            t.add_column(c, justify="left" if c == "variant" else "right")
        for key, r in rows.items():
            cells = [
                labels[key],
                _pm(r["final_error_pct"], r["final_error_sd"]),
                _pm(r["tail_error_pct"], r["tail_error_sd"]),
                _pm(r["final_loss"], r["final_loss_sd"], "{:.3f}"),
                _pm(r["best_worker_error_pct"], None),
                _pm(r["spread"], None, "{:.3f}"),
                _pm(r["iteration_time_ms"], None),
                _pm(r["simulated_time_s"], None),
            ]
            for tag in tags:
                got = r[f"reached_{tag}"]
                mark = "" if got == seeds else f" ({got}/{seeds})"
                cells.append(_pm(r[f"time_to_{tag}_s"], r[f"time_to_{tag}_sd"], "{:.3f}") + mark)
                cells.append(_pm(r[f"iters_to_{tag}"], None, "{:.0f}"))
            t.add_row(*cells)
        console.print(t)
    tag = f"{round(100 * s.targets[0])}"
    c = Table(
        title="Paired differences a − b (same n, same seeds; negative = a better): "
        "each leader version vs EASGD, the λ=0 control vs EASGD, sync leaders vs the control"
    )
    cols = ["n", "a", "b", "Δ final err pts", "Δ tail err pts", "verdict"]
    cols += [f"Δ t→{tag}% s", "verdict", f"Δ it→{tag}%", "verdict"]
    for col in cols:
        c.add_column(col, justify="left" if col in ("a", "b", "verdict") else "right")

    def cell(r: dict[str, Any], k: str, fmt: str) -> str:
        ci = r[f"{k}_ci95"]
        return _pm(r[k], r[f"{k}_sd"], fmt) + ("" if ci is None else f" (±{fmt.format(ci)})")

    for r in comps:
        c.add_row(
            str(r["n"]),
            labels[r["a"]],
            labels[r["b"]],
            cell(r, "d_error_pts", "{:.2f}"),
            cell(r, "d_tail_error_pts", "{:.2f}"),
            r["d_tail_error_pts_verdict"],
            cell(r, f"d_time_to_{tag}_s", "{:.3f}"),
            r[f"d_time_to_{tag}_s_verdict"],
            cell(r, f"d_iters_to_{tag}", "{:.1f}"),
            r[f"d_iters_to_{tag}_verdict"],
        )
    console.print(c)


STYLE: dict[str, tuple[str, str]] = {
    "sync_ps": ("0.45", "-"),
    "async_ps": ("0.0", "--"),
    "easgd": ("tab:red", "-"),
    "leader_single_sync": ("tab:blue", "-"),
    "leader_single_async": ("tab:blue", "--"),
    "leader_multi_sync": ("tab:green", "-"),
    "leader_multi_async": ("tab:green", "--"),
    "no_pull": ("tab:purple", ":"),
}


def _style(key: str) -> tuple[str, str]:
    base = key.rsplit("_tl", 1)[0]
    return STYLE.get(base, ("tab:purple", "-"))


def mean_curves(runs: list[dict]) -> dict[str, Any]:
    """Mean test error (%) over seeds against iterations and against simulated time."""
    import numpy as np

    its = np.array([p[1] for p in runs[0]["curve"]], dtype=float)
    err_it = np.mean([[100 * (1 - p[3]) for p in r["curve"]] for r in runs], axis=0)
    t_end = min(r["curve"][-1][0] for r in runs)
    grid = np.linspace(0.0, t_end, 200)
    err_t = np.mean(
        [
            np.interp(grid, [p[0] for p in r["curve"]], [100 * (1 - p[3]) for p in r["curve"]])
            for r in runs
        ],
        axis=0,
    )
    return {"iters": its, "err_it": err_it, "time": grid, "err_t": err_t}


def plot(
    out: Path, by: dict[tuple[int, str], list[dict]], vs: list[Variant], workers: Sequence[int]
) -> list[str]:
    """Rows: worker counts. Columns: vs simulated time, vs iterations, one pair per τ_l."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = sorted({v.tau_l for v in vs if v.family in ("easgd", "leader")})
    cols = [(x, t) for x in ("time", "iters") for t in taus]
    fig, axes = plt.subplots(
        len(workers), len(cols), figsize=(4.2 * len(cols), 3.4 * len(workers)), squeeze=False
    )
    labels = {v.key: v.label for v in vs}
    for i, n in enumerate(workers):
        for j, (x, tau) in enumerate(cols):
            ax = axes[i][j]
            for v in vs:
                if v.tau_l not in (None, tau):
                    continue
                c = mean_curves(by[(n, v.key)])
                color, ls = _style(v.key)
                xs, ys = (c["time"], c["err_t"]) if x == "time" else (c["iters"], c["err_it"])
                ax.plot(xs, ys, color=color, ls=ls, lw=1.3, label=labels[v.key])
            ax.set_yscale("log")
            ax.set_ylim(1, 100)
            ax.grid(True, which="both", alpha=0.3)
            ax.set_title(f"{n} workers, τ_l={tau}, τ_g={4 * tau}", fontsize=9)
            ax.set_xlabel("simulated time (s)" if x == "time" else "worker-0 iteration")
            if j == 0:
                ax.set_ylabel("test error % (avg model)")
            if i == 0 and j in (0, len(taus) - 1):
                ax.legend(fontsize=6.5, loc="lower left")
    fig.suptitle(
        "Leader SGD vs EASGD vs sync/async PS, digits (simulated clock, illustrative times)",
        fontsize=10,
    )
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "leader_vs_easgd.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [str(path)]


# ---------------------------------------------------------------------------- run


def run(
    s: Settings,
    workers: Sequence[int],
    seeds: Sequence[int],
    tau_ls: Sequence[int],
    jobs: int = 2,
    out: Path | None = None,
    console: Any = None,
    progress_console: Any = None,
) -> dict[str, Any]:
    """The whole experiment; returns the JSON summary (tables, PNG, curves are side effects)."""
    t0 = time.perf_counter()
    vs = variants(tau_ls)
    tasks = [
        {"key": v.key, "n": n, "seed": k, "scenario": scenario_dict(s, v, n, k)}
        for n in workers
        for v in vs
        for k in seeds
    ]
    if progress_console is not None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=progress_console,
        )
        task = bar.add_task("simulating grid", total=len(tasks))
        with bar:
            results = run_grid(tasks, jobs, lambda d, _: bar.update(task, completed=d))
    else:
        results = run_grid(tasks, jobs)
    by: dict[tuple[int, str], list[dict]] = {}
    for r in results:
        by.setdefault((r["n"], r["key"]), []).append(r)
    table = {n: {v.key: summarise(by[(n, v.key)], s.targets) for v in vs} for n in workers}
    comps = compare(by, vs, workers, s.targets[0])
    if console is not None:
        print_tables(console, table, comps, vs, s)
    pngs: list[str] = []
    if out is not None:
        pngs = plot(out, by, vs, workers)
        curves = out / "curves.json"
        curves.write_text(json.dumps(rounded(results)))
        pngs.append(str(curves))
    return rounded(
        {
            "experiment": "leader_vs_easgd",
            "paper_numbers": PAPER_NUMBERS,
            "settings": s.describe(),
            "workers": list(workers),
            "seeds": list(seeds),
            "tau_l": list(tau_ls),
            "tau_g": [4 * t for t in tau_ls],
            "variants": {v.key: v.algorithm(s, workers[-1]) for v in vs},
            "multi_leader_groups": {str(n): multi_groups(n) for n in workers},
            "results": {str(n): rows for n, rows in table.items()},
            "leader_vs_easgd": comps,
            "findings": findings(table, comps, vs, f"{round(100 * s.targets[0])}"),
            "outputs": pngs,
            "runs": len(results),
            "cpu_s": sum(r["wall_s"] for r in results),
            "wall_s": time.perf_counter() - t0,
        }
    )


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="4,8", help="SGD worker counts (nodes of 4)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tau-l", default="1,4", help="local-leader periods; τ_g = 4·τ_l")
    p.add_argument("--iterations", type=int, default=Settings.iterations)
    p.add_argument("--model", default=Settings.model, choices=("digits_cnn", "digits_mlp"))
    p.add_argument("--lr", type=float, default=Settings.lr)
    p.add_argument("--async-lr", type=float, default=Settings.async_lr)
    p.add_argument("--targets", default="0.9,0.95", help="test accuracies to time")
    p.add_argument("--jobs", type=int, default=2, help="simulation processes (spawned)")
    p.add_argument("--out", default="runs/leader_vs_easgd", help="PNG + curves ('' = none)")
    p.add_argument("--quick", action="store_true", help="tiny grid for the test")
    args = p.parse_args(argv)
    if args.quick:
        args.workers, args.seeds, args.tau_l, args.iterations = "4", 1, "4", 40
    from rich.console import Console

    s = replace(
        Settings(),
        iterations=args.iterations,
        model=args.model,
        lr=args.lr,
        async_lr=args.async_lr,
        targets=tuple(float(x) for x in args.targets.split(",") if x.strip()),
    )
    console = Console(width=190)
    console.print(
        "[bold]Leader SGD vs EASGD (simulated clock, real SGD math).[/] The paper's numbers "
        "were NOT available; compute, load and link times are illustrative.\n"
        f"{json.dumps(s.describe())}"
    )
    summary = run(
        s,
        workers=_ints(args.workers),
        seeds=list(range(args.seeds)),
        tau_ls=_ints(args.tau_l),
        jobs=args.jobs,
        out=Path(args.out) if args.out else None,
        console=console,
        progress_console=Console(stderr=True),
    )
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
