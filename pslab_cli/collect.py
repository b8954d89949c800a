"""``pslab collect RUN``: a multi-host run's traces, turned into what ``pslab launch`` writes.

Every role of a prepared run leaves its spans in ``RUN/traces/`` (workers when
they finish, ``pslab serve --run-dir`` shards when stopped) and each worker its
final parameters; collect merges them into metrics.json, trace.json and
scenario.yaml (``-o``, default ``RUN/results``) through the same code as launch.
A worker that left no trace is named, rather than counted as a fast one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="merge a multi-host run's traces into its metrics")
    p.add_argument("run_dir", type=Path, help="the run directory (pslab prepare)")
    p.add_argument("-o", "--out", type=Path, help="default: RUN/results")
    p.add_argument("--json", action="store_true", help="print the metrics JSON on stdout")
    p.set_defaults(fn=cmd_collect)


def collect(run_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The run's metrics, written to ``out_dir`` with the merged trace and the scenario."""
    from grpc_ps.measured import run_metrics
    from grpc_ps.roles import read_run, read_traces
    from pslab.results import write_results
    from pslab_cli.main import UsageError

    if not (run_dir / "scenario.yaml").exists() or not (run_dir / "run.json").exists():
        raise UsageError(f"{run_dir}: not a run directory (pslab prepare writes one)")
    plan, _ = read_run(run_dir)
    missing = [w.name for w in plan.workers if not (run_dir / "traces" / f"{w.name}.json").exists()]
    if missing:
        raise UsageError(
            f"{run_dir}/traces: no trace from {', '.join(missing)} (still running, or it failed: "
            "see its launcher's output)"
        )
    if plan.server is not None:
        servers = [f"ps-{k}" for k in range(plan.server.shards)]
        if not all((run_dir / "traces" / f"{s}.json").exists() for s in servers):
            raise UsageError(
                f"{run_dir}/traces: no trace from the servers yet: stop them (Ctrl-C or "
                "SIGTERM), and each shard started with --run-dir writes its own"
            )
    trace = read_traces(run_dir)
    trace.meta["scenario"] = plan.scenario.name
    spans = [s for s in trace.spans if s.role.startswith("worker-")]
    extra = {
        "events": len(trace.spans),
        "wall_time_s": max(s.end for s in spans) - min(s.start for s in spans),
        "source": "emu",
        "lost_workers": [],
    }
    metrics, _ = run_metrics(plan.scenario, run_dir, trace, extra)
    write_results(out_dir, plan.scenario, metrics, trace)
    return metrics


def cmd_collect(args: argparse.Namespace) -> int:
    from pslab_cli.main import out, summary_table

    out_dir = args.out or args.run_dir / "results"
    metrics = collect(args.run_dir, out_dir)
    if args.json:
        print(json.dumps(metrics))
    else:
        out.print(summary_table(f"measured: {args.run_dir}", metrics))
        out.print(f"wrote {out_dir}/metrics.json and {out_dir}/trace.json")
    return 0
