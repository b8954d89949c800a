"""``pslab calibrate``: measure what this machine's emulator costs, for the simulator to use.

Each figure is measured on the mechanism the emulator really uses: a
parameter-server shard in its own process and a :class:`PSClient`, CPU time
read from both processes (``/proc`` for the server), torch's forward and
backward on the scenario's model with one thread per process (as the
launcher runs workers), numpy's update, ``time.sleep``. A profile is cached
per machine and re-measured when stale. The probes that need processes of their own
(a server, gloo members) live in :mod:`grpc_ps.probes`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch

from grpc_ps.cooling import measure_cooling
from grpc_ps.memory import keep_freed_pages
from grpc_ps.probes import (
    DEFAULT_BYTES,
    Step,
    measure_allreduce,
    measure_allreduce_at,
    measure_contended_lock,
    measure_rpc,
    measure_stream_sizes,
)
from grpc_ps.server import result_finite
from grpc_ps.speed_probe import SpeedTrack
from grpc_ps.timing import COLD_GAP_S, costs_after_gaps, per_call, ramp
from pslab import profile_history, rules
from pslab.profile import PROFILE_FORMAT, Machine, Profile, ProfileError
from pslab.profile_history import with_history, with_scenario_figures
from pslab.scenario import Scenario
from pslab.torch_threads import one_torch_thread

STALE_AFTER_S = 7 * 24 * 3600
REFRESH_S = 3600  # a compare adds a calibration to the machine's history when the last is older
# streams are also timed at these sizes: what one costs per byte falls with its size
STREAM_SIZES = (2 << 20, 64 << 20)


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


UpdateFit = tuple[float, float]  # an SGD step's fixed seconds and seconds per parameter byte
EVICT_BYTES = 64 << 20  # more than this machine's caches: what other processes leave behind
UPDATE_REPEATS = 10


def measure_worker_update(nbytes: int) -> tuple[UpdateFit, UpdateFit]:
    """A worker's SGD step (one torch thread) as a run meets it after idling while other
    processes swept the caches, and back to back: each as fixed seconds and seconds per
    parameter byte, from a tiny and a ``nbytes`` model.

    Back to back, an 8 MB step took 1.2 ms here; after a 40 ms sleep and a sweep of
    64 MB, 2.3 ms, as the emulated runs' workers spent on it (2.0 ms). A 20 KB step went
    from 0.01 to 0.2 ms: its code and the interpreter's had gone cold too. A step right
    after a real forward+backward meets them warm: digits_mlp's took 0.06-0.09 ms in the
    runs of 7 December where the cold figure predicted 0.25-0.42 ms."""
    evict = np.ones(EVICT_BYTES // 8)

    def step(n: int, cold: bool) -> float:
        bufs = {"params": torch.zeros(n), "grad": torch.ones(n)}
        rules.sgd(bufs, 0.1)  # the scratch buffer exists in a run from its first step
        times = []
        for _ in range(UPDATE_REPEATS):
            if cold:
                time.sleep(COLD_GAP_S)
                evict.sum()
            t0 = time.perf_counter()
            rules.sgd(bufs, 0.1)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def fit(cold: bool) -> UpdateFit:
        fixed, big = step(tiny, cold), step(n, cold)
        per_byte = max(big - fixed, 0.0) / (4 * (n - tiny))
        return max(fixed - 4 * tiny * per_byte, 0.0), per_byte

    tiny, n = 1024, max(nbytes // 4, 2048)
    with one_torch_thread():
        return fit(cold=True), fit(cold=False)


def measure_mean_scale(nbytes: int) -> float:
    """Seconds per byte of an all-reduce's mean: the emulator divides the sum gloo has just
    written by the group's size, in place, one torch thread. gloo's probe leaves it out, so
    a run's all-reduce op holds it beyond what the probe timed: 3.4 ms on 80 MB here."""
    t = torch.ones(max(nbytes // 4, 1))
    with one_torch_thread():  # as gloo leaves it, just written, then divided
        seconds = per_call(
            lambda _i: t.div_(3), range(UPDATE_REPEATS), prepare=lambda _i: t.fill_(3)
        )
    return seconds / (4 * t.numel())


def measure_slice_work(sizes: Iterable[int]) -> tuple[dict[int, float], dict[int, float]]:
    """Seconds per byte of a communicator's own work on a slice of each size: adding a
    received part into its total in place, and a copy, the mean of its two (the sum into
    its buffer, its offer into a fresh array). Each as the communicator meets it, after
    other processes swept the caches. Beyond glibc's 32 MiB mmap threshold a fresh
    array's pages fault in at every copy: 64 MiB took 6.5-6.8 ms into an existing array
    here and 7.0-7.3 ms into a fresh one, on a quiet machine."""
    evict = np.ones(EVICT_BYTES // 8)
    add: dict[int, float] = {}
    copy: dict[int, float] = {}
    for nbytes in sizes:
        add[nbytes], copy[nbytes] = _slice_work(nbytes, evict)
    return add, copy


def _slice_work(nbytes: int, evict: np.ndarray) -> tuple[float, float]:
    """``measure_slice_work``'s figures at one size: (add, copy) seconds per byte."""
    total, part = np.ones(nbytes // 4, np.float32), np.ones(nbytes // 4, np.float32)
    buf = np.empty_like(total)

    def timed(work: Callable[[int], object]) -> float:
        return per_call(work, range(UPDATE_REPEATS), prepare=lambda _i: evict.sum()) / nbytes

    into, fresh = timed(lambda _i: np.copyto(buf, total)), timed(lambda _i: total.copy())
    return timed(lambda _i: np.add(total, part, out=total)), (into + fresh) / 2


def _load_and_compute(
    model: str, batch: int
) -> tuple[Callable[[int], object], Callable[[int], object]]:
    """A launched worker's two ops on batch ``i``: its load's fetch and its compute."""
    from pslab.data import Batches, load
    from pslab.models import FlatModel

    net = FlatModel(model, 0, torch.device("cpu"))
    batches = Batches(load(0, torch.device("cpu")), 0, 1, batch, 0)
    loaded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def fetch(i: int) -> None:
        loaded[i] = batches.batch(i)

    return fetch, lambda i: net.forward_backward(*loaded.pop(i))


def measure_compute(model: str, batch: int) -> tuple[float, float, float]:
    """Forward+backward seconds per batch back to back and after idling (one torch thread,
    as a launched worker runs it), and the idle gap over which it goes from one to the
    other.

    Timed as a run's compute op is: the batch is fetched after the gap, untimed, as the
    load op does after its sleep, and only the forward+backward is timed. Timing the
    fetch too read digits_mlp at 0.31-0.33 ms hot and 1.00-1.23 ms after 5-20 ms asleep
    here (7 December), against 0.26-0.28 and 0.74-0.87 ms as a run meets it; the runs'
    compute ops measured 0.36-0.95 ms where the old figures predicted 0.96-1.40."""
    with one_torch_thread():
        fetch, compute = _load_and_compute(model, batch)
        costs = costs_after_gaps(compute, prepare=fetch)
    return float(costs[0]), float(costs[-1]), ramp(costs)


def _small_torch_op() -> Callable[[int], object]:
    a, x = torch.randn(64, 64), torch.randn(32, 64)

    def work(_i: int) -> None:
        y = x
        for _ in range(20):
            y = torch.relu(y @ a)

    return work


def measure_cold_ramp() -> float:
    """The cold ramp of a small torch workload: for ops not measured on their own."""
    with one_torch_thread():
        return ramp(costs_after_gaps(_small_torch_op()))


def measure_cooling_by_others() -> tuple[float, float]:
    """What other processes' work in a gap adds to its cooling (``grpc_ps.cooling``), on the
    small torch workload, with one busy process per core."""
    with one_torch_thread():
        return measure_cooling(_small_torch_op(), machine().cores)


def calibrate(scenario: Scenario | None = None, step: Step | None = None) -> Profile:
    step = step or (lambda what, frac: None)
    keep_freed_pages()  # this process is the probes' client: as a role's (grpc_ps.memory)
    nbytes = DEFAULT_BYTES
    if scenario is not None and scenario.emulation.model == "synthetic":
        from pslab.catalogue import resolve_model

        nbytes = min(max(resolve_model(scenario.workload).nbytes, 1 << 20), 64 << 20)
    step("sleep", 0.0)
    with SpeedTrack() as track:  # the speed through the calibration, reported beside runs
        overshoot, jitter = measure_sleep()
        update_per_byte = measure_update(nbytes)
        figures: dict[str, Any] = measure_rpc(DEFAULT_BYTES, update_per_byte, step)
        figures["stream_cpu_s_per_byte_at"] = measure_stream_sizes(
            STREAM_SIZES, update_per_byte, figures["rpc_cpu_s"], step
        )
        step("a busy server", 0.68)
        contended = measure_contended_lock(nbytes, machine().cores)
        step("gloo all-reduce", 0.7)
        gloo = measure_allreduce(nbytes)
        step("cold ops", 0.72)
        ramp = measure_cold_ramp()
        by_others, by_others_cpu = measure_cooling_by_others()
        step("worker update", 0.75)
        (update_s, update_s_per_byte), hot_update = measure_worker_update(nbytes)
        mean_scale = measure_mean_scale(nbytes)
        step("a communicator's sums and copies", 0.78)
        slice_add, slice_copy = measure_slice_work(sorted({DEFAULT_BYTES, *STREAM_SIZES}))
        step("free cores", 0.81)
        free = measure_free_cores(machine().cores)
    profile = Profile(
        format=PROFILE_FORMAT,
        machine=machine(),
        measured_at=time.time(),
        effective_cores=free,
        sleep_overshoot_s=overshoot,
        sleep_jitter_s=jitter,
        worker_update_s=update_s,
        worker_update_s_per_byte=update_s_per_byte,
        worker_update_hot_s=hot_update[0],
        worker_update_hot_s_per_byte=hot_update[1],
        mean_scale_s_per_byte=mean_scale,
        slice_add_s_per_byte_at=slice_add,
        slice_copy_s_per_byte_at=slice_copy,
        cold_ramp_s=ramp,
        cold_by_others_share=by_others,
        cold_by_others_cpu_s=by_others_cpu,
        speed=track.speed(),
        contended_lock_share=contended,
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

    new: dict[str, dict[str, float]] = {}  # figure -> the entries measured here
    emu = scenario.emulation
    key = profile.compute_key(emu.model, scenario.workload.batch_size)
    plan = build_plan(scenario)
    world = len(plan.collective_world)
    ring = profile.allreduce_key(world, plan.model.nbytes)
    needs_compute = emu.compute == "real" and key not in profile.compute_cold_ramp_s
    needs_ring = world > 1 and not (ring in profile.allreduce_s and ring in profile.allreduce_cpu_s)
    if not (needs_compute or needs_ring):
        return profile
    if needs_compute:
        if step:
            step(f"compute {key}", 0.8)
        hot, cold, ramp = measure_compute(emu.model, scenario.workload.batch_size)
        new.update(
            compute_s={key: hot}, compute_cold_s={key: cold}, compute_cold_ramp_s={key: ramp}
        )
    if needs_ring:
        if step:
            step(f"gloo all-reduce among {world}", 0.9)
        seconds, cpu = measure_allreduce_at(world, plan.model.nbytes)
        new.update(allreduce_s={ring: seconds}, allreduce_cpu_s={ring: cpu})
    return profile.model_copy(
        update={name: {**getattr(profile, name), **entries} for name, entries in new.items()}
    )


def _cached(path: Path) -> Profile | None:
    """The cached profile, or None where there is none or an older pslab wrote it."""
    try:
        return Profile.load(path)
    except ProfileError:
        return None


def history_path() -> Path:
    path = cache_path()
    return path.with_name(f"{path.stem}.history.yaml")


def calibrations() -> int:
    """How many of this machine's calibrations a compare's medians stand on now."""
    return profile_history.count(history_path(), machine(), time.time(), STALE_AFTER_S)


def add_calibration(scenario: Scenario | None = None, step: Step | None = None) -> Profile:
    """Calibrate now and add it to this machine's history; return the medians (the caller
    caches them). A compare does this hourly; a new machine's first compare would otherwise
    stand on one moment's draw (a CI run's calibration read the cores 1.36x slower than its
    run 40 s later, and over-predicted the quickstart by 34 %), so a user can take a few up
    front."""
    cache_path().parent.mkdir(parents=True, exist_ok=True)
    return with_history(calibrate(scenario, step), history_path(), STALE_AFTER_S)


def profile_for(scenario: Scenario, step: Step | None = None) -> Profile:
    """The scenario's named profile, else this machine's cached one: each figure the median
    of its last calibrations (:mod:`pslab.profile_history`), one more taken hourly."""
    if scenario.calibration:
        return with_scenario(Profile.load(Path(scenario.calibration)), scenario, step)
    path = cache_path()
    profile = _cached(path)
    if profile is None or not is_fresh(profile) or time.time() - profile.measured_at > REFRESH_S:
        profile = add_calibration(scenario, step)
    updated = with_scenario_figures(
        profile, with_scenario(profile, scenario, step), history_path(), STALE_AFTER_S
    )
    updated.save(path)
    # what other jobs leave free changes by the second: compare takes it from the measured
    # run itself (grpc_ps.load), not from this moment
    return updated
