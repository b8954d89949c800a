"""Layered SGD scaling, simulated: the shape of Yu et al.'s README run, with illustrative timings.

Yu, Flynn, Yoo & D'Imperio (2019) put one CPU *communicator* per node: the
GPU workers reduce their gradient to it and go on to load the next batch
while it all-reduces with the other communicators (DESIGN.md, the
layered_sgd bullet). Their README's run is ResNet-50 (161 tensors), 64 images
per GPU, nodes × 4 GPUs, blocking per-tensor collectives. **The paper's
hardware and numbers were not available to us**, so nothing here is a
published figure: compute time, load time and link speeds are plainly
illustrative settings (:data:`ILLUSTRATIVE`), and what the script
reproduces is the *shape* of the comparison and the conditions under which
hiding the all-reduce behind I/O pays.

Variants (every one loads its batch synchronously inside the iteration, as
the paper's loader did, unless its name says ``prefetch``):

- ``layered_sgd``: per-tensor reduce → communicator all-reduce overlapping the
  next batch's load → per-tensor broadcast.
- ``csgd``: the paper's baseline, a blocking per-tensor ring all-reduce over all
  GPUs after backward.
- ``bucketed_ring`` / ``bucketed_hier``: the modern scheme (Horovod/DDP), 25 MiB
  buckets all-reduced while backward still runs; flat ring or hierarchical ring.
- ``sync_ps``: BSP parameter server, ``max(1, nodes // 4)`` server hosts, each
  with its own NIC at the inter-node bandwidth; 4 MB partitions.
- ``bucketed_prefetch`` (reference only): ``bucketed_hier`` with a background
  loader, to show what Layered SGD's win over a synchronous loader is worth
  once the loader itself overlaps.

Then a map at a fixed node count: per-batch load time × inter-node bandwidth,
where Layered SGD beats CSGD and the bucketed all-reduce, by how much, and
where its all-reduce hides completely (exposed communication down to the
intra-node reduce + broadcast, which never hide).

Run: ``python experiments/layered_scaling.py [--nodes 1,2,4,8,16,32,64]
[--sweep-nodes 16] [--io-ms 0,50,100,200,400] [--bw-gbps 5,10,25,100]
[--iterations 5] [--workers 2] [--out runs/layered_scaling]``. The last
stdout line is one JSON object with every figure; progress goes to stderr.
The map also reports a *hiding gain*, (T(io=0) + io) / T(io): what overlapping
with loading buys Layered SGD over itself, as opposed to what its hierarchy
(one communicator per node in the inter-node ring) buys over CSGD.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

try:  # running as a script puts experiments/ (not the repo root) on sys.path
    from pslab.scenario import scenario_from_dict
except ModuleNotFoundError:  # pragma: no cover - depends on how it is launched
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from pslab.scenario import scenario_from_dict

from pslab.compare import COMPARED
from sim.run import simulate

PAPER_NUMBERS = (
    "not available: Yu et al.'s hardware, timings and results could not be read, so no figure "
    "here is the paper's; compute, load and link settings are illustrative"
)


@dataclass(frozen=True)
class Settings:
    """One illustrative platform. None of these values is from the paper (unavailable).

    ``model`` is a catalogue name or a ``{params, layers}`` mapping, so tests can
    use a small model. ``latency_s`` is per link; a path pays it once per hop
    (host → switch → host is 2 hops, a GPU on another node 6).
    """

    model: Any = "resnet50"
    batch_size: int = 64
    gpus_per_node: int = 4
    compute_s: float = 0.200
    io_s: float = 0.300
    inter_gbps: float = 100.0  # inter-node NIC, gigabits per second
    intra_gBps: float = 16.0  # PCIe between GPUs and the host, gigabytes per second
    latency_s: float = 5e-6
    cores_per_node: int = 16
    iterations: int = 5
    warmup: int = 2
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        """The settings in the units a reader expects, flagged as illustrative."""
        d = asdict(self)
        d["illustrative"] = True
        return d


ILLUSTRATIVE = Settings()

# name → (algorithm section, extra workload keys). Order is the tables' order.
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "layered_sgd": ({"name": "layered_sgd", "per_tensor": True}, {}),
    "csgd": ({"name": "allreduce", "per_tensor": True}, {}),
    "bucketed_ring": ({"name": "allreduce", "overlap_backward": True}, {}),
    "bucketed_hier": (
        {"name": "allreduce", "overlap_backward": True, "allreduce_algo": "hierarchical"},
        {},
    ),
    "sync_ps": ({"name": "sync_ps"}, {}),
    "bucketed_prefetch": (
        {"name": "allreduce", "overlap_backward": True, "allreduce_algo": "hierarchical"},
        {"io_prefetch": True},
    ),
}
SWEEP_VARIANTS = ("layered_sgd", "csgd", "bucketed_ring", "bucketed_hier", "bucketed_prefetch")
BUCKETED = ("bucketed_ring", "bucketed_hier")
METRIC_KEYS = COMPARED  # the metrics compare reports, in its order
# "All-reduce fully hidden": exposed comm within this of the intra-node reduce + broadcast.
HIDDEN_TOL_ABS = 1e-3
HIDDEN_TOL_REL = 0.02


def ps_servers(nodes: int) -> int:
    """sync_ps shards: one server host per 4 nodes (at least one), so its NICs scale with n."""
    return max(1, nodes // 4)


def scenario_dict(variant: str, nodes: int, s: Settings) -> dict[str, Any]:
    """The scenario of one grid point, built in code so every knob is visible here."""
    algo, workload_extra = VARIANTS[variant]
    model = s.model if isinstance(s.model, str) else dict(s.model)
    return {
        "name": f"layered-scaling-{variant}-{nodes}",
        "description": "illustrative settings; the paper's hardware and numbers were unavailable",
        "topology": {
            "preset": "cluster",
            "nodes": nodes,
            "gpus_per_node": s.gpus_per_node,
            "cores_per_node": s.cores_per_node,
            "intra_link": {"bandwidth": f"{s.intra_gBps}GB/s", "latency": s.latency_s},
            "inter_link": {"bandwidth": f"{s.inter_gbps}Gb/s", "latency": s.latency_s},
            "servers": ps_servers(nodes) if variant == "sync_ps" else 0,
        },
        "workload": {
            "model": model,
            "batch_size": s.batch_size,
            "compute_time": s.compute_s,
            "io_time": s.io_s,
            **workload_extra,
        },
        "algorithm": {**algo, "lr": 6.4, "momentum": 0.9},
        "run": {"iterations": s.iterations, "warmup": s.warmup, "seed": s.seed},
    }


def _communicator_path(result: Any, warmup: int, iterations: int) -> dict[str, float]:
    """Communicator comm-0's own spans per counted iteration: its scale step and all-reduce.

    The hiding condition is about these: after the intra-node reduce the
    communicator scales the sum and all-reduces it while the workers load, so
    the all-reduce hides iff scale + all-reduce <= one batch's load time.
    """
    totals = {"allreduce": 0.0, "update": 0.0}
    counted = range(warmup, iterations - 1)
    for sp in result.trace.spans:
        if sp.role == "comm-0" and sp.iteration in counted and sp.name in totals:
            totals[sp.name] += sp.dur
    n = max(len(counted), 1)
    return {"comm_allreduce_s": totals["allreduce"] / n, "comm_scale_s": totals["update"] / n}


def run_case(case: tuple[str, int, Settings]) -> dict[str, Any]:
    """Simulate one grid point; top-level so a worker process can run it."""
    variant, nodes, s = case
    t0 = time.perf_counter()
    scenario = scenario_from_dict(scenario_dict(variant, nodes, s), source=variant)
    result = simulate(scenario)
    out: dict[str, Any] = {k: float(result.metrics[k]) for k in METRIC_KEYS}
    out["workers"] = int(result.metrics["workers"])
    if variant == "layered_sgd":
        out.update(_communicator_path(result, s.warmup, s.iterations))
    if variant == "sync_ps":
        out["servers"] = ps_servers(nodes)
    out["wall_s"] = time.perf_counter() - t0  # for the pool's bookkeeping; not reported
    return out


Case = tuple[str, int, Settings]
Progress = Callable[[int, int], None]


def _cost_guess(case: Case) -> float:
    """Rough relative wall cost, so the slowest cases start first and the pool stays busy."""
    variant, nodes, _ = case
    per_tensor = variant in ("layered_sgd", "csgd")
    return nodes * (4.0 if per_tensor else 0.3) * (2.0 if variant == "layered_sgd" else 1.0)


def run_cases(
    cases: Sequence[Case], workers: int = 2, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Run every case, in ``workers`` independent processes when > 1 (one SimPy run each)."""
    results: list[dict[str, Any] | None] = [None] * len(cases)
    order = sorted(range(len(cases)), key=lambda i: -_cost_guess(cases[i]))
    done = 0
    if workers <= 1:
        for i in order:
            results[i] = run_case(cases[i])
            done += 1
            if progress:
                progress(done, len(cases))
        return [r for r in results if r is not None]
    # fork: the children inherit this module even when it was loaded by path (tests).
    # Every case is submitted before any progress thread starts, so fork sees one thread.
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures: dict[Future, int] = {pool.submit(run_case, cases[i]): i for i in order}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            done += 1
            if progress:
                progress(done, len(cases))
    return [r for r in results if r is not None]


def scaling_cases(s: Settings, nodes: Iterable[int], variants: Iterable[str]) -> list[Case]:
    return [(v, n, s) for v in variants for n in nodes]


def sweep_settings(s: Settings, io_ms: Iterable[float], bw_gbps: Iterable[float]) -> list[Settings]:
    return [replace(s, io_s=io / 1e3, inter_gbps=bw) for io in io_ms for bw in bw_gbps]


def sweep_cases(
    s: Settings, nodes: int, io_ms: Sequence[float], bw_gbps: Sequence[float]
) -> list[Case]:
    """The map's grid, plus one 1-node Layered SGD run: its exposed comm is intra-node only."""
    cases: list[Case] = [("layered_sgd", 1, s)]
    for cell in sweep_settings(s, io_ms, bw_gbps):
        cases += [(v, nodes, cell) for v in SWEEP_VARIANTS]
    return cases


def summarise_scaling(
    cases: Sequence[Case], results: Sequence[dict[str, Any]]
) -> dict[str, dict[int, dict[str, Any]]]:
    """Per variant and node count, with scaling efficiency against the variant's own 1 node.

    Efficiency = throughput(N) / (N × throughput(smallest node count)); with
    the smallest count 1 this is the definition asked for.
    """
    table: dict[str, dict[int, dict[str, Any]]] = {}
    for (v, n, _), r in zip(cases, results, strict=True):
        table.setdefault(v, {})[n] = {k: x for k, x in r.items() if k != "wall_s"}
    for rows in table.values():
        base_n = min(rows)
        base = rows[base_n]["throughput_samples_per_s"] / base_n
        for n, r in rows.items():
            r["scaling_efficiency"] = r["throughput_samples_per_s"] / (n * base) if base else 0.0
    return table


def summarise_sweep(
    cases: Sequence[Case],
    results: Sequence[dict[str, Any]],
    io_ms: Sequence[float],
    bw_gbps: Sequence[float],
) -> dict[str, Any]:
    """Layered SGD against each baseline in every (load time, bandwidth) cell.

    ``hidden`` is observed: exposed comm within 1 ms + 2 % of the 1-node run's
    (intra-node reduce + broadcast only). ``predicted_hidden`` is the
    analytic condition: the communicator's scale + all-reduce ≤ load time.
    """
    intra = results[0]["exposed_comm_time_s"]
    by: dict[tuple[float, float], dict[str, dict[str, Any]]] = {}
    for (v, _, s), r in zip(cases[1:], results[1:], strict=True):
        by.setdefault((round(s.io_s * 1e3, 6), s.inter_gbps), {})[v] = r
    cells = []
    for io in io_ms:
        for bw in bw_gbps:
            row = by[(round(io, 6), bw)]
            lay = row["layered_sgd"]
            t = lay["iteration_time_s"]
            best_bucketed = min(BUCKETED, key=lambda b: row[b]["iteration_time_s"])
            path = lay.get("comm_scale_s", 0.0) + lay.get("comm_allreduce_s", 0.0)
            cells.append(
                {
                    "io_ms": io,
                    "bw_gbps": bw,
                    "iteration_time_s": {v: row[v]["iteration_time_s"] for v in row},
                    "throughput": {v: row[v]["throughput_samples_per_s"] for v in row},
                    "exposed_comm_s": {v: row[v]["exposed_comm_time_s"] for v in row},
                    "overlap_ratio": {v: row[v]["overlap_ratio"] for v in row},
                    "layered_comm_allreduce_s": lay.get("comm_allreduce_s"),
                    "layered_comm_scale_s": lay.get("comm_scale_s"),
                    "layered_exposed_minus_intra_s": lay["exposed_comm_time_s"] - intra,
                    "speedup_vs_csgd": row["csgd"]["iteration_time_s"] / t,
                    "speedup_vs_bucketed": row[best_bucketed]["iteration_time_s"] / t,
                    "best_bucketed": best_bucketed,
                    "speedup_vs_bucketed_prefetch": row["bucketed_prefetch"]["iteration_time_s"]
                    / t,
                    "hidden": lay["exposed_comm_time_s"]
                    <= intra * (1 + HIDDEN_TOL_REL) + HIDDEN_TOL_ABS,
                    "predicted_hidden": path <= io / 1e3,
                }
            )
    # Hiding gain: Layered SGD at io = 0 hides nothing, and without hiding each
    # millisecond of loading would add one to the iteration (as it does for CSGD),
    # so (T(io=0) + io) / T(io) is what the overlap with loading alone buys.
    t0 = {c["bw_gbps"]: c["iteration_time_s"]["layered_sgd"] for c in cells if c["io_ms"] == 0}
    for c in cells:
        base = t0.get(c["bw_gbps"])
        t = c["iteration_time_s"]["layered_sgd"]
        c["hiding_gain"] = (base + c["io_ms"] / 1e3) / t if base is not None else None
    return {"intra_node_exposed_s": intra, "cells": cells}


def rounded(obj: Any, digits: int = 6) -> Any:
    """Floats to ``digits`` significant digits: the JSON line stays readable and diffable."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    return obj


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


# --------------------------------------------------------------------------- output


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.1f}"


def print_tables(
    console: Any, scaling: dict[str, Any], sweep: dict[str, Any], sweep_nodes: int
) -> None:
    """Rich tables to stdout: the scaling grid, then the map."""
    from rich.table import Table

    t = Table(title="Scaling (illustrative settings; the paper's numbers were unavailable)")
    for col in (
        "variant",
        "nodes",
        "GPUs",
        "iter ms",
        "img/s",
        "eff",
        "comm ms",
        "exposed ms",
        "overlap",
    ):
        t.add_column(col, justify="right" if col != "variant" else "left")
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
    m = Table(
        title=f"Layered SGD map at {sweep_nodes} nodes: speed-up = baseline iteration time / "
        f"Layered's (intra-node exposed {_ms(sweep['intra_node_exposed_s'])} ms)"
    )
    for col in (
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
    ):
        m.add_column(col, justify="right")
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
    s: Settings = ILLUSTRATIVE,
) -> list[str]:
    """Save scaling.png (throughput, efficiency, exposed comm vs nodes) and sweep_heatmap.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    out.mkdir(parents=True, exist_ok=True)
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
    fig.tight_layout()
    p = out / "scaling.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(str(p))

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
        fig.tight_layout()
        p = out / "sweep_heatmap.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(str(p))
    return paths


def run(
    settings: Settings = ILLUSTRATIVE,
    nodes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    variants: Sequence[str] = tuple(VARIANTS),
    sweep_nodes: int | None = 16,
    io_ms: Sequence[float] = (0, 50, 100, 200, 400),
    bw_gbps: Sequence[float] = (5, 10, 25, 100),
    workers: int = 2,
    out: Path | None = None,
    console: Any = None,
    progress_console: Any = None,
) -> dict[str, Any]:
    """The whole experiment; returns the JSON summary (tables and PNGs are side effects)."""
    t0 = time.perf_counter()
    s_cases = scaling_cases(settings, nodes, variants)
    w_cases = sweep_cases(settings, sweep_nodes, io_ms, bw_gbps) if sweep_nodes else []
    all_cases = s_cases + w_cases
    if progress_console is not None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=progress_console,
            auto_refresh=False,
        )
        task = bar.add_task("simulating grid", total=len(all_cases))
        with bar:

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done)
                bar.refresh()

            results = run_cases(all_cases, workers, tick)
    else:
        results = run_cases(all_cases, workers)
    scaling = summarise_scaling(s_cases, results[: len(s_cases)])
    sweep = summarise_sweep(w_cases, results[len(s_cases) :], io_ms, bw_gbps) if w_cases else {}
    if console is not None:
        print_tables(console, scaling, sweep, sweep_nodes or 0)
    pngs = plot(out, scaling, sweep, sweep_nodes or 0, settings) if out else []
    return rounded(
        {
            "experiment": "layered_scaling",
            "paper_numbers": PAPER_NUMBERS,
            "settings": settings.describe(),
            "variants": {
                v: {"algorithm": VARIANTS[v][0], "workload": VARIANTS[v][1]} for v in variants
            },
            "sync_ps_servers": "max(1, nodes // 4), each with an inter-node-speed NIC",
            "scaling": {v: {str(n): r for n, r in rows.items()} for v, rows in scaling.items()},
            "sweep_nodes": sweep_nodes,
            "sweep": sweep,
            "findings": findings(scaling, sweep),
            "png": pngs,
            "cases": len(all_cases),
            "workers": workers,
            "seconds": round(time.perf_counter() - t0, 2),
        }
    )


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="1,2,4,8,16,32,64", help="node counts (× 4 GPUs)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="subset of the variants")
    p.add_argument("--sweep-nodes", type=int, default=16, help="node count of the map (0 = skip)")
    p.add_argument("--io-ms", default="0,50,100,200,400", help="map: load time per batch")
    p.add_argument("--bw-gbps", default="5,10,25,100", help="map: inter-node bandwidth")
    p.add_argument("--iterations", type=int, default=ILLUSTRATIVE.iterations)
    p.add_argument("--warmup", type=int, default=ILLUSTRATIVE.warmup)
    p.add_argument("--compute-ms", type=float, default=ILLUSTRATIVE.compute_s * 1e3)
    p.add_argument("--io-ms-scaling", type=float, default=ILLUSTRATIVE.io_s * 1e3)
    p.add_argument("--model", default=ILLUSTRATIVE.model, help="catalogue model name")
    p.add_argument("--workers", type=int, default=2, help="simulation processes")
    p.add_argument("--out", default="runs/layered_scaling", help="PNG directory ('' = none)")
    args = p.parse_args(argv)

    from rich.console import Console

    settings = replace(
        ILLUSTRATIVE,
        iterations=args.iterations,
        warmup=args.warmup,
        compute_s=args.compute_ms / 1e3,
        io_s=args.io_ms_scaling / 1e3,
        model=args.model,
    )
    console = Console(width=140)
    console.print(
        "[bold]Layered SGD scaling (simulated).[/] The paper's hardware and numbers were NOT "
        "available: compute, load and link settings below are illustrative, not the paper's.\n"
        f"{json.dumps(settings.describe())}"
    )
    summary = run(
        settings,
        nodes=[int(v) for v in args.nodes.split(",") if v.strip()],
        variants=[v for v in args.variants.split(",") if v.strip()],
        sweep_nodes=args.sweep_nodes or None,
        io_ms=_floats(args.io_ms),
        bw_gbps=_floats(args.bw_gbps),
        workers=args.workers,
        out=Path(args.out) if args.out else None,
        console=console,
        progress_console=Console(stderr=True),
    )
    sys.stdout.flush()
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
