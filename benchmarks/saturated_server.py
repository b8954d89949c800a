"""A parameter server kept busy: workers that push and pull back to back.

The validation scenarios give each worker 40 ms of emulated compute and 10 ms of loading, so
a server's limits show only at 6 and 8 workers, diluted. Here compute and loading take 1 ms
each, so from two workers on the one server process is the bottleneck, and the iteration
time is what that process can serve. Each case is one ``pslab compare`` (the cached
calibration, one emulated run), and the table sets, per variant and worker count, the
predicted against the measured iteration, the server's and the workers' CPU per
worker-iteration, the cores the server used while it was the bottleneck (its CPU per
worker-iteration times the workers' iterations per second), and each process's CPU per
worker-iteration as a multiple of the same variant's one-worker case *in the same round*
(what the processes cost each other, measured beside what the model charges for it).
``--rounds`` runs the grid again, so a moment of the machine shows as a round, not as
a worker count.

Measured on the 2-core machine (2026-12-06, quiet, async_ps only): the server used
0.82-0.86 of a core from two workers on, where the model lets it use a whole one, and its
CPU per worker-iteration grew by 7-16 % over one worker's. Two rounds of both variants at
1, 2 and 4 workers (2026-12-08, 03:16-03:18): with 4 workers the workers' processes spent
1.22-1.26x the CPU per worker-iteration of the same round's lone worker, where the model
charges 1.03-1.06x. See docs/calibration.md, "A server kept busy" and "Measured again on
8 December". The last line printed is one JSON object.
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

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios/validation"
BACK_TO_BACK = ("workload.compute_time=1ms", "workload.io_time=1ms")
SIDES = ("predicted", "measured")


def compare(algo: str, workers: int, iterations: int, out: Path) -> dict:
    """One ``pslab compare`` of ``algo``'s back-to-back scenario with ``workers``."""
    scenario = SCENARIOS / f"{algo}_8w_emulated.yaml"
    sets = [*BACK_TO_BACK, f"topology.workers_per_node={workers}", f"run.iterations={iterations}"]
    cmd = [sys.executable, "-m", "pslab_cli.main", "compare", str(scenario), "-o", str(out)]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads((out / "compare.json").read_text())


def row(algo: str, round_: int, workers: int, result: dict) -> dict[str, float | int | str]:
    """The case's figures: iteration times, the server's and workers' CPU, the server's cores."""
    it = result["metrics"]["iteration_time_s"]
    by_role = result["cpu_s_per_worker_iteration"]["by_role"]
    server, workers_cpu = by_role["ps-0"], by_role["workers"]
    rate = {k: workers / it[k] for k in SIDES}  # worker-iterations per second
    figures: dict[str, float | int | str] = {"algo": algo, "round": round_, "workers": workers}
    figures["error_pct"] = it["error_pct"]
    for side in SIDES:
        figures[f"iteration_{side}_s"] = it[side]
        figures[f"server_cpu_{side}_s"] = server[side]
        figures[f"workers_cpu_{side}_s"] = workers_cpu[side]
        figures[f"server_cores_{side}"] = server[side] * rate[side]
    return figures


def add_growth(rows: list[dict]) -> None:
    """Each row's CPU per worker-iteration over its variant's one-worker row of the same round
    (``*_growth_*``), on both sides; rows without such a row are left without."""
    lone = {(r["algo"], r["round"]): r for r in rows if r["workers"] == 1}
    for r in rows:
        base = lone.get((r["algo"], r["round"]))
        if base is None:
            continue
        for role in ("server", "workers"):
            for side in SIDES:
                cpu = f"{role}_cpu_{side}_s"
                r[f"{role}_growth_{side}"] = r[cpu] / base[cpu]


def table(rows: list[dict]) -> Table:
    out = Table(title="compute and loading 1 ms: one server kept busy (predicted / measured)")
    columns = ("variant", "round", "workers", "iteration ms", "error", "server CPU ms/w-it")
    columns += ("workers' CPU ms/w-it", "server ×1 worker", "workers ×1 worker", "server cores")
    for col in columns:
        out.add_column(col, justify="right")

    def pair(r: dict, key: str, scale: float = 1.0, fmt: str = ".1f") -> str:
        got = [r.get(key.format(side)) for side in SIDES]
        if None in got:
            return "-"
        return " / ".join(f"{v * scale:{fmt}}" for v in got)

    for r in rows:
        out.add_row(
            r["algo"],
            str(r["round"]),
            str(r["workers"]),
            pair(r, "iteration_{}_s", 1e3),
            f"{r['error_pct']:+.1f} %",
            pair(r, "server_cpu_{}_s", 1e3),
            pair(r, "workers_cpu_{}_s", 1e3),
            pair(r, "server_growth_{}", fmt=".2f"),
            pair(r, "workers_growth_{}", fmt=".2f"),
            pair(r, "server_cores_{}", fmt=".2f"),
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algos", default="async_ps,sync_ps", help="comma-separated variants")
    ap.add_argument("--workers", default="1,2,4,8", help="comma-separated worker counts")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1, help="run the whole grid this many times")
    ap.add_argument("--out", help="keep each case's compare output here (replayable)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        for round_ in range(1, args.rounds + 1):
            for algo in args.algos.split(","):
                for n in (int(w) for w in args.workers.split(",")):
                    result = compare(algo, n, args.iterations, out / f"r{round_}_{algo}_w{n}")
                    rows.append(row(algo, round_, n, result))
    add_growth(rows)
    Console(width=160).print(table(rows))  # ten columns of pairs: wider than a pipe's 80
    print(json.dumps({"benchmark": "saturated_server", "cases": rows}))


if __name__ == "__main__":
    main()
