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
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

import pslab
from grpc_ps.lifeline import Interrupted
from pslab import units
from pslab.outputs import check_out_dir
from pslab.profile_history import KEPT
from pslab.scenario import Scenario, ScenarioError, load_scenario
from pslab_cli import collect as collect_cli
from pslab_cli import model_cmd
from pslab_cli import prepare as prepare_cli
from pslab_cli import serve as serve_cli
from pslab_cli import worker as worker_cli

if TYPE_CHECKING:
    from grpc_ps.launch import LaunchResult

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
    from pslab.budget import check_budget
    from pslab_cli.sim_progress import sim_progress
    from sim.run import simulate, simulate_to

    out_dir = check_out_dir(args.out) if args.out is not None else None
    scenario, base = _load(args)
    if not args.force:
        check_budget(scenario, args.scenario or "the quickstart")
    with sim_progress(err, scenario.run.iterations) as on_start:
        if out_dir is not None:
            result = simulate_to(scenario, out_dir, base, on_start)
        else:
            result = simulate(scenario, base, on_start)
    if args.json:
        print(json.dumps(result.metrics))
    else:
        out.print(summary_table(f"simulated: {scenario.name}", result.metrics))
        if args.out:
            out.print(f"wrote {args.out}/metrics.json and {args.out}/trace.json")
    return 0


def run_launch(scenario: Scenario, out_dir: Path | None, force: bool = False) -> LaunchResult:
    """Emulate with a progress bar over all workers' iterations; LaunchError → UsageError.

    A run too big for this machine is refused before torch is even imported (under a
    second), unless ``force``."""
    from grpc_ps.fit import check_fits
    from pslab.topology import lay_out

    scenario, _ = lay_out(scenario)  # a graph's workers are its hosts', not topology.nodes
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
    return result


def cmd_launch(args: argparse.Namespace) -> int:
    if args.network:  # --network X is --set emulation.network=X, applied last
        args.set.append(f"emulation.network={args.network}")
    out_dir = check_out_dir(args.out) if args.out is not None else None
    scenario, _ = _load(args)
    metrics = run_launch(scenario, out_dir, force=args.force).metrics
    if args.json:
        print(json.dumps(metrics))
    else:
        out.print(summary_table(f"measured: {scenario.name}", metrics))
        if args.out:
            out.print(f"wrote {args.out}/metrics.json and {args.out}/trace.json")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from grpc_ps.calibrate import add_calibration, cache_path, calibrate, calibrations

    if args.out is not None and args.history is not None:
        raise UsageError("--history adds to this machine's history: drop -o")
    scenario = load_scenario(Path(args.scenario), args.set) if args.scenario else None
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("calibrating", total=1.0)

        def step(what: str, frac: float) -> None:
            bar.update(task, completed=frac, description=what)

        added = 0
        if args.out is not None:
            calibrate(scenario, step).save(Path(args.out))
        elif args.history is None:
            add_calibration(scenario, step).save(cache_path())
            added = 1
        else:
            while calibrations() < min(args.history, KEPT):
                add_calibration(scenario, step).save(cache_path())
                added += 1
    if args.out is not None:
        out.print(f"wrote {args.out}")
        return 0
    out.print(
        f"{added} calibration(s) added; compare's medians now stand on {calibrations()} "
        f"({cache_path()})"
    )
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
    out_dir = check_out_dir(args.out if args.out is not None else "runs/compare")
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
    from pslab_cli.comparing import machine_note, validate

    directory = Path(args.directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory of scenarios")
    result = validate(
        directory,
        Path(args.out),
        lambda sc, d: run_launch(sc, d),
        err,
        args.repeat,
        failures=(UsageError, ScenarioError),  # an emulation that died, a run that cannot fit
    )
    out.print(result["table"])
    note = machine_note(result["summary"]["machine"])
    if note:
        err.print(note, highlight=False, markup=False)
    print(json.dumps(result["summary"]))
    failed = result["summary"]["failed"]
    if failed:
        err.print(f"{len(failed)} scenario(s) failed: {', '.join(failed)}")
    return 1 if failed else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pslab_cli.sweep import sweep, sweep_table
    from pslab_cli.sweep_grid import is_sweep_file

    if not args.vary and not is_sweep_file(Path(args.scenario)):
        raise UsageError("sweep needs a sweep file or at least one --vary key.path=v1,v2,...")
    if args.scheduler and (args.jobs or args.slurm):
        raise UsageError("--scheduler uses that cluster's workers: drop -j and --slurm")
    report = sweep(
        Path(args.scenario),
        args.vary,
        args.set,
        Path(args.out),
        err,
        args.scheduler,
        args.jobs,
        Path(args.slurm) if args.slurm else None,
        args.trace,
    )
    out.print(sweep_table(report))
    out.print(
        f"{report['computed']} points computed, {report['cached']} from the cache; "
        f"wrote {args.out}/sweep.json, {args.out}/sweep.png and {args.out}/points/"
    )
    print(json.dumps(report))
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
    p.add_argument(
        "--force", action="store_true", help="run it even past the size budget (pslab/budget.py)"
    )
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

    prepare_cli.add_parser(sub, scenario_args)  # multi-host: prepare, worker, collect
    worker_cli.add_parser(sub)
    collect_cli.add_parser(sub)

    p = sub.add_parser("calibrate", help="measure this machine's emulator costs into a profile")
    p.add_argument("scenario", nargs="?", help="also measure this scenario's model compute")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.add_argument(
        "-o",
        "--out",
        help="profile YAML to write (default: add to this machine's history of calibrations, "
        "whose medians compare uses)",
    )
    p.add_argument(
        "--history",
        type=_positive,
        metavar="N",
        help="calibrate only until the machine's history holds N recent calibrations "
        f"(at most {KEPT} count; none is taken if it already does)",
    )
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

    p = sub.add_parser("sweep", help="simulate a grid of variants and clusters, on Dask")
    p.add_argument("scenario", help="a scenario, or a sweep file (docs: per-variant settings)")
    p.add_argument("--vary", action="append", default=[], metavar="KEY.PATH=V1,V2,...")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.add_argument("-o", "--out", default="runs/sweep", help="output directory (and cache)")
    p.add_argument(
        "-j", "--jobs", type=_positive, help="local Dask workers (default: one per core)"
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    p.add_argument("--slurm", metavar="CONFIG", help="SLURMCluster settings (dask-jobqueue)")
    p.add_argument("--trace", action="store_true", help="write each point's trace.json too")
    p.set_defaults(fn=cmd_sweep)

    p = sub.add_parser("validate", help="compare over a suite of scenarios")
    p.add_argument("directory", nargs="?", default="scenarios/validation")
    p.add_argument("-o", "--out", default="runs/validate", help="output directory")
    _repeat_arg(p)
    p.set_defaults(fn=cmd_validate)

    serve_cli.add_parsers(sub, scenario_args)  # serve, certs
    model_cmd.add_parser(sub)  # model from-torch
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
