"""Netns emulation against the simulator: a PS incast and a two-level cluster (needs root).

Each host of the scenario runs in its own network namespace, its link shaped by ``tc tbf``
to the scenario's bandwidth (``emulation.network: netns``), so the emulator measures what
the simulator predicts: a server link shared by n pushes, a slow inter-host link under a
fast intra-host one.

1. PS incast (``scenarios/netns/ps_incast.yaml``): sync_ps, n worker hosts, one server host.
   Per steady-state iteration, the push phase (first push start → last push end) and the
   pull phase (last push end → last pull end; holds the server's apply) against n·M/B and
   against ``sim.run.simulate`` on the same scenario.
2. Two-level (``scenarios/netns/two_level.yaml``): H hosts × G workers; Layered SGD,
   allreduce (gloo ring) and sync_ps measured and simulated: iteration time, its error,
   and the ordering.

Prints a table and, on the last line, JSON with every number. ``--quick`` shortens the runs.
Run as root, from the repository root: ``sudo .venv/bin/python -m experiments.netns_validation``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from experiments.grid import run_grid
from experiments.report import print_json_last
from grpc_ps.launch import launch
from pslab.algorithm_config import switch_variant
from pslab.scenario import Scenario, load_scenario
from pslab.trace import Trace
from sim.run import simulate

ROOT = Path(__file__).resolve().parent.parent
INCAST = ROOT / "scenarios" / "netns" / "ps_incast.yaml"
TWO_LEVEL = ROOT / "scenarios" / "netns" / "two_level.yaml"
VARIANTS = ("layered_sgd", "allreduce", "sync_ps")


def phases(trace: Trace, warmup: int, iterations: int) -> dict[str, Any]:
    """Push and pull phase of each steady-state iteration, from the workers' spans.

    Push phase: first push start → last push end; pull phase: last push end → last pull end
    (so it holds the server's apply of the round). Returns the medians (``push_s``,
    ``pull_s``) and every iteration's values.
    """
    push: dict[int, list[tuple[float, float]]] = defaultdict(list)
    pull: dict[int, list[float]] = defaultdict(list)
    for s in trace.spans:
        if not s.role.startswith("worker-") or not warmup <= s.iteration < iterations - 1:
            continue
        if s.name == "push":
            push[s.iteration].append((s.start, s.end))
        elif s.name == "pull":
            pull[s.iteration].append(s.end)
    push_s, pull_s = [], []
    for i, spans in sorted(push.items()):
        last_push = max(e for _, e in spans)
        push_s.append(last_push - min(s for s, _ in spans))
        if pull[i]:
            pull_s.append(max(pull[i]) - last_push)
    return {
        "push_s": statistics.median(push_s),
        "pull_s": statistics.median(pull_s),
        "push_each_s": push_s,
        "pull_each_s": pull_s,
    }


def pct(a: float, b: float) -> float:
    """100·(a − b)/b."""
    return 100.0 * (a - b) / b


def link_bytes(metrics: dict[str, Any], name: str) -> float:
    return next((link["bytes"] for link in metrics["links"] if link["name"] == name), 0.0)


def incast(scenario: Scenario) -> dict[str, Any]:
    run = scenario.run
    n = scenario.topology.n_workers
    model_bytes = scenario.workload.model.nbytes  # type: ignore[union-attr]
    server_link = scenario.topology.server_link or scenario.topology.inter_link
    nmb = n * model_bytes / server_link.bandwidth
    sim = simulate(scenario)
    emu = launch(scenario)
    p_sim = phases(sim.trace, run.warmup, run.iterations)
    p_emu = phases(emu.trace, run.warmup, run.iterations)
    counted = run.iterations  # every push and pull crosses the server's link
    out: dict[str, Any] = {
        "workers": n,
        "model_bytes": model_bytes,
        "bandwidth_Bps": server_link.bandwidth,
        "nMB_s": nmb,
        "sim": {**p_sim, "iteration_s": sim.metrics["iteration_time_s"]},
        "emu": {**p_emu, "iteration_s": emu.metrics["iteration_time_s"]},
        "links": {
            "sw->ps0": link_bytes(emu.metrics, "sw->ps0"),
            "ps0->sw": link_bytes(emu.metrics, "ps0->sw"),
            "payload_each_way": n * model_bytes * counted,
        },
    }
    for phase in ("push_s", "pull_s"):
        out[f"{phase[:-2]}_vs_nMB_pct"] = pct(p_emu[phase], nmb)
        out[f"{phase[:-2]}_vs_sim_pct"] = pct(p_emu[phase], p_sim[phase])
    out["iteration_vs_sim_pct"] = pct(out["emu"]["iteration_s"], out["sim"]["iteration_s"])
    return out


def measure(scenario: Scenario) -> dict[str, Any]:
    """One variant simulated and emulated: predicted against measured time and traffic."""
    t0 = time.perf_counter()
    sim = simulate(scenario)
    emu = launch(scenario)
    return {
        "sim_s": sim.metrics["iteration_time_s"],
        "emu_s": emu.metrics["iteration_time_s"],
        "error_pct": pct(sim.metrics["iteration_time_s"], emu.metrics["iteration_time_s"]),
        "emu_comm_s": emu.metrics["comm_time_s"],
        "sim_comm_s": sim.metrics["comm_time_s"],
        "emu_exposed_s": emu.metrics["exposed_comm_time_s"],
        "sim_exposed_s": sim.metrics["exposed_comm_time_s"],
        "emu_links": emu.metrics["links"],
        "sim_links": sim.metrics["links"],
        "wall_s": time.perf_counter() - t0,
    }


def two_level(base: Scenario) -> dict[str, Any]:
    scenarios = []
    for name in VARIANTS:
        data = base.model_dump(mode="json")
        data["algorithm"] = switch_variant(data["algorithm"], name)
        scenarios.append(Scenario.model_validate(data))
    # one at a time (jobs=1): an emulated run needs the machine's cores to itself
    out = dict(zip(VARIANTS, run_grid(measure, scenarios), strict=True))
    sim_order = sorted(VARIANTS, key=lambda v: out[v]["sim_s"])
    emu_order = sorted(VARIANTS, key=lambda v: out[v]["emu_s"])
    return {"variants": out, "sim_order": sim_order, "emu_order": emu_order}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer iterations")
    p.add_argument("--only", choices=["incast", "two_level"], help="run one part")
    p.add_argument("--set", action="append", default=[], help="override, as in pslab --set")
    args = p.parse_args(argv)
    overrides = (["run.iterations=5", "run.warmup=1"] if args.quick else []) + args.set
    result: dict[str, Any] = {}
    if args.only in (None, "incast"):
        r = result["incast"] = incast(load_scenario(INCAST, overrides))
        print(
            f"PS incast: {r['workers']} workers x {r['model_bytes'] / 1e6:.0f} MB through one "
            f"{r['bandwidth_Bps'] * 8 / 1e6:.0f} Mbit/s server link, n·M/B = {r['nMB_s']:.3f} s"
        )
        print()
        print("| phase | measured (s) | range | simulated (s) | vs n·M/B | vs simulated |")
        print("|---|---:|---:|---:|---:|---:|")
        for phase in ("push", "pull"):
            each = r["emu"][phase + "_each_s"]
            print(
                f"| {phase} | {r['emu'][phase + '_s']:.3f} | {min(each):.3f}–{max(each):.3f} "
                f"| {r['sim'][phase + '_s']:.3f} | {r[phase + '_vs_nMB_pct']:+.1f} % "
                f"| {r[phase + '_vs_sim_pct']:+.1f} % |"
            )
        print(
            f"| iteration | {r['emu']['iteration_s']:.3f} | | {r['sim']['iteration_s']:.3f} "
            f"| | {r['iteration_vs_sim_pct']:+.1f} % |"
        )
        links = r["links"]
        print(
            f"\nkernel counters: sw->ps0 {links['sw->ps0'] / 1e6:.1f} MB, ps0->sw "
            f"{links['ps0->sw'] / 1e6:.1f} MB; pushed/pulled payload "
            f"{links['payload_each_way'] / 1e6:.1f} MB each way\n"
        )
    if args.only in (None, "two_level"):
        r = result["two_level"] = two_level(load_scenario(TWO_LEVEL, overrides))
        print(
            "Two-level: iteration time and communication per worker (s), n0's uplink (MB); "
            "sim. error = (simulated - measured) / measured\n"
        )
        print(
            "| variant | measured | simulated | sim. error | comm meas. / sim. "
            "| exposed meas. / sim. | n0->sw meas. / sim. |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, v in r["variants"].items():
            up = [
                next((x["bytes"] for x in v[k] if x["name"] == "n0->sw"), 0.0) / 1e6
                for k in ("emu_links", "sim_links")
            ]
            print(
                f"| {name} | {v['emu_s']:.3f} | {v['sim_s']:.3f} | {v['error_pct']:+.1f} % "
                f"| {v['emu_comm_s']:.3f} / {v['sim_comm_s']:.3f} "
                f"| {v['emu_exposed_s']:.3f} / {v['sim_exposed_s']:.3f} "
                f"| {up[0]:.1f} / {up[1]:.1f} |"
            )
        print(f"\norder measured:  {' < '.join(r['emu_order'])}")
        print(f"order simulated: {' < '.join(r['sim_order'])}\n")
    print_json_last(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
