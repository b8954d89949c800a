"""Probes of the emulator's communication, each in processes of its own as a run has them.

A one-shard server process against a :class:`PSClient` for the gRPC stream and RPC costs
(the server's CPU read from ``/proc``), and gloo all-reduces among spawned members. These
are :mod:`grpc_ps.calibrate`'s subprocess side: ``python -m grpc_ps.probes --serve N`` and
``--gloo ELEMENTS PORT WORLD RANK`` are what it starts.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from grpc_ps.client import PSClient
from grpc_ps.load import LoadSampler
from grpc_ps.memory import keep_freed_pages
from grpc_ps.server import ParameterServerServicer, serve
from grpc_ps.timing import COLD_GAP_S, costs_after_gaps, ramp
from pslab.policies import StalenessPolicy
from pslab.profile import STREAM_ENDS, stream_key

WARM_STREAMS = 8  # pushes and pulls before the stream costs are timed
DEFAULT_BYTES = 8 << 20  # the stream size the profile's plain per-byte figures are timed at
Step = Callable[[str, float], None]  # (what is being measured, fraction done)
Timed = tuple[float, float, float]  # (wall, client CPU, server CPU) per call


def _proc_cpu(pid: int) -> float:
    """CPU seconds of every live thread of ``pid``, to the nanosecond (``/proc``'s
    ``stat`` counts in 10 ms ticks, too coarse for a millisecond RPC)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return total / 1e9


def _probe(*args: object, stdin: int | None = None, **env: str) -> subprocess.Popen[str]:
    """This module's ``main`` in a process of its own, one OpenMP thread as the launcher
    runs a role, its stdout a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "grpc_ps.probes", *map(str, args)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1", **env),
    )


class _Server:
    """A one-shard ASP server in its own process, as the emulator runs one; this process
    is its worker 0 of ``workers``."""

    def __init__(self, elements: int, workers: int = 1) -> None:
        self.proc = _probe("--serve", elements, workers)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.client = PSClient([f"127.0.0.1:{self.port}"], 0, workers, elements, timeout=60)
        self.client.register()

    def cpu(self) -> float:
        return _proc_cpu(self.proc.pid)

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)


def _serve_forever(elements: int, workers: int) -> None:
    servicer = ParameterServerServicer(
        0,
        0,
        elements,
        workers,
        StalenessPolicy(workers),
        lr=1e-9,
        initial=np.zeros(elements, np.float32),
    )
    server, port = serve(servicer)
    print(port, flush=True)
    server.wait_for_termination()


def _timed(fn: Callable[[], object], repeat: int, server: _Server, bursts: int = 5) -> Timed:
    """(wall, client CPU, server CPU) per call: each the median over ``bursts`` bursts of
    ``repeat // bursts`` calls, so a moment when other jobs slowed the machine is outvoted
    (one calibration's mean came out 30 % above three taken just after it)."""
    per = max(repeat // bursts, 1)
    figures = []
    for _ in range(bursts):
        w0, c0, s0 = time.perf_counter(), time.process_time(), server.cpu()
        for _ in range(per):
            fn()
        w1, c1, s1 = time.perf_counter(), time.process_time(), server.cpu()
        figures.append(((w1 - w0) / per, (c1 - c0) / per, (s1 - s0) / per))
    wall, client, srv = np.median(np.array(figures), axis=0)
    return float(wall), float(client), float(srv)


def measure_rpc(nbytes: int, update_s_per_byte: float, step: Step) -> dict[str, float]:
    """Per-byte CPU on both ends of a chunk stream, and an RPC's fixed wall and CPU cost."""
    small = _Server(1)
    try:
        one = np.zeros(1, np.float32)
        step("empty RPCs", 0.1)
        it = itertools.count()  # fresh iterations: a repeated one is a duplicate, not applied
        _timed(lambda: (small.client.push(one, next(it)), small.client.pull(one)), 20, small)
        wall, c_cpu, s_cpu = _timed(
            lambda: (small.client.push(one, next(it)), small.client.pull(one)), 200, small
        )
        step("idle RPCs", 0.2)
        rpc_ramp = ramp(costs_after_gaps(lambda _i: small.client.push(one, next(it))))
        _, hot_c, hot_s = _timed(lambda: small.client.push(one, next(it)), 100, small)
        _, cold_c, cold_s = _timed(
            lambda: (time.sleep(COLD_GAP_S), small.client.push(one, next(it))), 100, small
        )
    finally:
        small.close()
    rpc_wall, rpc_cpu = wall / 2, (c_cpu + s_cpu) / 2
    rpc_cold = max(cold_c + cold_s - hot_c - hot_s, 0.0)
    big = _Server(nbytes // 4)
    try:
        arr = np.ones(nbytes // 4, np.float32)
        step("push streams", 0.4)
        it = itertools.count()
        push, pull = _hot_streams(big, arr, it, 60, 12)
        step("idle streams", 0.6)

        def after_idle(op: Callable[[], object]) -> Callable[[], object]:
            return lambda: (time.sleep(COLD_GAP_S), op())

        _, cpush_c, cpush_s = _timed(
            after_idle(lambda: big.client.push(arr, next(it))), 48, big, bursts=12
        )
        _, cpull_c, cpull_s = _timed(after_idle(lambda: big.client.pull(arr)), 48, big, bursts=12)
    finally:
        big.close()
    half = rpc_cpu / 2
    (push_w, push_c, push_s), (pull_w, pull_c, pull_s) = push, pull
    ends = _per_byte(push, pull, nbytes, update_s_per_byte, half)
    send, recv, server_send, server_recv = (ends[end] for end in STREAM_ENDS)

    def cold_per_byte(cold: float, hot: float) -> float:
        """What a stream's end spends per byte beyond its hot cost and a small RPC's cold
        extra, entered after idling: its buffers' memory has gone cold too."""
        return max(cold - hot - rpc_cold / 2, 0.0) / nbytes

    update = update_s_per_byte * nbytes
    overlap = (
        stream_overlap(push_w - update - rpc_wall, send * nbytes, server_recv * nbytes)
        + stream_overlap(pull_w - rpc_wall, server_send * nbytes, recv * nbytes)
    ) / 2
    return {
        "send_cpu_s_per_byte": send,
        "recv_cpu_s_per_byte": recv,
        "server_send_cpu_s_per_byte": server_send,
        "server_recv_cpu_s_per_byte": server_recv,
        "stream_overlap": overlap,
        # an RPC's two ends (rpc_cpu/2 each) overlap as a stream's do; the rest is waiting
        "rpc_overhead_s": max(rpc_wall - rpc_cpu + overlap * half, 0.0),
        "rpc_cpu_s": rpc_cpu,
        "stream_bytes": nbytes,
        "rpc_cold_cpu_s": rpc_cold,
        "rpc_cold_ramp_s": rpc_ramp,
        # each end's mean over both directions: a sender's and a receiver's
        "send_cold_cpu_s_per_byte": (
            cold_per_byte(cpush_c, push_c) + cold_per_byte(cpull_s, pull_s)
        )
        / 2,
        "recv_cold_cpu_s_per_byte": (
            cold_per_byte(cpull_c, pull_c) + cold_per_byte(cpush_s, push_s)
        )
        / 2,
        "update_s_per_byte": update_s_per_byte,
    }


def _hot_streams(
    server: _Server, arr: np.ndarray, it: Iterator[int], repeat: int, bursts: int
) -> tuple[Timed, Timed]:
    """(wall, client CPU, server CPU) of a push and of a pull of ``arr``, back to back.

    A fresh process's first large messages cost up to twice its later ones (the allocator
    is still mapping fresh pages); a run's workers are long past that, so a few go first."""
    for _ in range(WARM_STREAMS):
        server.client.push(arr, next(it))
        server.client.pull(arr)
    push = _timed(lambda: server.client.push(arr, next(it)), repeat, server, bursts)
    return push, _timed(lambda: server.client.pull(arr), repeat, server, bursts)


def _per_byte(
    push: Timed, pull: Timed, nbytes: int, update_s_per_byte: float, half_rpc: float
) -> dict[str, float]:
    """Each end's CPU per byte of a push and a pull of ``nbytes`` beyond its half of an
    RPC's fixed CPU (the server's push less its update). The two ends cost differently: a
    gRPC server's Python handler threads and generators spend about twice a client's CPU
    per byte here, so each side is kept apart."""

    def per_byte(cpu: float) -> float:
        return max(cpu - half_rpc, 0.0) / nbytes

    server_recv = per_byte(push[2] - update_s_per_byte * nbytes)
    figures = (per_byte(push[1]), per_byte(pull[1]), per_byte(pull[2]), server_recv)
    return dict(zip(STREAM_ENDS, figures, strict=True))


def measure_stream_sizes(
    sizes: Iterable[int], update_s_per_byte: float, rpc_cpu_s: float, step: Step
) -> dict[str, float]:
    """Each end's CPU per byte at other stream sizes, keyed by
    :func:`pslab.profile.stream_key`: what a stream costs per byte falls with its size, so
    one size cannot price both a 2 MB shard and an 80 MB model."""
    figures: dict[str, float] = {}
    for nbytes in sizes:
        step(f"streams of {nbytes >> 20} MiB", 0.65)
        server = _Server(nbytes // 4)
        try:
            arr = np.ones(nbytes // 4, np.float32)
            # a big stream's fewer, longer bursts outvote a moment as well as many short ones
            repeat, bursts = (60, 12) if nbytes <= DEFAULT_BYTES else (24, 6)
            push, pull = _hot_streams(server, arr, itertools.count(), repeat, bursts)
        finally:
            server.close()
        ends = _per_byte(push, pull, nbytes, update_s_per_byte, rpc_cpu_s / 2)
        figures.update({stream_key(end, nbytes): v for end, v in ends.items()})
    return figures


def stream_overlap(extra_wall: float, sending: float, receiving: float) -> float:
    """How much of a big transfer's two ends ran side by side, as a share of the smaller.

    ``extra_wall``: what the transfer took beyond an empty RPC; ``sending``,
    ``receiving``: each end's CPU for its bytes. Side by side, the bytes would
    add only the larger end; taking turns, both. On this machine, quiet, an
    8 MB push took 9.8-11.2 ms for 5.0 ms of client and 9.3 ms of server CPU
    (calibrations read 0.90 and 0.93); beside a nice-19 spinner it took
    13.6-14.4 ms, the sum (0). The model used to assume 1 always.
    """
    smaller = min(sending, receiving)
    if smaller <= 0:
        return 1.0
    return min(max((sending + receiving - extra_wall) / smaller, 0.0), 1.0)


BUSY_CLIENTS = 4  # enough to keep a server's streams overlapping, few enough to leave cores
# Beside other jobs the server's share says more about them than about its lock: with two
# busy processes running, the probe read 0.66-0.69 where it read 0.89-0.91 alone. Past
# this much of them the probe keeps no loss (1.0) rather than a figure it cannot read.
BUSY_PROBE_MAX_OTHER_CORES = 0.25


def _busy_client(port: int, elements: int, worker: int, seconds: float) -> None:
    """Worker ``worker`` of :func:`measure_contended_lock`: once told to (a line on stdin),
    push and pull back to back for ``seconds``."""
    arr = np.ones(elements, np.float32)
    with PSClient([f"127.0.0.1:{port}"], worker, BUSY_CLIENTS + 1, elements, timeout=60) as c:
        c.register()
        c.pull(arr)
        print("ready", flush=True)
        sys.stdin.readline()
        end, it = time.perf_counter() + seconds, itertools.count()
        while time.perf_counter() < end:
            c.push(arr, next(it))
            c.pull(arr)


def measure_contended_lock(nbytes: int, cores: int, seconds: float = 1.0) -> float:
    """The share of a contended process's lock that does work: a server's CPU rate while
    :data:`BUSY_CLIENTS` processes push and pull ``nbytes`` back to back to it.

    Its streams then always overlap, so its interpreter lock is always wanted; yet on a
    quiet machine here it used 0.89-0.91 of a core (six probes on 2026-12-06), and the
    emulator's own server 0.82-0.86 in runs of benchmarks/saturated_server.py: the rest
    goes to handing the lock and the data between its threads. (Its CPU per push and pull
    grew too, so it served about 48 a second where its calibrated 13 ms each would allow
    70 at that rate; that growth is not modelled.) The rate is taken against what the
    clients and other jobs left the server of the machine, where that is less than a core;
    beside more than :data:`BUSY_PROBE_MAX_OTHER_CORES` of other jobs, no loss is kept.
    """
    elements = nbytes // 4
    server = _Server(elements, BUSY_CLIENTS + 1)
    clients = [
        _probe("--busy", server.port, elements, w, seconds + 1.0, stdin=subprocess.PIPE)
        for w in range(1, BUSY_CLIENTS + 1)
    ]
    ours = [os.getpid(), server.proc.pid, *(c.pid for c in clients)]

    try:
        for c in clients:
            assert c.stdout is not None and c.stdout.readline().strip() == "ready"
        for c in clients:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        time.sleep(0.5)  # every stream under way
        w0, s0 = time.perf_counter(), server.cpu()
        c0 = sum(_proc_cpu(c.pid) for c in clients)
        with LoadSampler(lambda: ours, cores) as load:
            time.sleep(seconds)
        wall = time.perf_counter() - w0
        server_rate = (server.cpu() - s0) / wall
        clients_rate = (sum(_proc_cpu(c.pid) for c in clients) - c0) / wall
        for c in clients:
            c.wait(60)
    finally:
        for c in clients:
            c.kill()
        server.close()
    other_jobs = float(load.summary().get("other_cores", 0.0))
    if other_jobs > BUSY_PROBE_MAX_OTHER_CORES:
        return 1.0
    return contended_share(server_rate, clients_rate + other_jobs, cores)


def contended_share(server_rate: float, others_rate: float, cores: float) -> float:
    """A busy server's CPU rate as a share of what it could have had: a core, or less where
    its clients and other jobs left it less of the machine (then its lock was not what held
    it back)."""
    room = min(1.0, max(cores - others_rate, 1e-9))
    return min(server_rate / room, 1.0)


def _gloo_member(rank: int, world: int, port: int, elements: int) -> None:
    """One of ``world`` processes timing gloo all-reduces.

    Rank 0 prints the seconds of a tiny and of a big all-reduce back to back,
    the CPU a tiny one costs a member back to back and after all idled, and
    the CPU a big one costs it.
    """
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )

    def timed(t: torch.Tensor, repeat: int, gap: float = 0.0) -> tuple[float, float]:
        wall, cpu = [], []
        for _ in range(repeat):
            if gap:
                time.sleep(gap)
            w0, c0 = time.perf_counter(), time.process_time()
            dist.all_reduce(t)
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        return float(np.median(wall)), float(np.mean(cpu))

    small, big = torch.ones(1), torch.ones(elements)
    timed(small, 3)
    small_s, hot_cpu = timed(small, 50)
    _, cold_cpu = timed(small, 30, COLD_GAP_S)
    timed(big, 3)
    big_s, big_cpu = timed(big, 30)
    dist.destroy_process_group()
    if rank == 0:
        print(small_s, big_s, hot_cpu, cold_cpu, big_cpu, flush=True)


class _GlooTimes(NamedTuple):
    """What :func:`_gloo_member` prints, in its order."""

    small_s: float
    big_s: float
    hot_cpu_s: float
    cold_cpu_s: float
    big_cpu_s: float


def _gloo(world: int, elements: int) -> _GlooTimes:
    from grpc_ps.launch import free_port

    port = free_port()
    procs = [
        _probe("--gloo", elements, port, world, r, GLOO_SOCKET_IFNAME="lo") for r in range(world)
    ]
    out, _ = procs[0].communicate(timeout=120)
    for p in procs[1:]:
        p.wait(timeout=30)
    return _GlooTimes(*(float(x) for x in out.split()))


def measure_allreduce(nbytes: int) -> dict[str, float]:
    """gloo between two processes: CPU per byte at each end of a ring step, a tiny
    all-reduce's wall time, and the extra CPU a member spends on one entered after idling.

    In a two-member ring each process sends and receives the whole tensor, so
    the time beyond a tiny all-reduce's is 2·nbytes of per-byte work.
    """
    t = _gloo(2, nbytes // 4)
    return {
        "allreduce_s_per_byte": max(t.big_s - t.small_s, 0.0) / (2 * nbytes),
        "allreduce_overhead_s": t.small_s,
        "allreduce_cold_cpu_s": max(t.cold_cpu_s - t.hot_cpu_s, 0.0),
    }


def measure_allreduce_at(world: int, nbytes: int) -> tuple[float, float]:
    """Seconds of one all-reduce of ``nbytes`` among ``world`` processes on this machine,
    and the CPU it costs each.

    Two members' figures do not scale to more: with more members than cores a
    ring step waits for the scheduler to run the member it waits for, and a
    19 KB all-reduce took ~7 ms among four processes on two cores where it
    took 0.4 ms between two. So it is measured at the scenario's size.
    """
    t = _gloo(world, max(nbytes // 4, 1))
    return t.big_s, t.big_cpu_s


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m grpc_ps.probes")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--serve", nargs=2, type=int, metavar=("ELEMENTS", "WORKERS"), help="run an ASP shard"
    )
    what.add_argument(
        "--busy",
        nargs=4,
        type=float,
        metavar=("PORT", "ELEMENTS", "WORKER", "SECONDS"),
        help="push and pull back to back",
    )
    what.add_argument("--gloo", nargs=4, type=int, metavar=("ELEMENTS", "PORT", "WORLD", "RANK"))
    args = p.parse_args(argv)
    keep_freed_pages()  # as the roles run (grpc_ps.memory)
    if args.serve is not None:
        _serve_forever(*args.serve)
    elif args.busy is not None:
        port, elements, worker, seconds = args.busy
        _busy_client(int(port), int(elements), int(worker), seconds)
    else:
        elements, port, world, rank = args.gloo
        _gloo_member(rank, world, port, elements)


if __name__ == "__main__":
    main()
