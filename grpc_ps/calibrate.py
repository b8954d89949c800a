"""``pslab calibrate``: measure what this machine's emulator costs, for the simulator to use.

Each figure is measured on the mechanism the emulator really uses: a
parameter-server shard in its own process and a :class:`PSClient`, CPU time
read from both processes (``/proc`` for the server), torch's forward and
backward on the scenario's model with one thread per process (as the
launcher runs workers), numpy's update, ``time.sleep``. A profile is cached
per machine and re-measured when stale.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import torch

from grpc_ps.client import PSClient
from grpc_ps.server import ParameterServerServicer, serve
from pslab import rules
from pslab.policies import StalenessPolicy
from pslab.profile import Machine, Profile
from pslab.scenario import Scenario

STALE_AFTER_S = 7 * 24 * 3600
DEFAULT_BYTES = 8 << 20
Step = Callable[[str, float], None]  # (what is being measured, fraction done)


def machine() -> Machine:
    import platform

    return Machine(
        hostname=platform.node(),
        cores=os.cpu_count() or 1,
        python=platform.python_version(),
        torch=torch.__version__,
        grpc=grpc.__version__,
    )


def cache_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "pslab" / f"profile-{machine().hostname}.yaml"


def is_fresh(profile: Profile) -> bool:
    return profile.machine == machine() and time.time() - profile.measured_at < STALE_AFTER_S


# ------------------------------------------------------------------ measuring


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Server:
    """A one-shard ASP server in its own process, as the emulator runs one."""

    def __init__(self, elements: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grpc_ps.calibrate", "--serve", str(elements)],
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.client = PSClient([f"127.0.0.1:{self.port}"], 0, 1, elements, timeout=60)
        self.client.register()

    def cpu(self) -> float:
        return _proc_cpu(self.proc.pid)

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)


def _serve_forever(elements: int) -> None:
    servicer = ParameterServerServicer(
        0, 0, elements, 1, StalenessPolicy(1), lr=1e-9, initial=np.zeros(elements, np.float32)
    )
    server, port = serve(servicer)
    print(port, flush=True)
    server.wait_for_termination()


def _timed(fn: Callable[[], object], repeat: int, server: _Server) -> tuple[float, float, float]:
    """(wall, client CPU, server CPU) per call, averaged over ``repeat`` calls."""
    w0, c0, s0 = time.perf_counter(), time.process_time(), server.cpu()
    for _ in range(repeat):
        fn()
    w1, c1, s1 = time.perf_counter(), time.process_time(), server.cpu()
    return (w1 - w0) / repeat, (c1 - c0) / repeat, (s1 - s0) / repeat


def measure_update(nbytes: int) -> float:
    """Seconds per parameter byte of the server's SGD step (numpy, one core)."""
    n = nbytes // 4
    x, g = np.zeros(n, np.float32), np.ones(n, np.float32)
    rules.server_apply(x, g, 1, "grad", 0.1)
    t0 = time.perf_counter()
    for _ in range(5):
        rules.server_apply(x, g, 1, "grad", 0.1)
    return (time.perf_counter() - t0) / 5 / nbytes


def measure_rpc(nbytes: int, step: Step) -> dict[str, float]:
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
    finally:
        small.close()
    rpc_wall, rpc_cpu = wall / 2, (c_cpu + s_cpu) / 2
    big = _Server(nbytes // 4)
    try:
        arr = np.ones(nbytes // 4, np.float32)
        step("push streams", 0.4)
        it = itertools.count()
        big.client.push(arr, next(it))
        # /proc counts CPU in 10 ms ticks: enough repetitions keep that below a few percent
        _, push_c, push_s = _timed(lambda: big.client.push(arr, next(it)), 30, big)
        step("pull streams", 0.6)
        big.client.pull(arr)
        _, pull_c, pull_s = _timed(lambda: big.client.pull(arr), 30, big)
    finally:
        big.close()
    update = measure_update(nbytes)
    half = rpc_cpu / 2

    def per_byte(cpu: float) -> float:
        return max(cpu - half, 0.0) / nbytes

    # The two ends of a stream cost differently: a gRPC server's Python handler threads and
    # generators spend about twice a client's CPU per byte here, so each side is kept apart.
    return {
        "send_cpu_s_per_byte": per_byte(push_c),
        "recv_cpu_s_per_byte": per_byte(pull_c),
        "server_send_cpu_s_per_byte": per_byte(pull_s),
        "server_recv_cpu_s_per_byte": per_byte(push_s - update * nbytes),
        # the two ends' CPU runs concurrently (rpc_cpu/2 each); the rest is waiting
        "rpc_overhead_s": max(rpc_wall - half, 0.0),
        "rpc_cpu_s": rpc_cpu,
        "update_s_per_byte": update,
    }


def measure_sleep() -> tuple[float, float]:
    """Mean and standard deviation of what ``time.sleep`` adds to the time asked for."""
    extra = []
    for _ in range(40):
        t0 = time.perf_counter()
        time.sleep(0.005)
        extra.append(time.perf_counter() - t0 - 0.005)
    trimmed = np.sort(extra)[: int(len(extra) * 0.9)]  # a preempted sleep is load, not jitter
    return float(trimmed.mean()), float(trimmed.std())


def _spin(seconds: float) -> float:
    """Busy-loop for ``seconds`` of wall time; the share of it this process got a core."""
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        pass
    return (time.process_time() - c0) / (time.perf_counter() - t0)


def measure_free_cores(cores: int, seconds: float = 0.5) -> float:
    """How many cores a run gets here now: ``cores`` busy processes, each's CPU share, summed.

    A machine shared with other jobs gives the emulator's processes less than its core
    count; the prediction must use what they will really get.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(cores, mp_context=get_context("spawn")) as pool:
        list(pool.map(_spin, [0.05] * cores))  # process start-up stays out of the measurement
        return min(float(sum(pool.map(_spin, [seconds] * cores))), float(cores))


def measure_worker_update(nbytes: int) -> float:
    """Seconds per parameter byte of a worker's SGD step on torch tensors (one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n = nbytes // 4
        bufs = {"params": torch.zeros(n), "grad": torch.ones(n)}
        rules.sgd(bufs, 0.1)
        t0 = time.perf_counter()
        for _ in range(5):
            rules.sgd(bufs, 0.1)
        return (time.perf_counter() - t0) / 5 / nbytes
    finally:
        torch.set_num_threads(threads)


def _gloo_member(rank: int, port: int, elements: int) -> None:
    """One of two processes timing gloo all-reduces; rank 0 prints (small, big) seconds."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    timings = []
    for size in (1, elements):
        t = torch.ones(size)
        for _ in range(3):
            dist.all_reduce(t)
        t0 = time.perf_counter()
        for _ in range(10):
            dist.all_reduce(t)
        timings.append((time.perf_counter() - t0) / 10)
    dist.destroy_process_group()
    if rank == 0:
        print(timings[0], timings[1], flush=True)


def measure_allreduce(nbytes: int) -> tuple[float, float]:
    """gloo between two processes: (CPU per byte at each end of a ring step, fixed wait).

    In a two-member ring each process sends and receives the whole tensor, so
    the time beyond a tiny all-reduce's is 2·nbytes of per-byte work.
    """
    from grpc_ps.launch import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "grpc_ps.calibrate", "--gloo", str(nbytes // 4), str(port)]
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    procs = [
        subprocess.Popen([*cmd, str(r)], stdout=subprocess.PIPE, text=True, env=env) for r in (0, 1)
    ]
    out, _ = procs[0].communicate(timeout=120)
    procs[1].wait(timeout=30)
    small, big = (float(x) for x in out.split())
    return max(big - small, 0.0) / (2 * nbytes), small


def measure_compute(model: str, batch: int) -> float:
    """Forward+backward seconds per batch, one torch thread, as a launched worker runs it."""
    from pslab.data import Batches, load
    from pslab.models import FlatModel

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = FlatModel(model, 0, torch.device("cpu"))
        batches = Batches(load(0, torch.device("cpu")), 0, 1, batch, 0)
        for i in range(10):
            net.forward_backward(*batches.batch(i))
        t0 = time.perf_counter()
        for i in range(10, 60):
            net.forward_backward(*batches.batch(i))
        return (time.perf_counter() - t0) / 50
    finally:
        torch.set_num_threads(threads)


def calibrate(scenario: Scenario | None = None, step: Step | None = None) -> Profile:
    step = step or (lambda what, frac: None)
    nbytes = DEFAULT_BYTES
    if scenario is not None and scenario.emulation.model == "synthetic":
        from pslab.catalogue import resolve_model

        nbytes = min(max(resolve_model(scenario.workload).nbytes, 1 << 20), 64 << 20)
    step("sleep", 0.0)
    overshoot, jitter = measure_sleep()
    figures = measure_rpc(nbytes, step)
    step("gloo all-reduce", 0.7)
    per_byte, fixed = measure_allreduce(nbytes)
    step("free cores", 0.75)
    free = measure_free_cores(machine().cores)
    profile = Profile(
        machine=machine(),
        measured_at=time.time(),
        effective_cores=free,
        sleep_overshoot_s=overshoot,
        sleep_jitter_s=jitter,
        worker_update_s_per_byte=measure_worker_update(nbytes),
        allreduce_s_per_byte=per_byte,
        allreduce_overhead_s=fixed,
        **figures,
    )
    if scenario is not None:
        profile = with_compute(profile, scenario, step)
    step("done", 1.0)
    return profile


def with_compute(profile: Profile, scenario: Scenario, step: Step | None = None) -> Profile:
    """The profile, plus the scenario's model compute time if it trains for real."""
    emu = scenario.emulation
    if emu.compute != "real":
        return profile
    key = profile.compute_key(emu.model, scenario.workload.batch_size)
    if key in profile.compute_s:
        return profile
    if step:
        step(f"compute {key}", 0.8)
    compute = dict(profile.compute_s)
    compute[key] = measure_compute(emu.model, scenario.workload.batch_size)
    return profile.model_copy(update={"compute_s": compute})


def profile_for(scenario: Scenario, step: Step | None = None) -> Profile:
    """The scenario's named profile, else this machine's cached one, measured when stale."""
    if scenario.calibration:
        return with_compute(Profile.load(Path(scenario.calibration)), scenario, step)
    path = cache_path()
    profile = Profile.load(path) if path.exists() else None
    if profile is None or not is_fresh(profile):
        profile = calibrate(scenario, step)
    updated = with_compute(profile, scenario, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    updated.save(path)
    # what other jobs leave free changes by the minute: measured afresh for every prediction
    return updated.model_copy(update={"effective_cores": measure_free_cores(machine().cores)})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m grpc_ps.calibrate")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--serve", type=int, help="run a shard of this many elements")
    what.add_argument("--gloo", nargs=3, type=int, metavar=("ELEMENTS", "PORT", "RANK"))
    args = p.parse_args(argv)
    if args.serve is not None:
        _serve_forever(args.serve)
    else:
        elements, port, rank = args.gloo
        _gloo_member(rank, port, elements)


if __name__ == "__main__":
    main()
