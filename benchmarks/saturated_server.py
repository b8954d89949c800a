"""A parameter server kept busy: async_ps workers that push and pull back to back.

The validation scenarios give each worker 40 ms of emulated compute and 10 ms of loading, so
a server's limits show only at 6 and 8 workers, diluted. Here compute and loading take 1 ms
each, so from two workers on the one server process is the bottleneck, and the iteration
time is what that process can serve. Each case is one ``pslab compare`` (the cached
calibration, one emulated run), and the table sets, per worker count, the predicted against
the measured iteration, the server's CPU per worker-iteration, and the cores it used while
it was the bottleneck (its CPU per worker-iteration times the workers' iterations per
second).

Measured on the 2-core machine (2026-12-06, quiet): the server used 0.82-0.86 of a core
from two workers on, where the model lets it use a whole one, and its CPU per
worker-iteration grew by 7-16 % over one worker's. See docs/calibration.md, "A server
kept busy". The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios/validation/async_ps_8w_emulated.yaml"
BACK_TO_BACK = ("workload.compute_time=1ms", "workload.io_time=1ms")


def compare(workers: int, iterations: int, out: Path) -> dict:
    """One ``pslab compare`` of the back-to-back scenario with ``workers``; its compare.json."""
    sets = [*BACK_TO_BACK, f"topology.workers_per_node={workers}", f"run.iterations={iterations}"]
    cmd = [sys.executable, "-m", "pslab_cli.main", "compare", str(SCENARIO), "-o", str(out)]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads((out / "compare.json").read_text())


def row(workers: int, result: dict) -> dict[str, float]:
    """The case's figures: iteration times, the server's CPU and the cores it used."""
    it = result["metrics"]["iteration_time_s"]
    server = result["cpu_s_per_worker_iteration"]["by_role"]["ps-0"]
    rate = {k: workers / it[k] for k in ("predicted", "measured")}  # worker-iterations per s
    return {
        "workers": workers,
        "iteration_predicted_s": it["predicted"],
        "iteration_measured_s": it["measured"],
        "error_pct": it["error_pct"],
        "server_cpu_predicted_s": server["predicted"],
        "server_cpu_measured_s": server["measured"],
        "server_cores_predicted": server["predicted"] * rate["predicted"],
        "server_cores_measured": server["measured"] * rate["measured"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2,4,8", help="comma-separated worker counts")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--out", help="keep each case's compare output here (replayable)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        for n in (int(w) for w in args.workers.split(",")):
            rows.append(row(n, compare(n, args.iterations, out / f"w{n}")))
    table = Table(title="async_ps, compute and loading 1 ms: one server kept busy")
    for col in (
        "workers",
        "iteration ms pred/meas",
        "error",
        "server CPU ms/w-it pred/meas",
        "server cores pred/meas",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["workers"]),
            f"{r['iteration_predicted_s'] * 1e3:.1f} / {r['iteration_measured_s'] * 1e3:.1f}",
            f"{r['error_pct']:+.1f} %",
            f"{r['server_cpu_predicted_s'] * 1e3:.1f} / {r['server_cpu_measured_s'] * 1e3:.1f}",
            f"{r['server_cores_predicted']:.2f} / {r['server_cores_measured']:.2f}",
        )
    Console().print(table)
    print(json.dumps({"benchmark": "saturated_server", "cases": rows}))


if __name__ == "__main__":
    main()
