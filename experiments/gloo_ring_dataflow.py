"""gloo's ring all-reduce as a dataflow: what early members do before the last one arrives.

``--members`` processes (torch.distributed, gloo over loopback, one torch thread each)
make ``--calls`` all-reduces of ``--bytes``. Before each call they meet at a barrier,
then sleep ``--sleep-ms``, and member r a further ``stagger * ((3r + i) mod n) / n`` at
call i, so their arrivals spread over about ``stagger`` in a different order each call.
Per stagger, the table gives the arrivals' spread and, counted from the last arrival,
when the first and the last member left (medians over the calls after ``--skip``).

A ring that waited for its last member would take as long after the last arrival
whatever the stagger; gloo's, whose members send each step once they hold the step
before, takes less the more the early members could do (``sim.step_ring``).

    .venv/bin/python -m experiments.gloo_ring_dataflow [--members 8] [--bytes 8000000] \\
        [--calls 25] [--skip 5] [--sleep-ms 40] [--staggers 0,15,30]     # ~1 min
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from collections.abc import Sequence
from typing import Any

from experiments.report import floats, new_table, present, rounded

# Member r's arrival at call i, as a share of the stagger: (3r + i) mod n over n.
ORDER_STRIDE = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _member(
    rank: int, n: int, port: int, nbytes: int, calls: int, sleep_s: float, stagger_s: float, out
) -> None:
    """One member: its (arrival, departure) wall-clock times per call, put on ``out``."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=n)
    try:
        data = torch.zeros(max(nbytes // 4, 1))
        for _ in range(3):  # connections and first-touch pages stay out of the figures
            dist.all_reduce(data)
        times = []
        for i in range(calls):
            dist.barrier()
            time.sleep(sleep_s + stagger_s * ((ORDER_STRIDE * rank + i) % n) / n)
            arrived = time.time()
            dist.all_reduce(data)
            times.append((arrived, time.time()))
        out.put((rank, times))
    finally:
        dist.destroy_process_group()


def measure(members: int, nbytes: int, calls: int, skip: int, sleep_s: float, stagger_s: float):
    """One stagger's figures, in ms: arrival spread, first and last departure after the
    last arrival, departure spread (medians over the calls after ``skip``)."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_member, args=(r, members, port, nbytes, calls, sleep_s, stagger_s, out))
        for r in range(members)
    ]
    for p in procs:
        p.start()
    times = dict(out.get(timeout=600) for _ in procs)
    for p in procs:
        p.join(60)
    rows: dict[str, list[float]] = {"arrivals": [], "first": [], "last": [], "departures": []}
    for i in range(skip, calls):
        arrived = [times[r][i][0] for r in range(members)]
        left = [times[r][i][1] for r in range(members)]
        last_in = max(arrived)
        rows["arrivals"].append(last_in - min(arrived))
        rows["first"].append(min(left) - last_in)
        rows["last"].append(max(left) - last_in)
        rows["departures"].append(max(left) - min(left))
    ms = {k: statistics.median(v) * 1e3 for k, v in rows.items()}
    return {
        "stagger_ms": stagger_s * 1e3,
        "arrival_spread_ms": ms["arrivals"],
        "first_left_after_last_in_ms": ms["first"],
        "last_left_after_last_in_ms": ms["last"],
        "departure_spread_ms": ms["departures"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--bytes", type=int, default=8_000_000)
    p.add_argument("--calls", type=int, default=25)
    p.add_argument("--skip", type=int, default=5)
    p.add_argument("--sleep-ms", type=float, default=40.0)
    p.add_argument("--staggers", type=floats, default=[0.0, 15.0, 30.0], help="ms, comma-separated")
    a = p.parse_args(argv)
    if a.members < 2 or not 0 <= a.skip < a.calls:
        p.error("need --members >= 2 and 0 <= --skip < --calls")

    def experiment(console: Any, progress_console: Any) -> dict[str, Any]:
        from rich.progress import Progress

        rows = []
        with Progress(console=progress_console, transient=True) as progress:
            task = progress.add_task("staggers", total=len(a.staggers))
            for stagger in a.staggers:
                rows.append(
                    measure(a.members, a.bytes, a.calls, a.skip, a.sleep_ms / 1e3, stagger / 1e3)
                )
                progress.advance(task)
        table = new_table(
            f"{a.members} members, {a.bytes} B: ms after the last member arrived",
            ["stagger", "arrivals spread", "first left", "last left", "departures spread"],
            left=("stagger",),
        )
        for row in rows:
            table.add_row(
                f"{row['stagger_ms']:.0f} ms",
                *(
                    f"{row[k]:.1f}"
                    for k in (
                        "arrival_spread_ms",
                        "first_left_after_last_in_ms",
                        "last_left_after_last_in_ms",
                        "departure_spread_ms",
                    )
                ),
            )
        console.print(table)
        return rounded({"members": a.members, "bytes": a.bytes, "calls": a.calls, "rows": rows})

    return present("gloo ring dataflow", vars(a), experiment, width=100)


if __name__ == "__main__":
    raise SystemExit(main())
