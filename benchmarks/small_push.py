"""Small pushes and pulls: a one-chunk tensor as a stream or by the unary twins (PushOne, PullOne).

grpcio's synchronous client starts a new thread to feed every client-streaming call. For a
model of a few tens of KB (the real-compute validation scenarios train a 19 KB MLP) that
thread's start and its hand-offs with the caller cost more than the push itself, and more so
when the machine is busy. A server-streaming pull on an idle channel likewise makes grpcio
start a thread to drive the call. So a tensor that fits one chunk goes by ``PushOne`` and
``PullOne`` (see ``protos/pslab/v1/ps.proto``). This benchmark measures both ways in the
same run: workers (spawned processes, as the emulator runs them) each sleep ``--gap`` (a
loading step), push the tensor and pull the shard back, against one ASP server process.

Reported per case: the median and 90th percentile of a push's wall time, a pull's median,
and each client process's CPU per push+pull (all its threads). Cases run in interleaved
rounds and each keeps its best round, so load that comes and goes hits every case alike.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time

import grpc
import numpy as np
from emu_throughput import OPTIONS, ServerProcess, _flags, run_clients
from rich.console import Console
from rich.table import Table

from grpc_ps import tensors
from grpc_ps.client import stub
from grpc_ps.pb import ps_pb2 as pb

WAYS = ("stream", "unary")
TIMEOUT = 30.0  # seconds per RPC: a broken case fails, it does not hang


def _client(
    address: str, worker: int, world: int, nbytes: int, way: str, iters: int, gap: float, b, q
) -> None:
    """One worker: ``iters`` cycles of sleep, push, pull (both ``way``); reports their times."""
    ps = stub(grpc.insecure_channel(address, options=OPTIONS), "ParameterServer")
    total = nbytes // 4
    register = pb.RegisterRequest(
        worker=worker, world=world, total_elements=total, dtype=pb.DTYPE_FLOAT32
    )
    ps.Register(register, timeout=TIMEOUT, wait_for_ready=True)
    grad, params = np.full(total, 1e-3, np.float32), np.zeros(total, np.float32)
    if worker == 0:
        ps.Init(tensors.push_chunks(params, nbytes), timeout=TIMEOUT)
    first = pb.PullRequest(worker=worker, chunk_bytes=nbytes)
    tensors.receive_pull(ps.Pull(first, timeout=TIMEOUT), params)  # waits for the Init
    pushes: list[float] = []
    pulls: list[float] = []

    def cycle(iteration: int) -> None:
        time.sleep(gap)
        header = {"worker": worker, "iteration": iteration, "mode": pb.PUSH_MODE_GRAD}
        chunk = next(tensors.push_chunks(grad, nbytes, **header))
        t0 = time.perf_counter()
        if way == "unary":
            ps.PushOne(chunk, timeout=TIMEOUT)
        else:
            ps.Push(iter((chunk,)), timeout=TIMEOUT)
        pushes.append(time.perf_counter() - t0)
        pull = pb.PullRequest(worker=worker, iteration=iteration, chunk_bytes=nbytes)
        t0 = time.perf_counter()
        if way == "unary":
            tensors.receive_pull([ps.PullOne(pull, timeout=TIMEOUT)], params)
        else:
            tensors.receive_pull(ps.Pull(pull, timeout=TIMEOUT), params)
        pulls.append(time.perf_counter() - t0)

    for i in range(10):  # warm-up: connection, buffers, page faults
        cycle(i)
    b.wait()
    pushes.clear()
    pulls.clear()
    start, cpu = time.monotonic(), time.process_time()
    for i in range(10, 10 + iters):
        cycle(i)
    q.put((start, time.monotonic(), [*pushes, *pulls, (time.process_time() - cpu) / iters]))


def case(workers: int, way: str, args: argparse.Namespace) -> tuple[float, float, float, float]:
    """Push p50 and p90 seconds, pull p50 seconds, and client CPU seconds per push+pull."""
    nbytes = args.kb * 1000 // 4 * 4
    server = ServerProcess(*_flags(role="ps", bytes=nbytes, workers=workers), arenas=2)
    try:
        clients = [
            (server.address, w, workers, nbytes, way, args.iters, args.gap) for w in range(workers)
        ]
        _, times = run_clients(_client, clients)
    finally:
        server.stop()
    # each client's list: its push times, its pull times, then its CPU per cycle
    n, per = args.iters, 2 * args.iters + 1
    cpu = [times[k * per + 2 * n] for k in range(workers)]
    pushes = [t for k in range(workers) for t in times[k * per : k * per + n]]
    pulls = [t for k in range(workers) for t in times[k * per + n : k * per + 2 * n]]
    p50, p90 = np.percentile(pushes, [50, 90])
    return float(p50), float(p90), float(np.median(pulls)), statistics.mean(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=19, help="tensor size in KB (10^3 bytes)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--iters", type=int, default=200, help="timed cycles per worker")
    parser.add_argument("--gap", type=float, default=0.005, help="seconds asleep per cycle")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, best kept")
    args = parser.parse_args()
    best: dict[tuple[int, str], tuple[float, float, float, float]] = {}
    for _ in range(args.rounds):
        for workers in args.workers:
            for way in WAYS:
                got = case(workers, way, args)
                old = best.get((workers, way))
                best[workers, way] = got if old is None or got[0] < old[0] else old
    table = Table(
        title=f"push and pull of {args.kb} KB after {args.gap * 1e3:g} ms asleep, "
        f"{mp.cpu_count()} cores, best of {args.rounds}"
    )
    cols = ("workers", "way", "push p50 ms", "push p90 ms", "pull p50 ms", "client CPU ms / cycle")
    for col in cols:
        table.add_column(col, justify="right")
    for (workers, way), figures in best.items():
        table.add_row(str(workers), way, *(f"{x * 1e3:.2f}" for x in figures))
    Console(stderr=True).print(table)
    result: dict[str, object] = {"kb": args.kb, "gap_s": args.gap, "cores": mp.cpu_count()}
    for (workers, way), (p50, p90, pull, cpu) in best.items():
        result[f"push_p50_ms_{workers}w_{way}"] = round(p50 * 1e3, 3)
        result[f"push_p90_ms_{workers}w_{way}"] = round(p90 * 1e3, 3)
        result[f"pull_p50_ms_{workers}w_{way}"] = round(pull * 1e3, 3)
        result[f"client_cpu_ms_{workers}w_{way}"] = round(cpu * 1e3, 3)
    for workers in args.workers:
        stream, unary = best[workers, "stream"], best[workers, "unary"]
        result[f"stream_over_unary_p50_{workers}w"] = round(stream[0] / unary[0], 3)
        result[f"stream_over_unary_pull_p50_{workers}w"] = round(stream[2] / unary[2], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
