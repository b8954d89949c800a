"""Does Laplacian smoothing avoid saddles? A check of Kreusser, Osher & Wang (EJAM 2022).

The paper's abstract claims that, for a canonical class of quadratics, the set of
starting points attracted to a saddle has dimension n − 1 under gradient descent
but only ⌊(n−1)/2⌋ under *modified* Laplacian-smoothing GD (mLSGD), with no loss
of convergence rate. The paper's body (the mLSGD formula, its class of functions,
its experiments) was not readable here (see DESIGN.md, "Reproducing the saddle
claim"), so this script tests one stated reading of the modification: **σ drawn
afresh each step**, σ ~ U[σ_lo, σ_hi]. Why that reading: for f = ½xᵀHx with
H = diag(1, …, 1, −1), GD's and fixed-σ LSGD's stable subspaces are both
hyperplanes (dimension n − 1, since A_σ⁻¹H has H's inertia) but different ones;
the only directions every A_σ keeps invariant *and* contracts are the vectors
with x_n = 0 and x_j = −x_{n−j} (antisymmetric under the reflection of the
periodic grid that fixes the saddle's coordinate), a subspace of dimension
⌊(n−1)/2⌋. Varying σ therefore attracts only that subspace, whatever the draws.

The mathematics is :mod:`experiments.saddle_theory`; this module runs it and reports.

Run: ``python -m experiments.saddle [--n 10,11,50] [--starts 20] [--seed 0]
[--out runs/saddle]``. The last stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.report import ints, out_dir, print_json_last, pyplot, save_figure
from experiments.saddle_theory import (
    DEPTH_FLOOR,
    ESCAPE,
    ETA,
    METHODS,
    SIGMA_FIXED,
    SIGMA_RANGE,
    START_SET_HELP,
    START_SETS,
    STEPS,
    TOL,
    antisymmetric_dimension,
    attraction,
    condition_number,
    convex_rate,
    convex_spectra,
    descend,
    intersect_stable_subspaces,
    saddle_diagonal,
    sigma_schedule,
    stability_margin,
    stable_dimension,
    start_points,
)


def _plot(
    out: Path,
    ns: Sequence[int],
    fractions: dict[str, dict[str, dict[str, float]]],
    curves: dict[str, dict[str, list[list[float]]]],
    rate_curves: dict[str, dict[str, list[float]]],
    n_curves: int,
) -> str:
    """saddle.png: the attraction heatmap, two families of trajectories, the convex rates."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0, 0]
    groups = [(kind, n) for kind in START_SETS for n in ns]
    grid = np.array([[fractions[m][kind][str(n)] for kind, n in groups] for m in METHODS])
    ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(
            j, i, f"{v:.2g}", ha="center", va="center", fontsize=7, color="k" if v > 0.5 else "w"
        )
    short = {
        "hyperplane": "x_n=0",
        "antisymmetric": "antisym",
        "generic": "generic",
        "lsgd_fixed_hyperplane": "LSGD-σ hyp",
    }
    ax.set_xticks(
        range(len(groups)), [f"{short[k]}\nn={n}" for k, n in groups], fontsize=7, rotation=90
    )
    ax.set_yticks(range(len(METHODS)), METHODS)
    ax.set_title("Fraction of starts reaching the saddle of ½xᵀdiag(1,…,1,−1)x")
    colors = {"gd": "C0", "lsgd_fixed": "C1", "lsgd_random": "C2"}
    for ax, kind in ((axes[0, 1], "hyperplane"), (axes[1, 0], "antisymmetric")):
        for m in METHODS:
            for i, c in enumerate(curves[kind][m]):
                ax.semilogy(c, color=colors[m], alpha=0.7, label=m if i == 0 else None)
        ax.axhline(TOL, color="k", ls=":", lw=1, label="tol 1e-6")
        ax.set_ylim(DEPTH_FLOOR / 10, ESCAPE * 100)
        ax.set_title(f"‖x_k‖/‖x_0‖ from {kind.replace('_', ' ')} starts (n={n_curves})")
        ax.set_xlabel("iteration")
        ax.legend(fontsize=8)
    ax = axes[1, 1]
    for spectrum, style in (("linspace", "-"), ("laplacian", "--")):
        for m, c in rate_curves[spectrum].items():
            ax.semilogy(c, color=colors[m], ls=style, label=m if style == "-" else None)
    ax.axhline(TOL, color="k", ls=":", lw=1)
    ax.set_title(f"Convex quadratics (n={n_curves}), η={ETA}: — linspace, -- laplacian")
    ax.set_xlabel("iteration")
    ax.legend(fontsize=8)
    return save_figure(fig, out / "saddle.png")


def _fmt_kappa(k: float | list[float]) -> str:
    return f"{k:.1f}" if isinstance(k, float) else f"{k[0]:.1f}-{k[1]:.1f}"


Say = Callable[..., None]


def run(
    ns: Sequence[int],
    starts: int,
    seed: int,
    out: Path | None,
    *,
    steps: int = STEPS,
    dim_ns: Sequence[int] = tuple(range(4, 21)),
    rate_starts: int = 5,
    verbose: bool = True,
) -> dict:
    """Every experiment of the brief; returns the JSON-able summary (tables printed on the way)."""
    say: Say = print if verbose else (lambda *a, **k: None)
    t0 = time.perf_counter()
    say(
        f"Saddle avoidance: f = ½xᵀdiag(1,…,1,−1)x, η = {ETA}, fixed σ = {SIGMA_FIXED}, "
        f"random σ ~ U{list(SIGMA_RANGE)} drawn afresh each step (our reading of mLSGD)"
    )
    say(f"reached = ‖x_k‖ ≤ {TOL:g}·‖x_0‖ at some k ≤ {steps}; escaped = ≥ {ESCAPE:g}·‖x_0‖")
    # stability: η·max μ(A_σ⁻¹H) < 2 over the σ's used (σ_hi is the smoothest, σ=0 the largest)
    stab = {
        str(n): max(
            stability_margin(saddle_diagonal(n), s)
            for s in (0.0, SIGMA_FIXED, *np.linspace(*SIGMA_RANGE, 6))
        )
        for n in ns
    }
    say("\nstability η·max eig(A_σ⁻¹H) over σ ∈ {0, fixed, grid of range}: " + str(stab))
    fractions, details = _attraction_table(say, ns, starts, seed, steps)
    dims = _dimension_table(say, ns, dim_ns)
    rate, ratio_range = _rate_table(say, ns, seed, rate_starts)
    png = None
    if out is not None:
        png = _figure(out, ns, seed, fractions)
        say(f"\nfigure: {png}")
    return {
        "n": list(ns),
        "eta": ETA,
        "sigma_fixed": SIGMA_FIXED,
        "sigma_random": {"dist": "uniform, fresh each step", "range": list(SIGMA_RANGE)},
        "starts": starts,
        "seed": seed,
        "steps": steps,
        "tol": TOL,
        "stability_eta_max_eig": stab,
        "fraction_to_saddle": fractions,
        "attraction_details": details,
        "dimension": dims,
        "rate": rate,
        "rate_iterations_vs_gd_range": ratio_range,
        "png": png,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _attraction_table(
    say: Say, ns: Sequence[int], starts: int, seed: int, steps: int
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict[str, dict[str, dict]]]]:
    """Checks 1-2: the fraction of each start set that each method brings to the saddle."""
    fractions: dict[str, dict[str, dict[str, float]]] = {
        m: {k: {} for k in START_SETS} for m in METHODS
    }
    details: dict[str, dict[str, dict[str, dict]]] = {
        m: {k: {} for k in START_SETS} for m in METHODS
    }
    say(
        f"\n{'n':>4} {'start set':<22} {'method':<12} {'reached':>8} {'escaped':>8} "
        f"{'undec.':>6} {'median depth':>12} {'worst depth (reached)':>22} "
        f"{'best depth (not)':>17}"
    )
    say("depth = min_k ‖x_k‖/‖x_0‖ (runs continue past tol to the turning point, floor 1e-12)")
    for n in ns:
        for kind in START_SETS:
            for m in METHODS:
                a = attraction(n, kind, m, starts, seed, steps=steps)
                fractions[m][kind][str(n)] = a.fraction
                details[m][kind][str(n)] = {
                    "reached": a.reached,
                    "escaped": a.escaped,
                    "undecided": a.undecided,
                    "worst_min_ratio_reached": a.worst_min_ratio if a.reached else None,
                    "best_min_ratio_not_reached": (
                        a.best_min_ratio if a.reached < a.total else None
                    ),
                    "median_min_ratio": a.median_min_ratio,
                }
                worst = f"{a.worst_min_ratio:.2e}" if a.reached else "-"
                best = f"{a.best_min_ratio:.2e}" if a.reached < a.total else "-"
                say(
                    f"{n:>4} {kind:<22} {m:<12} {a.reached:>4}/{a.total:<3} {a.escaped:>8} "
                    f"{a.undecided:>6} {a.median_min_ratio:>12.2e} {worst:>22} {best:>17}"
                )
    say("start sets: " + "; ".join(f"{k}: {v}" for k, v in START_SET_HELP.items()))
    return fractions, details


def _dimension_table(say: Say, ns: Sequence[int], dim_ns: Sequence[int]) -> dict[str, Any]:
    """Check 3: stable dimensions, analytic for every n and numeric (∩ over σ's) for small n."""
    dims: dict[str, Any] = {"gd": {}, "lsgd_fixed": {}, "lsgd_random_symmetry": {}}
    for n in ns:
        h = saddle_diagonal(n)
        dims["gd"][str(n)] = stable_dimension(h, 0.0)
        dims["lsgd_fixed"][str(n)] = stable_dimension(h, SIGMA_FIXED)
        dims["lsgd_random_symmetry"][str(n)] = antisymmetric_dimension(n)
    numeric: dict[str, dict] = {}
    say(
        f"\n{'n':>4} {'GD':>4} {'LSGD σ':>7} {'⌊(n−1)/2⌋':>10} {'∩ numeric':>10} "
        f"{'sv gap':>9} {'antisym ⊂ ∩ resid':>18}"
    )
    for n in dim_ns:
        h = saddle_diagonal(n)
        sig = np.linspace(*SIGMA_RANGE, n)
        inter = intersect_stable_subspaces(n, sig)
        numeric[str(n)] = {
            "dimension": inter.dimension,
            "gap": inter.gap,
            "antisymmetric_residual": inter.antisymmetric_residual,
        }
        say(
            f"{n:>4} {stable_dimension(h, 0.0):>4} {stable_dimension(h, SIGMA_FIXED):>7} "
            f"{antisymmetric_dimension(n):>10} {inter.dimension:>10} {inter.gap:>9.1e} "
            f"{inter.antisymmetric_residual:>18.1e}"
        )
    agree = [
        int(k) for k, v in numeric.items() if v["dimension"] == antisymmetric_dimension(int(k))
    ]
    first_bad = next(
        (int(k) for k, v in numeric.items() if v["dimension"] != antisymmetric_dimension(int(k))),
        None,
    )
    dims["lsgd_random_numeric"] = {k: v["dimension"] for k, v in numeric.items()}
    dims["lsgd_random_numeric_gap"] = {k: v["gap"] for k, v in numeric.items()}
    dims["numeric_sigmas"] = f"n values linspace({SIGMA_RANGE[0]}, {SIGMA_RANGE[1]}, n)"
    dims["numeric_matches_symmetry_for_n"] = agree
    dims["numeric_first_mismatch_n"] = first_bad
    say(
        f"numeric ∩ over n σ's = linspace{SIGMA_RANGE}: matches ⌊(n−1)/2⌋ for n = {agree}; "
        f"first mismatch n = {first_bad} (float64 round-off, gap → 1)"
    )
    return dims


def _rate_table(
    say: Say, ns: Sequence[int], seed: int, rate_starts: int
) -> tuple[dict[str, dict], dict[str, list[float]]]:
    """Check 4: iterations to converge on convex quadratics, each method against GD."""
    rate: dict[str, dict] = {}
    say(
        f"\n{'n':>4} {'spectrum':<9} {'method':<12} {'iters (med)':>11} {'max':>6} "
        f"{'fitted rate':>11} {'spectral ρ':>10} {'κ(A_σ⁻¹H)':>13} {'iters/GD':>8}"
    )
    for n in ns:
        for name, hc in convex_spectra(n, seed).items():
            key = f"{name}/{n}"
            rate[key] = {}
            kappa: dict[str, float | list[float]] = {
                "gd": condition_number(hc, 0.0),
                "lsgd_fixed": condition_number(hc, SIGMA_FIXED),
                "lsgd_random": sorted(condition_number(hc, s) for s in SIGMA_RANGE),
            }
            for m in METHODS:
                r = convex_rate(hc, m, rate_starts, seed)
                rate[key][m] = {
                    "iterations_median": r.iterations_median,
                    "iterations_max": r.iterations_max,
                    "fitted_rate": r.fitted_rate,
                    "spectral_rate": r.spectral_rate,
                    "condition_number": kappa[m],
                }
            gd_it = rate[key]["gd"]["iterations_median"]
            for m in METHODS:
                v = rate[key][m]
                v["iterations_vs_gd"] = v["iterations_median"] / gd_it
                sp = f"{v['spectral_rate']:.4f}" if v["spectral_rate"] is not None else "-"
                say(
                    f"{n:>4} {name:<9} {m:<12} {v['iterations_median']:>11.0f} "
                    f"{v['iterations_max']:>6} {v['fitted_rate']:>11.4f} {sp:>10} "
                    f"{_fmt_kappa(kappa[m]):>13} {v['iterations_vs_gd']:>8.2f}"
                )
    ratio_range: dict[str, list[float]] = {}
    for key, per_method in rate.items():
        name = key.split("/")[0]
        for m in ("lsgd_fixed", "lsgd_random"):
            r = per_method[m]["iterations_vs_gd"]
            lo, hi = ratio_range.get(name, [math.inf, -math.inf])
            ratio_range[name] = [min(lo, r), max(hi, r)]
    say(
        "LSGD iterations / GD iterations, per spectrum (min, max over n and both LSGD): "
        + ", ".join(f"{k}: {v[0]:.2f}–{v[1]:.2f}" for k, v in ratio_range.items())
    )
    return rate, ratio_range


def _figure(
    out: Path, ns: Sequence[int], seed: int, fractions: dict[str, dict[str, dict[str, float]]]
) -> str:
    """saddle.png, with trajectories recorded at the smallest n (the tables do not keep them)."""
    n_c = ns[0]
    h = saddle_diagonal(n_c)
    curves: dict[str, dict[str, list[list[float]]]] = {}
    for kind in ("hyperplane", "antisymmetric"):
        xs = start_points(kind, n_c, 3, np.random.default_rng([seed, n_c, 1234]))
        curves[kind] = {}
        for m in METHODS:
            draw = sigma_schedule(m, SIGMA_FIXED, SIGMA_RANGE)
            curves[kind][m] = [
                descend(
                    x0,
                    h,
                    draw,
                    np.random.default_rng([seed, i]),
                    steps=400,
                    record=True,
                    stop_on_reach=False,
                    floor=DEPTH_FLOOR,
                ).norms
                for i, x0 in enumerate(xs)
            ]
    spectra = convex_spectra(n_c, seed)
    x0 = np.random.default_rng([seed, n_c, 99]).standard_normal(n_c)
    rate_curves = {
        name: {
            m: descend(
                x0,
                spectra[name],
                sigma_schedule(m, SIGMA_FIXED, SIGMA_RANGE),
                np.random.default_rng(seed),
                steps=50_000,
                record=True,
            ).norms
            for m in METHODS
        }
        for name in ("linspace", "laplacian")
    }
    return _plot(out, ns, fractions, curves, rate_curves, n_c)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="10,11,50", help="comma-separated dimensions")
    p.add_argument("--starts", type=int, default=20, help="random starts per set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=STEPS, help="step budget per start")
    p.add_argument("--dim-max", type=int, default=20, help="largest n for numeric ∩")
    p.add_argument("--out", default="runs/saddle", help="directory for saddle.png ('' = none)")
    args = p.parse_args(argv)
    ns = ints(args.n)
    summary = run(
        ns,
        args.starts,
        args.seed,
        out_dir(args.out),
        steps=args.steps,
        dim_ns=tuple(range(4, args.dim_max + 1)),
    )
    print_json_last(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
