"""Simulate a scenario end to end: plan, cluster, executor, outputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pslab.algorithms import build_plan
from pslab.algorithms.base import worker_names
from pslab.compare import op_durations
from pslab.metrics import mean_metrics
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


def simulate_emulated(scenario: Scenario, profile: Profile, phases: int = PHASES) -> SimResult:
    """Predict the emulator's run of ``scenario`` on the machine ``profile`` describes.

    An asynchronous variant's steady state depends on the workers' relative
    phase: whose pushes meet at the server. A real run gets its phases from
    process start-up, hundreds of milliseconds apart and arbitrary, and one
    phase can be 30 % slower than another (async_ps-emulated: 62 to 84 ms).
    So the prediction is the mean over ``phases`` runs: the first with every
    worker starting together, the others with start times drawn uniformly over
    one iteration (seeded by the run's seed). A synchronous variant forgets
    its phase at the first barrier: when the second run matches the first,
    the rest are skipped. The metrics keep the spread
    (``iteration_time_s_phases``: min, max) and the mean op times
    (``op_time_s``) over the runs; the trace is the first run's.
    """
    local = lay_out(scenario)[0]
    emulated = local.emulation.compute != "real"  # the platform prices a real step

    on = NetnsPlatform if local.emulation.network == "netns" else LocalPlatform

    def run(start_at: dict[str, float] | None) -> SimResult:
        plan = build_plan(local)
        return SimExecutor(local, plan, on(plan, profile, emulated), start_at).run()

    results = [run(None)]
    period = results[0].metrics["iteration_time_s"]
    rng = np.random.default_rng(local.run.seed)
    workers = worker_names(local.topology.n_workers)
    for k in range(1, phases):
        results.append(run({w: float(rng.uniform(0.0, period)) for w in workers}))
        if k == 1 and math.isclose(results[1].metrics["iteration_time_s"], period, rel_tol=1e-6):
            break
    first = results[0]
    first.metrics = mean_metrics([r.metrics for r in results])
    first.metrics["iteration_time_s_phases"] = [
        min(r.metrics["iteration_time_s"] for r in results),
        max(r.metrics["iteration_time_s"] for r in results),
    ]
    run_cfg = local.run
    ops = [op_durations(r.trace, run_cfg.warmup, run_cfg.iterations) for r in results]
    first.metrics["op_time_s"] = {
        name: float(np.mean([o[name] for o in ops if name in o])) for name in ops[0]
    }
    first.trace.meta["platform"] = local.emulation.network
    first.trace.meta["phases"] = len(results)
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
