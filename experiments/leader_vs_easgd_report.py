"""Leader SGD vs EASGD's presentation: rich tables of the summaries and the curves' PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.report import new_table, pyplot, save_figure

if TYPE_CHECKING:
    from experiments.leader_vs_easgd import Settings, Variant

TEST_SET = 360  # digits test split (20 % of 1,797): one sample is 0.28 points of error


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
    """One table per worker count (mean ± sd over seeds), then the paired differences."""
    labels = {v.key: v.label for v in vs}
    tags = [f"{round(100 * t)}" for t in s.targets]
    for n, rows in table.items():
        seeds = next(iter(rows.values()))["seeds"]
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
        t = new_table(
            f"{n} workers, {s.model}, {s.iterations} iterations, mean ± sd over {seeds} "
            f"seeds (test set {TEST_SET}: 1 sample = 0.28 pts)",
            cols,
        )
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
    cols = ["n", "a", "b", "Δ final err pts", "Δ tail err pts", "verdict"]
    cols += [f"Δ t→{tag}% s", "verdict", f"Δ it→{tag}%", "verdict"]
    c = new_table(
        "Paired differences a − b (same n, same seeds; negative = a better): "
        "each leader version vs EASGD, the λ=0 control vs EASGD, sync leaders vs the control",
        cols,
        left=("a", "b", "verdict"),
    )

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
    plt = pyplot()
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
    return [save_figure(fig, out / "leader_vs_easgd.png")]
