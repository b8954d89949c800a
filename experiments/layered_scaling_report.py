"""Layered SGD scaling's presentation: headline findings, rich tables and the two PNGs.

Kept apart from :mod:`experiments.layered_scaling` (the grid and its
summaries) so that module stays about what is simulated.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.report import new_table, pyplot, save_figure

if TYPE_CHECKING:
    from experiments.layered_scaling import Settings


def _range(xs: list[float]) -> list[float] | None:
    return [min(xs), max(xs)] if xs else None


def findings(scaling: dict[str, Any], sweep: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers for the JSON and the README: where Layered SGD wins and by how much."""
    out: dict[str, Any] = {}
    if "layered_sgd" in scaling and "csgd" in scaling:
        n_max = max(scaling["layered_sgd"])
        lay = scaling["layered_sgd"][n_max]
        out["scaling_at_max_nodes"] = {
            "nodes": n_max,
            "throughput": {
                v: rows[n_max]["throughput_samples_per_s"] for v, rows in scaling.items()
            },
            "efficiency": {v: rows[n_max]["scaling_efficiency"] for v, rows in scaling.items()},
            "layered_speedup_vs_csgd": scaling["csgd"][n_max]["iteration_time_s"]
            / lay["iteration_time_s"],
        }
    cells = sweep.get("cells", [])
    if cells:
        beats_csgd = [c for c in cells if c["speedup_vs_csgd"] > 1.01]
        beats_b = [c for c in cells if c["speedup_vs_bucketed"] > 1.01]
        out["sweep"] = {
            "speedup_vs_csgd_range": _range([c["speedup_vs_csgd"] for c in cells]),
            "speedup_vs_bucketed_range": _range([c["speedup_vs_bucketed"] for c in cells]),
            "beats_csgd_cells": [[c["io_ms"], c["bw_gbps"]] for c in beats_csgd],
            "beats_bucketed_cells": [[c["io_ms"], c["bw_gbps"]] for c in beats_b],
            "hidden_cells": [[c["io_ms"], c["bw_gbps"]] for c in cells if c["hidden"]],
            "hidden_matches_prediction": all(c["hidden"] == c["predicted_hidden"] for c in cells),
            "speedup_vs_csgd_at_io0_range": _range(
                [c["speedup_vs_csgd"] for c in cells if c["io_ms"] == 0]
            ),
            "hiding_gain_range": _range(
                [c["hiding_gain"] for c in cells if c["hiding_gain"] is not None]
            ),
            "speedup_vs_bucketed_prefetch_range": _range(
                [c["speedup_vs_bucketed_prefetch"] for c in cells]
            ),
        }
    return out


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.1f}"


def print_tables(
    console: Any, scaling: dict[str, Any], sweep: dict[str, Any], sweep_nodes: int
) -> None:
    """Rich tables to stdout: the scaling grid, then the map."""
    t = new_table(
        "Scaling (illustrative settings; the paper's numbers were unavailable)",
        ("variant", "nodes", "GPUs", "iter ms", "img/s", "eff", "comm ms", "exposed ms", "overlap"),
    )
    for v, rows in scaling.items():
        for n in sorted(rows):
            r = rows[n]
            t.add_row(
                v,
                str(n),
                str(r["workers"]),
                _ms(r["iteration_time_s"]),
                f"{r['throughput_samples_per_s']:.0f}",
                f"{r['scaling_efficiency']:.3f}",
                _ms(r["comm_time_s"]),
                _ms(r["exposed_comm_time_s"]),
                f"{r['overlap_ratio']:.2f}",
            )
        t.add_section()
    console.print(t)
    if not sweep.get("cells"):
        return
    m = new_table(
        f"Layered SGD map at {sweep_nodes} nodes: speed-up = baseline iteration time / "
        f"Layered's (intra-node exposed {_ms(sweep['intra_node_exposed_s'])} ms)",
        (
            "io ms",
            "Gb/s",
            "LSGD iter ms",
            "LSGD exposed",
            "scale+AR ms",
            "hidden (pred)",
            "vs CSGD",
            "vs bucketed",
            "vs bucketed+prefetch",
            "hiding gain",
        ),
        left=(),
    )
    for c in sweep["cells"]:
        m.add_row(
            f"{c['io_ms']:g}",
            f"{c['bw_gbps']:g}",
            _ms(c["iteration_time_s"]["layered_sgd"]),
            _ms(c["exposed_comm_s"]["layered_sgd"]),
            _ms((c["layered_comm_scale_s"] or 0) + (c["layered_comm_allreduce_s"] or 0)),
            f"{'yes' if c['hidden'] else 'no'} ({'yes' if c['predicted_hidden'] else 'no'})",
            f"{c['speedup_vs_csgd']:.2f}×",
            f"{c['speedup_vs_bucketed']:.2f}× ({c['best_bucketed'].removeprefix('bucketed_')})",
            f"{c['speedup_vs_bucketed_prefetch']:.2f}×",
            "-" if c["hiding_gain"] is None else f"{c['hiding_gain']:.2f}×",
        )
    console.print(m)


def plot(
    out: Path,
    scaling: dict[str, Any],
    sweep: dict[str, Any],
    sweep_nodes: int,
    s: Settings,
) -> list[str]:
    """Save scaling.png (throughput, efficiency, exposed comm vs nodes) and sweep_heatmap.png."""
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    plt = pyplot()
    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for v, rows in scaling.items():
        ns = sorted(rows)
        style = "--" if v == "bucketed_prefetch" else "-"
        axes[0].plot(
            ns, [rows[n]["throughput_samples_per_s"] for n in ns], style, marker="o", label=v
        )
        axes[1].plot(ns, [rows[n]["scaling_efficiency"] for n in ns], style, marker="o", label=v)
        axes[2].plot(
            ns, [rows[n]["exposed_comm_time_s"] * 1e3 for n in ns], style, marker="o", label=v
        )
    axes[0].set(xscale="log", yscale="log", ylabel="images/s", title="Throughput")
    axes[1].set(
        xscale="log", ylabel="throughput(N) / (N·throughput(1))", title="Scaling efficiency"
    )
    axes[2].set(xscale="log", yscale="log", ylabel="ms per iteration", title="Exposed comm")
    for ax in axes:
        ax.set_xlabel(f"nodes (× {s.gpus_per_node} GPUs)")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    model = s.model if isinstance(s.model, str) else f"{len(s.model.get('layers') or [1])}-tensor"
    fig.suptitle(
        f"{model}, {s.batch_size}/GPU, {s.gpus_per_node} GPUs/node, per-tensor collectives for "
        "layered/CSGD — illustrative compute/io/links (paper's numbers unavailable)",
        fontsize=10,
    )
    paths.append(save_figure(fig, out / "scaling.png"))

    cells = sweep.get("cells", [])
    if cells:
        ios = sorted({c["io_ms"] for c in cells})
        bws = sorted({c["bw_gbps"] for c in cells})
        at = {(c["io_ms"], c["bw_gbps"]): c for c in cells}
        panels = [
            ("speedup_vs_csgd", "Layered SGD speed-up over CSGD"),
            ("speedup_vs_bucketed", "… over the better bucketed all-reduce"),
        ]
        if all(c["hiding_gain"] is not None for c in cells):
            panels.append(("hiding_gain", "… over itself without hiding: (T(0)+io)/T(io)"))
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8))
        for ax, (key, title) in zip(np.atleast_1d(axes), panels, strict=True):
            grid = np.array([[at[(io, bw)][key] for bw in bws] for io in ios])
            norm = TwoSlopeNorm(vcenter=1.0, vmin=min(grid.min(), 0.95), vmax=max(grid.max(), 1.05))
            im = ax.imshow(grid, origin="lower", cmap="RdBu", norm=norm, aspect="auto")
            for i, io in enumerate(ios):
                for j, bw in enumerate(bws):
                    mark = " H" if at[(io, bw)]["hidden"] else ""
                    ax.text(j, i, f"{grid[i, j]:.2f}{mark}", ha="center", va="center", fontsize=9)
            ax.set_xticks(range(len(bws)), [f"{b:g}" for b in bws])
            ax.set_yticks(range(len(ios)), [f"{x:g}" for x in ios])
            ax.set(xlabel="inter-node Gb/s", ylabel="load time per batch (ms)")
            ax.set_title(title, fontsize=10)
            fig.colorbar(im, ax=ax, label="iteration-time ratio (>1: Layered faster)")
        fig.suptitle(
            f"{sweep_nodes} nodes × {s.gpus_per_node} GPUs; H = all-reduce fully hidden behind "
            "loading; illustrative settings (paper's numbers unavailable)",
            fontsize=10,
        )
        paths.append(save_figure(fig, out / "sweep_heatmap.png"))
    return paths
