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
from grpc_ps.lifeline import Interrupted
from pslab import units
from pslab.scenario import Scenario, ScenarioError, load_scenario
from pslab_cli import serve as serve_cli

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


def run_launch(scenario: Scenario, out_dir: Path | None, force: bool = False) -> dict[str, Any]:
    """Emulate with a progress bar over all workers' iterations; LaunchError → UsageError.

    A run too big for this machine is refused before torch is even imported (under a
    second), unless ``force``."""
    from grpc_ps.fit import check_fits

    if not force:
        check_fits(scenario)
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
            result = launch(scenario, out_dir, on_progress=progress, force=force)
        except LaunchError as e:
            raise UsageError(f"emulation failed: {e}") from None
        except (KeyboardInterrupt, Interrupted):
            if out_dir is not None and (out_dir / "metrics.json").exists():
                err.print(f"roles stopped; what was measured is in {out_dir} (incomplete)")
            raise
    return result.metrics


def cmd_launch(args: argparse.Namespace) -> int:
    if args.network:  # --network X is --set emulation.network=X, applied last
        args.set.append(f"emulation.network={args.network}")
    scenario, _ = _load(args)
    metrics = run_launch(scenario, Path(args.out) if args.out else None, force=args.force)
    if args.json:
        print(json.dumps(metrics))
    else:
        out.print(summary_table(f"measured: {scenario.name}", metrics))
        if args.out:
            out.print(f"wrote {args.out}/metrics.json and {args.out}/trace.json")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from grpc_ps.calibrate import calibrate

    scenario = load_scenario(Path(args.scenario), args.set) if args.scenario else None
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("calibrating", total=1.0)
        profile = calibrate(
            scenario, lambda what, frac: bar.update(task, completed=frac, description=what)
        )
    profile.save(Path(args.out))
    out.print(f"wrote {args.out}")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}")
    return value


def _repeat_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--repeat",
        type=_positive,
        default=1,
        metavar="N",
        help="emulate N times and compare with the median run (runs vary by 10-24%% here)",
    )


def cmd_compare(args: argparse.Namespace) -> int:
    from pslab_cli.comparing import compare, compare_table, replay

    if bool(args.sim) != bool(args.measured):
        raise UsageError("--sim and --measured go together (earlier runs of both sides)")
    if args.replay:
        if args.scenario or args.sim or args.set:
            raise UsageError("--replay takes its scenario from the run it replays; drop the rest")
        out_dir = Path(args.out or Path(args.replay) / "replayed")
        report = replay(Path(args.replay), out_dir)
        out.print(compare_table(report))
        out.print(f"wrote {out_dir}/compare.json")
        return 0 if report["replay"]["identical"] else 1
    scenario, _ = _load(args)
    out_dir = Path(args.out or "runs/compare")
    report = compare(
        scenario,
        out_dir,
        lambda sc, d: run_launch(sc, d),
        Path(args.sim) if args.sim else None,
        Path(args.measured) if args.measured else None,
        console=err,
        repeat=args.repeat,
    )
    out.print(compare_table(report))
    out.print(f"wrote {out_dir}/compare.json, timeline.png and breakdown.png")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from pslab_cli.comparing import validate

    directory = Path(args.directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory of scenarios")
    result = validate(directory, Path(args.out), lambda sc, d: run_launch(sc, d), err, args.repeat)
    out.print(result["table"])
    print(json.dumps(result["summary"]))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pslab_cli.sweep import sweep, sweep_table

    if not args.vary:
        raise UsageError("sweep needs at least one --vary key.path=v1,v2,...")
    report = sweep(Path(args.scenario), args.vary, args.set, Path(args.out), err)
    out.print(sweep_table(report))
    out.print(f"wrote {args.out}/sweep.json and {args.out}/sweep.png")
    print(json.dumps(report))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from grpc_ps.roles import rank_from_env, run_worker

    run_dir = Path(args.run_dir)
    if not (run_dir / "scenario.yaml").exists():
        raise UsageError(
            f"{run_dir}: no scenario.yaml (a run directory that launch or serve wrote)"
        )
    try:
        rank = args.rank if args.rank is not None else rank_from_env()
    except ValueError as e:
        raise UsageError(str(e)) from None
    world = load_scenario(run_dir / "scenario.yaml").topology.n_workers
    if not 0 <= rank < world:
        raise UsageError(
            f"rank {rank} is outside this run's world of {world} workers (0-{world - 1})"
        )
    run_worker(run_dir, rank)
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
    p.add_argument(
        "--network",
        choices=["loopback", "netns"],
        help="loopback: all on 127.0.0.1; netns: a namespace per host, links shaped (root)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="start the run even where it needs more processes or memory than this machine has",
    )
    p.set_defaults(fn=cmd_launch)

    p = sub.add_parser("worker", help="run one worker of a run directory (multi-host runs)")
    p.add_argument("--run-dir", required=True, help="shared run directory (scenario, endpoints)")
    p.add_argument(
        "--rank", type=int, help="default: RANK, SLURM_PROCID, OMPI_COMM_WORLD_RANK or PMI_RANK"
    )
    p.set_defaults(fn=cmd_worker)

    p = sub.add_parser("calibrate", help="measure this machine's emulator costs into a profile")
    p.add_argument("scenario", nargs="?", help="also measure this scenario's model compute")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.add_argument("-o", "--out", required=True, help="profile YAML to write")
    p.set_defaults(fn=cmd_calibrate)

    p = sub.add_parser("compare", help="simulate and emulate a scenario; error per metric")
    scenario_args(p)
    p.add_argument("-o", "--out", help="output directory (default runs/compare)")
    p.add_argument("--sim", help="take the prediction from this earlier `pslab sim -o` run")
    p.add_argument(
        "--replay",
        metavar="DIR",
        help="predict again from what an earlier compare -o DIR recorded, and compare",
    )
    p.add_argument("--measured", help="take the measurement from this earlier launch run")
    _repeat_arg(p)
    p.set_defaults(fn=cmd_compare)

    p = sub.add_parser("sweep", help="simulate a grid of variants and clusters, in parallel")
    p.add_argument("scenario")
    p.add_argument("--vary", action="append", default=[], metavar="KEY.PATH=V1,V2,...")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.add_argument("-o", "--out", default="runs/sweep", help="output directory")
    p.set_defaults(fn=cmd_sweep)

    p = sub.add_parser("validate", help="compare over a suite of scenarios")
    p.add_argument("directory", nargs="?", default="scenarios/validation")
    p.add_argument("-o", "--out", default="runs/validate", help="output directory")
    _repeat_arg(p)
    p.set_defaults(fn=cmd_validate)

    serve_cli.add_parsers(sub, scenario_args)  # serve, certs
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
    except Interrupted as e:  # SIGTERM (timeout, scancel) or SIGHUP: roles already stopped
        err.print(f"interrupted by {e}")
        return 128 + e.signum


if __name__ == "__main__":
    sys.exit(main())
