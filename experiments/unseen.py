"""Scenarios the validation suite does not hold: does the prediction carry over to them?

``pslab validate scenarios/validation`` scores the model on the scenarios it was built
beside, so a mechanism fitted to them, knowingly or not, would pass there and fail
elsewhere. This experiment draws new scenarios from the suite's emulated ones by changing
what a user would change: the worker count, the model's size, the compute and loading
times, the servers' shard count. The variants come in turn, in a drawn order, so eight
draws cover all eight. Each draw is seeded, checked like any scenario (a draw the variant
refuses, e.g. workers that do not split into its groups, is drawn again), written to
``DIR/scenarios/`` and validated as the suite is: calibrate, emulate, predict, compare.

The draws reach past the suite on purpose: models from 0.5M to 20M parameters (2 to 80 MB;
the suite holds 2M, 4M and 20M), 2 to 8 workers, up to 3 shards.

Prints the validation table and, as its last line, one JSON object: each scenario's
changes, its errors and the summary ``pslab validate`` gives (a scenario whose emulation
died is named under ``failed``, with its error: finding those is part of the point).
Usage: ``python -m experiments.unseen [-n 8] [--seed 1] [-o runs/unseen]``.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from rich.console import Console

from experiments.report import print_json_last, rounded
from pslab.scenario import Scenario, ScenarioError, load_scenario, set_path

if TYPE_CHECKING:
    from grpc_ps.launch import LaunchResult

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "scenarios" / "validation"
MAX_ITERATIONS = 30  # a drawn 80 MB model with eight workers runs about a second an iteration
SHARDED = ("sync_ps", "async_ps", "ssp", "easgd")  # the variants whose servers hold shards
DRAWS_PER_SCENARIO = 20  # tries before a base's refusals are taken as a fault of this script


def _changes(rng: np.random.Generator, base: dict[str, Any]) -> dict[str, Any]:
    """One draw's new settings for ``base``: what a user would vary."""
    params = float(np.exp(rng.uniform(math.log(0.5e6), math.log(20e6))))
    changes: dict[str, Any] = {
        "topology.workers_per_node": int(rng.integers(2, 9)),
        "workload.model.params": int(float(f"{params:.2g}")),
        "workload.compute_time": f"{int(rng.integers(10, 61))}ms",
        "workload.io_time": f"{int(rng.integers(0, 31))}ms",
        "run.iterations": min(int(base["run"]["iterations"]), MAX_ITERATIONS),
    }
    if base["algorithm"]["name"] in SHARDED:
        changes["topology.servers"] = int(rng.integers(1, 4))
    return changes


def bases_by_variant() -> dict[str, list[Path]]:
    """The suite's scenarios with emulated compute, by variant."""
    by_variant: dict[str, list[Path]] = {}
    for path in sorted(SUITE.glob("*_emulated.yaml")):
        variant = yaml.safe_load(path.read_text())["algorithm"]["name"]
        by_variant.setdefault(variant, []).append(path)
    return by_variant


def draw(
    rng: np.random.Generator, index: int, paths: list[Path], out: Path
) -> tuple[Path, str, dict[str, Any]]:
    """Scenario ``index``: one of ``paths`` (a variant's bases), changed and checked; its
    file, its name and its changes."""
    path = paths[int(rng.integers(len(paths)))]
    base = yaml.safe_load(path.read_text())
    for _ in range(DRAWS_PER_SCENARIO):
        changes = _changes(rng, base)
        data = copy.deepcopy(base)
        for dotted, value in changes.items():
            set_path(data, dotted, value)
        data["name"] = f"unseen-{index:02d}-{base['name']}"
        data["description"] = f"{base['name']}, changed: {changes}"
        target = out / f"unseen_{index:02d}.yaml"
        target.write_text(yaml.safe_dump(data, sort_keys=False))
        try:
            scenario = load_scenario(target)
        except ScenarioError:
            continue
        return target, scenario.name, {"base": base["name"], **changes}
    raise RuntimeError(f"{path.name}: no draw of {DRAWS_PER_SCENARIO} was a valid scenario")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m experiments.unseen", description=__doc__)
    p.add_argument("-n", "--count", type=int, default=8, help="scenarios to draw")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-o", "--out", default="runs/unseen", help="scenarios and runs go here")
    p.add_argument("--draw-only", action="store_true", help="write the scenarios, run nothing")
    args = p.parse_args(argv)

    out = Path(args.out)
    scenarios = out / "scenarios"
    scenarios.mkdir(parents=True, exist_ok=True)
    for stale in scenarios.glob("*.yaml"):  # a rerun with fewer draws validates only its own
        stale.unlink()
    rng = np.random.default_rng(args.seed)
    # every variant in turn, in a drawn order: the suite holds six sync_ps bases, one EASGD
    by_variant = bases_by_variant()
    order = [sorted(by_variant)[k] for k in rng.permutation(len(by_variant))]
    drawn = [draw(rng, i, by_variant[order[i % len(order)]], scenarios) for i in range(args.count)]
    if args.draw_only:
        print_json_last({"seed": args.seed, "drawn": {p.name: c for p, _, c in drawn}})
        return

    from pslab_cli.comparing import validate
    from pslab_cli.main import UsageError, run_launch

    def measure(scenario: Scenario, out_dir: Path | None) -> LaunchResult:
        return run_launch(scenario, out_dir)

    console = Console(stderr=True)
    failures = (UsageError, ScenarioError)  # an emulation that died, a run that cannot fit
    result = validate(scenarios, out / "runs", measure, console, failures=failures)
    Console().print(result["table"])
    summary = result["summary"]
    for _, name, changes in drawn:
        entry = summary["per_scenario"].get(name)
        if entry is not None:
            entry["changes"] = changes
    print_json_last(rounded({"seed": args.seed, **summary}))


if __name__ == "__main__":
    main()
