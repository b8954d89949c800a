"""Simulate a scenario end to end: plan, cluster, executor, outputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pslab.algorithms import build_plan
from pslab.algorithms.base import worker_names
from pslab.compare import op_durations
from pslab.profile import Profile
from pslab.results import write_results
from pslab.scenario import Scenario
from pslab.topology import lay_out
from sim.executor import SimExecutor, SimResult, gc_paused
from sim.netns_platform import NetnsPlatform
from sim.platform import LocalPlatform, NominalPlatform


def simulate(
    scenario: Scenario,
    base_dir: Path | None = None,
    on_start: Callable[[SimExecutor], None] | None = None,
) -> SimResult:
    """``on_start`` sees the executor before it runs (the CLI's progress bar polls it).
    A graph topology's workers are the graph's hosts (``lay_out``)."""
    with gc_paused():
        scenario, cluster = lay_out(scenario, base_dir)
        plan = build_plan(scenario)
        executor = SimExecutor(scenario, plan, NominalPlatform(cluster))
        if on_start is not None:
            on_start(executor)
        return executor.run()


PHASES = 8
# How close a second phase's run must come to the first for the variant to count as one
# that forgets its phase: a barrier does, but not to the bit, since the round's last pusher
# is answered at once where the others' held pulls answer their requests (0.03 % apart in
# test_an_asynchronous_prediction_starts_every_worker_together's sync_ps).
PHASE_FORGOTTEN = 1e-3


def simulate_emulated(scenario: Scenario, profile: Profile, phases: int = PHASES) -> SimResult:
    """Predict the emulator's run of ``scenario`` on the machine ``profile`` describes.

    The launcher starts every worker's first iteration together
    (``grpc_ps.start_gate``), so the prediction is the run with every worker
    starting at 0. An asynchronous variant's steady state depends on the
    workers' relative phase (whose pushes meet at the server), and before the
    gate a real run drew its phases from process start-up, hundreds of
    milliseconds apart: the prediction was the mean over random phases. How
    much the phase matters is still reported: ``phases - 1`` more runs with
    start times drawn uniformly over one iteration (seeded by the run's seed)
    give ``iteration_time_s_phases`` (min, max over all). A synchronous
    variant forgets its phase at the first barrier: when the second run
    matches the first (``PHASE_FORGOTTEN``), the rest are skipped.
    """
    local = lay_out(scenario)[0]
    emulated = local.emulation.compute != "real"  # the platform prices a real step

    on = NetnsPlatform if local.emulation.network == "netns" else LocalPlatform

    def run(start_at: dict[str, float] | None) -> SimResult:
        plan = build_plan(local)
        return SimExecutor(local, plan, on(plan, profile, emulated), start_at).run()

    first = run(None)
    period = first.metrics["iteration_time_s"]
    times = [period]
    rng = np.random.default_rng(local.run.seed)
    workers = worker_names(local.topology.n_workers)
    for k in range(1, phases):
        times.append(
            run({w: float(rng.uniform(0.0, period)) for w in workers}).metrics["iteration_time_s"]
        )
        if k == 1 and math.isclose(times[1], period, rel_tol=PHASE_FORGOTTEN):
            break
    first.metrics["iteration_time_s_phases"] = [min(times), max(times)]
    first.metrics["op_time_s"] = op_durations(first.trace, local.run.warmup, local.run.iterations)
    first.trace.meta["platform"] = local.emulation.network
    first.trace.meta["phases"] = len(times)
    return first


def simulate_to(
    scenario: Scenario,
    out_dir: Path,
    base_dir: Path | None = None,
    on_start: Callable[[SimExecutor], None] | None = None,
) -> SimResult:
    result = simulate(scenario, base_dir, on_start)
    write_results(out_dir, scenario, result.metrics, result.trace)
    return result
