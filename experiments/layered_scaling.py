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

Run: ``python -m experiments.layered_scaling [--nodes 1,2,4,8,16,32,64]
[--sweep-nodes 16] [--io-ms 0,50,100,200,400] [--bw-gbps 5,10,25,100]
[--iterations 5] [--workers 2] [--out runs/layered_scaling]``. The last
stdout line is one JSON object with every figure; progress goes to stderr.
The map also reports a *hiding gain*, (T(io=0) + io) / T(io): what overlapping
with loading buys Layered SGD over itself, as opposed to what its hierarchy
(one communicator per node in the inter-node ring) buys over CSGD.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from experiments.grid import run_grid
from experiments.layered_scaling_report import findings, plot, print_tables
from experiments.report import floats, ints, names, out_dir, present, rounded
from pslab.compare import COMPARED
from pslab.scenario import scenario_from_dict
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


Case = tuple[str, int, Settings]  # (variant, nodes, settings): one grid point


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


def run_case(case: Case) -> dict[str, Any]:
    """Simulate one grid point; top-level so a worker process can run it."""
    variant, nodes, s = case
    scenario = scenario_from_dict(scenario_dict(variant, nodes, s), source=variant)
    result = simulate(scenario)
    out: dict[str, Any] = {k: float(result.metrics[k]) for k in METRIC_KEYS}
    out["workers"] = int(result.metrics["workers"])
    if variant == "layered_sgd":
        out.update(_communicator_path(result, s.warmup, s.iterations))
    if variant == "sync_ps":
        out["servers"] = ps_servers(nodes)
    return out


def _cost_guess(case: Case) -> float:
    """Rough relative wall cost, so the slowest cases start first and the pool stays busy."""
    variant, nodes, _ = case
    per_tensor = variant in ("layered_sgd", "csgd")
    return nodes * (4.0 if per_tensor else 0.3) * (2.0 if variant == "layered_sgd" else 1.0)


def run_cases(cases: Sequence[Case], workers: int = 2, console: Any = None) -> list[dict[str, Any]]:
    """Every case, in ``workers`` forked processes when > 1 (SimPy only: fork is safe)."""
    return run_grid(
        run_case, cases, jobs=workers, cost=_cost_guess, start_method="fork", console=console
    )


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
        table.setdefault(v, {})[n] = dict(r)
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
    results = run_cases(all_cases, workers, progress_console)
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

    settings = replace(
        ILLUSTRATIVE,
        iterations=args.iterations,
        warmup=args.warmup,
        compute_s=args.compute_ms / 1e3,
        io_s=args.io_ms_scaling / 1e3,
        model=args.model,
    )
    return present(
        "[bold]Layered SGD scaling (simulated).[/] The paper's hardware and numbers were NOT "
        "available: compute, load and link settings below are illustrative, not the paper's.",
        settings.describe(),
        lambda console, progress: run(
            settings,
            nodes=ints(args.nodes),
            variants=names(args.variants),
            sweep_nodes=args.sweep_nodes or None,
            io_ms=floats(args.io_ms),
            bw_gbps=floats(args.bw_gbps),
            workers=args.workers,
            out=out_dir(args.out),
            console=console,
            progress_console=progress,
        ),
        width=140,
    )


if __name__ == "__main__":
    raise SystemExit(main())
