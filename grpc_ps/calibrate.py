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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import grpc
import numpy as np
import torch

from grpc_ps.client import PSClient
from grpc_ps.server import ParameterServerServicer, result_finite, serve
from pslab import rules
from pslab.policies import StalenessPolicy
from pslab.profile import PROFILE_FORMAT, Machine, Profile, ProfileError
from pslab.scenario import Scenario

STALE_AFTER_S = 7 * 24 * 3600
DEFAULT_BYTES = 8 << 20
COLD_GAP_S = 0.04  # idle this long, an op has gone fully cold (see measure_cold_ramp)
WARM_STREAMS = 8  # pushes and pulls before the stream costs are timed
RAMP_GAPS_S = (0.0, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04)
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
    return (
        profile.format == PROFILE_FORMAT
        and profile.machine == machine()
        and time.time() - profile.measured_at < STALE_AFTER_S
    )


# ------------------------------------------------------------------ measuring


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


def _timed(
    fn: Callable[[], object], repeat: int, server: _Server, bursts: int = 5
) -> tuple[float, float, float]:
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


def measure_update(nbytes: int) -> float:
    """Seconds per parameter byte of the server's SGD step (numpy, one core), with the
    check a shard makes first that the step keeps every parameter finite."""
    n = nbytes // 4
    x, g = np.zeros(n, np.float32), np.ones(n, np.float32)

    def step() -> None:
        assert result_finite(x, [g], 1, "grad", 0.1, 0.0, None)
        rules.server_apply(x, g, 1, "grad", 0.1)

    step()
    t0 = time.perf_counter()
    for _ in range(5):
        step()
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
        step("idle RPCs", 0.2)
        rpc_ramp = _ramp(_costs_after_gaps(lambda _i: small.client.push(one, next(it))))
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
        # A fresh process's first large messages cost up to twice its later ones (the
        # allocator is still mapping fresh pages); a run's workers are long past that.
        for _ in range(WARM_STREAMS):
            big.client.push(arr, next(it))
            big.client.pull(arr)
        _, push_c, push_s = _timed(lambda: big.client.push(arr, next(it)), 60, big, bursts=12)
        step("pull streams", 0.6)
        _, pull_c, pull_s = _timed(lambda: big.client.pull(arr), 60, big, bursts=12)
        step("idle streams", 0.65)

        def after_idle(op: Callable[[], object]) -> Callable[[], object]:
            return lambda: (time.sleep(COLD_GAP_S), op())

        push = after_idle(lambda: big.client.push(arr, next(it)))
        _, cpush_c, cpush_s = _timed(push, 48, big, bursts=12)
        _, cpull_c, cpull_s = _timed(after_idle(lambda: big.client.pull(arr)), 48, big, bursts=12)
    finally:
        big.close()
    update = measure_update(nbytes)
    half = rpc_cpu / 2

    def per_byte(cpu: float) -> float:
        return max(cpu - half, 0.0) / nbytes

    def cold_per_byte(cold: float, hot: float) -> float:
        """What a stream's end spends per byte beyond its hot cost and a small RPC's cold
        extra, entered after idling: its buffers' memory has gone cold too."""
        return max(cold - hot - rpc_cold / 2, 0.0) / nbytes

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


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Time torch as a launched worker runs it: one thread (the launcher's OMP_NUM_THREADS)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def measure_worker_update(nbytes: int) -> float:
    """Seconds per parameter byte of a worker's SGD step on torch tensors (one thread)."""
    with _one_torch_thread():
        n = nbytes // 4
        bufs = {"params": torch.zeros(n), "grad": torch.ones(n)}
        rules.sgd(bufs, 0.1)
        t0 = time.perf_counter()
        for _ in range(5):
            rules.sgd(bufs, 0.1)
        return (time.perf_counter() - t0) / 5 / nbytes


def _gloo_member(rank: int, world: int, port: int, elements: int) -> None:
    """One of ``world`` processes timing gloo all-reduces.

    Rank 0 prints the seconds of a tiny and of a big all-reduce back to back,
    the CPU a tiny one costs a member back to back and after all idled, and
    the CPU a big one costs it.
    """
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
    cmd = [sys.executable, "-m", "grpc_ps.calibrate", "--gloo", str(elements), str(port)]
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    procs = [
        subprocess.Popen([*cmd, str(world), str(r)], stdout=subprocess.PIPE, text=True, env=env)
        for r in range(world)
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


def _forward_backward(model: str, batch: int) -> Callable[[int], None]:
    from pslab.data import Batches, load
    from pslab.models import FlatModel

    net = FlatModel(model, 0, torch.device("cpu"))
    batches = Batches(load(0, torch.device("cpu")), 0, 1, batch, 0)
    return lambda i: net.forward_backward(*batches.batch(i))


def _per_call(fn: Callable[[int], object], calls: range, gap: float = 0.0) -> float:
    """Median seconds of ``fn(i)`` over ``calls``, each after ``gap`` seconds asleep
    (the median: a call another job preempted says nothing about this one)."""
    seconds = []
    for i in calls:
        if gap:
            time.sleep(gap)
        t0 = time.perf_counter()
        fn(i)
        seconds.append(time.perf_counter() - t0)
    return float(np.median(seconds))


def measure_compute(model: str, batch: int) -> tuple[float, float, float]:
    """Forward+backward seconds per batch back to back and after idling (one torch thread,
    as a launched worker runs it), and the idle gap over which it goes from one to the
    other."""
    with _one_torch_thread():
        costs = _costs_after_gaps(_forward_backward(model, batch))
    return float(costs[0]), float(costs[-1]), _ramp(costs)


def _costs_after_gaps(fn: Callable[[int], object]) -> np.ndarray:
    """Median seconds of ``fn`` after each idle gap of :data:`RAMP_GAPS_S` (the last is
    :data:`COLD_GAP_S`)."""
    _per_call(fn, range(20))
    return np.array([_per_call(fn, range(30), gap) for gap in RAMP_GAPS_S])


def _ramp(costs: np.ndarray) -> float:
    """The idle gap over which an op goes from hot to cold, fitted as a linear ramp: the
    length whose ``min(gap / ramp, 1)`` best fits the slow-down after each gap of
    :data:`RAMP_GAPS_S`, normalised by the longest gap's. 0: never measurably cold."""
    extra = costs - costs[0]
    if extra[-1] <= 0.1 * costs[0]:
        return 0.0
    shape = np.clip(extra / extra[-1], 0.0, 1.0)
    gaps = np.asarray(RAMP_GAPS_S)
    candidates = np.linspace(0.0005, max(RAMP_GAPS_S), 80)
    misfit = [float(np.sum((np.minimum(gaps / r, 1.0) - shape) ** 2)) for r in candidates]
    return float(candidates[int(np.argmin(misfit))])


def measure_cold_ramp() -> float:
    """The cold ramp of a small torch workload: for ops not measured on their own."""
    a, x = torch.randn(64, 64), torch.randn(32, 64)

    def work(_i: int) -> None:
        y = x
        for _ in range(20):
            y = torch.relu(y @ a)

    with _one_torch_thread():
        return _ramp(_costs_after_gaps(work))


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
    gloo = measure_allreduce(nbytes)
    step("cold ops", 0.72)
    ramp = measure_cold_ramp()
    step("free cores", 0.75)
    free = measure_free_cores(machine().cores)
    profile = Profile(
        format=PROFILE_FORMAT,
        machine=machine(),
        measured_at=time.time(),
        effective_cores=free,
        sleep_overshoot_s=overshoot,
        sleep_jitter_s=jitter,
        worker_update_s_per_byte=measure_worker_update(nbytes),
        cold_ramp_s=ramp,
        **gloo,
        **figures,
    )
    if scenario is not None:
        profile = with_scenario(profile, scenario, step)
    step("done", 1.0)
    return profile


def with_scenario(profile: Profile, scenario: Scenario, step: Step | None = None) -> Profile:
    """The profile, plus what this scenario's run costs that a machine-wide one cannot say:
    its model's compute if it trains for real, its gloo group's all-reduce."""
    from pslab.algorithms import build_plan

    update: dict[str, dict] = {}
    emu = scenario.emulation
    key = profile.compute_key(emu.model, scenario.workload.batch_size)
    if emu.compute == "real" and key not in profile.compute_cold_ramp_s:
        if step:
            step(f"compute {key}", 0.8)
        hot, cold, ramp = measure_compute(emu.model, scenario.workload.batch_size)
        update["compute_s"] = {**profile.compute_s, key: hot}
        update["compute_cold_s"] = {**profile.compute_cold_s, key: cold}
        update["compute_cold_ramp_s"] = {**profile.compute_cold_ramp_s, key: ramp}
    plan = build_plan(scenario)
    world = len(plan.collective_world)
    ring = profile.allreduce_key(world, plan.model.nbytes)
    if world > 1 and not (ring in profile.allreduce_s and ring in profile.allreduce_cpu_s):
        if step:
            step(f"gloo all-reduce among {world}", 0.9)
        seconds, cpu = measure_allreduce_at(world, plan.model.nbytes)
        update["allreduce_s"] = {**profile.allreduce_s, ring: seconds}
        update["allreduce_cpu_s"] = {**profile.allreduce_cpu_s, ring: cpu}
    return profile.model_copy(update=update) if update else profile


def _cached(path: Path) -> Profile | None:
    """The cached profile, or None where there is none or an older pslab wrote it."""
    try:
        return Profile.load(path)
    except ProfileError:
        return None


def profile_for(scenario: Scenario, step: Step | None = None) -> Profile:
    """The scenario's named profile, else this machine's cached one, measured when stale."""
    if scenario.calibration:
        return with_scenario(Profile.load(Path(scenario.calibration)), scenario, step)
    path = cache_path()
    profile = _cached(path)
    if profile is None or not is_fresh(profile):
        profile = calibrate(scenario, step)
    updated = with_scenario(profile, scenario, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    updated.save(path)
    # what other jobs leave free changes by the second: compare takes it from the measured
    # run itself (grpc_ps.load), not from this moment
    return updated


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m grpc_ps.calibrate")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--serve", type=int, help="run a shard of this many elements")
    what.add_argument("--gloo", nargs=4, type=int, metavar=("ELEMENTS", "PORT", "WORLD", "RANK"))
    args = p.parse_args(argv)
    if args.serve is not None:
        _serve_forever(args.serve)
    else:
        elements, port, world, rank = args.gloo
        _gloo_member(rank, world, port, elements)


if __name__ == "__main__":
    main()
