"""Which variant is fastest on this cluster? Every SGD variant of pslab, simulated on one shape.

The README's first table comes from here. The cluster (4 nodes x 4 GPUs,
PCIe inside a node, 25 Gb/s between nodes, 2 parameter-server hosts) and the
workload (ResNet-50, 64 per GPU, 100 ms compute, 60 ms loading per batch)
are illustrative settings, not measurements. Change them with flags to ask
the question of your own cluster: ``python -m experiments.which_variant --help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from experiments.grid import run_grid
from experiments.report import new_table, print_json_last
from pslab.scenario import scenario_from_dict
from sim.run import simulate

VARIANTS: list[tuple[str, dict]] = [
    ("sync_ps", {}),
    ("async_ps", {}),
    ("ssp", {"staleness_bound": 2}),
    ("allreduce", {}),
    ("allreduce", {"overlap_backward": True, "allreduce_algo": "hierarchical"}),
    ("layered_sgd", {}),
    ("easgd", {"tau": 4}),
    ("leader_sgd", {"tau": 4}),
    ("local_sgd", {"tau": 4}),
]


def scenario(args: argparse.Namespace, name: str, extra: dict) -> dict:
    return {
        "name": f"which-variant-{name}",
        "topology": {
            "preset": "cluster",
            "nodes": args.nodes,
            "gpus_per_node": args.gpus,
            "intra_link": {"bandwidth": "16GB/s", "latency": "2us"},
            "inter_link": {"bandwidth": args.bandwidth, "latency": "10us"},
            "servers": 2,
        },
        "workload": {
            "model": args.model,
            "batch_size": 64,
            "compute_time": args.compute,
            "io_time": args.io,
        },
        "algorithm": {"name": name, **extra},
        "run": {"iterations": 12, "warmup": 2},
    }


METRICS = (
    "iteration_time_s",
    "throughput_samples_per_s",
    "comm_time_s",
    "exposed_comm_time_s",
    "overlap_ratio",
)


def metrics(scenario: dict[str, Any]) -> dict[str, float]:
    """The compared metrics of one simulated scenario: the grid's task."""
    m = simulate(scenario_from_dict(scenario)).metrics
    return {k: m[k] for k in METRICS}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--gpus", type=int, default=4)
    p.add_argument("--bandwidth", default="25Gb/s")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--compute", default="100ms")
    p.add_argument("--io", default="60ms")
    args = p.parse_args(argv)
    table = new_table(
        f"{args.nodes} nodes x {args.gpus} GPUs, {args.model}, {args.bandwidth}",
        ("variant", "iteration ms", "samples/s", "comm ms", "exposed ms", "overlap"),
    )
    results = run_grid(
        metrics,
        [scenario(args, name, extra) for name, extra in VARIANTS],
        console=Console(stderr=True),
    )
    rows = []
    for (name, extra), m in zip(VARIANTS, results, strict=True):
        label = name + (" (bucketed, overlapped)" if extra.get("overlap_backward") else "")
        rows.append({"variant": label, **m})
        table.add_row(
            label,
            f"{1e3 * m['iteration_time_s']:.0f}",
            f"{m['throughput_samples_per_s']:.0f}",
            f"{1e3 * m['comm_time_s']:.0f}",
            f"{1e3 * m['exposed_comm_time_s']:.0f}",
            f"{m['overlap_ratio']:.2f}",
        )
    Console().print(table)
    best = max(rows, key=lambda r: r["throughput_samples_per_s"])
    print_json_last({"settings": vars(args), "variants": rows, "fastest": best["variant"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
