"""The ``pslab`` command.

It sits above both executors (the import-linter contract keeps the shared
package from reaching up here). Every subcommand turns a user mistake into a
one-paragraph message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import pslab
from pslab import units
from pslab.scenario import Scenario, ScenarioError, load_scenario

QUICKSTART = Path(pslab.__file__).resolve().parent / "data" / "quickstart.yaml"

err = Console(stderr=True)
out = Console()


class UsageError(Exception):
    """A mistake in how the command was called; printed without a traceback."""


def _load(args: argparse.Namespace) -> tuple[Scenario, Path]:
    path = Path(args.scenario) if args.scenario else QUICKSTART
    return load_scenario(path, args.set), path.parent


def summary_table(title: str, metrics: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("iteration_time_s", "compute_time_s", "io_time_s", "comm_time_s"):
        table.add_row(key, units.fmt_time(metrics[key]))
    table.add_row("exposed_comm_time_s", units.fmt_time(metrics["exposed_comm_time_s"]))
    table.add_row("overlap_ratio", f"{metrics['overlap_ratio']:.3f}")
    table.add_row("throughput_samples_per_s", f"{metrics['throughput_samples_per_s']:.1f}")
    st = metrics["staleness"]
    table.add_row("staleness mean / max", f"{st['mean']:.2f} / {st['max']}")
    for extra in ("final_loss", "test_accuracy", "events", "wall_time_s"):
        if metrics.get(extra) is not None:
            value = metrics[extra]
            table.add_row(extra, f"{value:.4g}" if isinstance(value, float) else str(value))
    busiest = sorted(metrics.get("links", []), key=lambda d: -d["utilization"])[:3]
    for link in busiest:
        table.add_row(
            f"link {link['name']}",
            f"{units.fmt_bytes(link['bytes'])}, {100 * link['utilization']:.0f}% busy",
        )
    return table


def cmd_sim(args: argparse.Namespace) -> int:
    from sim.run import simulate, simulate_to

    scenario, base = _load(args)
    result = simulate_to(scenario, Path(args.out), base) if args.out else simulate(scenario, base)
    if args.json:
        print(json.dumps(result.metrics))
    else:
        out.print(summary_table(f"simulated: {scenario.name}", result.metrics))
        if args.out:
            out.print(f"wrote {args.out}/metrics.json and {args.out}/trace.json")
    return 0


def run_launch(scenario: Scenario, out_dir: Path | None) -> dict[str, Any]:
    """Emulate with a progress bar over all workers' iterations; LaunchError → UsageError."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from grpc_ps.launch import LaunchError, launch

    total = scenario.topology.n_workers * scenario.run.iterations
    reached: dict[int, int] = {}
    with Progress(
        TextColumn("[bold]emulating[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} worker-iterations"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(scenario.name, total=total)

        def progress(rank: int, iteration: int) -> None:
            reached[rank] = iteration
            bar.update(task, completed=sum(i + 1 for i in reached.values()))

        try:
            result = launch(scenario, out_dir, on_progress=progress)
        except LaunchError as e:
            raise UsageError(f"emulation failed: {e}") from None
    return result.metrics


def cmd_launch(args: argparse.Namespace) -> int:
    scenario, _ = _load(args)
    metrics = run_launch(scenario, Path(args.out) if args.out else None)
    if args.json:
        print(json.dumps(metrics))
    else:
        out.print(summary_table(f"measured: {scenario.name}", metrics))
        if args.out:
            out.print(f"wrote {args.out}/metrics.json and {args.out}/trace.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pslab", description="Simulate and emulate parameter-server SGD variants."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def scenario_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("scenario", nargs="?", help="scenario YAML (default: the quickstart)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY.PATH=VALUE",
            help="override a scenario field, e.g. --set topology.nodes=16",
        )

    p = sub.add_parser("sim", help="predict a scenario with the SimPy model")
    scenario_args(p)
    p.add_argument("-o", "--out", help="write metrics.json and trace.json here")
    p.add_argument("--json", action="store_true", help="print the metrics JSON on stdout")
    p.set_defaults(fn=cmd_sim)

    p = sub.add_parser("launch", help="emulate a scenario: real processes, gRPC, torch")
    scenario_args(p)
    p.add_argument("-o", "--out", help="write metrics.json and trace.json here")
    p.add_argument("--json", action="store_true", help="print the metrics JSON on stdout")
    p.set_defaults(fn=cmd_launch)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    fn: Callable[[argparse.Namespace], int] = args.fn
    try:
        return fn(args)
    except (ScenarioError, UsageError) as e:
        err.print(f"error: {e}", style="red", highlight=False, markup=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
