"""What other jobs take from the machine during a measured run, and what a prediction makes of it.

The arithmetic runs on made-up samples; the end-to-end test starts a CPU-burning process beside
a real emulated run and checks that the run sees it and that the prediction slows down for it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from grpc_ps.calibrate import profile_for
from grpc_ps.launch import launch
from grpc_ps.load import TICK_S, LoadSampler, _Sample, free_cores
from pslab.scenario import load_scenario
from pslab_cli.comparing import with_run_machine
from sim.run import simulate_emulated


def _sampler(samples: list[_Sample]) -> LoadSampler:
    s = LoadSampler(lambda: [], cores=2)
    s.samples = samples
    return s


def test_other_jobs_are_busy_ticks_less_the_runs_own() -> None:
    # 1 s in 0.1 s steps: 2 cores busy throughout (20 ticks per step at 100 Hz), the run's
    # one process 1 core (10 ticks): the other jobs took one core
    hz = 1 / TICK_S
    step = int(hz / 10)
    samples = [_Sample(0.1 * k, 2 * step * k, {7: step * k}) for k in range(11)]
    load = _sampler(samples).summary()
    assert load["other_cores"] == pytest.approx(1.0)
    assert load["own_cores"] == pytest.approx(1.0)
    assert not load["unsteady"]
    assert free_cores(load, 2) == pytest.approx(1.0)


def test_an_interval_a_process_ended_in_is_not_counted() -> None:
    step = 10
    samples = [
        _Sample(0.0, 0, {7: 0}),
        _Sample(0.1, 2 * step, {7: step}),
        _Sample(0.2, 4 * step, {7: None}),  # ended: its last ticks are lost to the own count
    ]
    load = _sampler(samples).summary()
    assert load["seconds"] == pytest.approx(0.1)


def test_a_load_that_moves_is_flagged() -> None:
    hz = 1 / TICK_S
    step = int(hz / 10)
    busy, samples = 0, []
    for k in range(21):  # other jobs idle for the first second, then two cores
        samples.append(_Sample(0.1 * k, busy, {}))
        busy += 0 if k < 10 else 2 * step
    load = _sampler(samples).summary()
    assert load["unsteady"]
    assert load["other_cores_min"] == pytest.approx(0.0)
    assert load["other_cores_max"] == pytest.approx(2.0)
    assert free_cores({"other_cores": 5.0}, 2) == 0.25  # never zero cores


def _burn(seconds: float) -> subprocess.Popen:
    code = f"import time\nt=time.time()\nwhile time.time()-t<{seconds}: pass"
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.mark.slow  # calibration, two real runs: tens of seconds
def test_a_cpu_burner_beside_the_run_is_seen_and_slows_the_prediction(root) -> None:
    scenario = load_scenario(root / "scenarios/validation/sync_ps_real.yaml", ["run.iterations=60"])
    profile = profile_for(scenario)
    quiet = launch(scenario).metrics
    burner = _burn(120)
    try:
        time.sleep(0.3)
        loaded = launch(scenario).metrics
    finally:
        burner.kill()
        burner.wait()
    q, b = quiet["machine_load"], loaded["machine_load"]
    assert b["other_cores"] > q["other_cores"] + 0.3, (q, b)

    def predicted(measured: dict) -> float:
        p = with_run_machine(profile, measured)
        return simulate_emulated(scenario, p).metrics["iteration_time_s"]

    assert predicted(loaded) > predicted(quiet)


def test_the_steady_window_starts_when_the_last_worker_is_in_its_counted_iterations() -> None:
    from grpc_ps.load import steady_window
    from pslab.trace import SpanRecord

    def it(role: str, i: int, start: float, end: float) -> SpanRecord:
        return SpanRecord(role, "h", "iteration", "iteration", start, end, i)

    # worker-1 started 3 s late (its imports); each runs iterations 0-4, warmup 1
    spans = [it("worker-0", i, i, i + 1.0) for i in range(5)]
    spans += [it("worker-1", i, 3 + i, 4 + i) for i in range(5)]
    spans.append(SpanRecord("ps-0", "h", "apply", "server", 0.0, 9.0, 0))
    # counted: 1 <= i < 4; the last first-counted start is worker-1's 4.0, the first
    # last-counted end worker-0's 4.0: they never overlapped, so the whole span
    assert steady_window(spans, 1, 5) == (0.0, 8.0)
    assert steady_window(spans, 0, 5) == (3.0, 4.0)
    late = [it("worker-1", i, 1 + i, 2 + i) for i in range(5)]
    assert steady_window(spans[:5] + late, 1, 5) == (2.0, 4.0)
    assert steady_window([], 1, 5) is None


def test_a_window_too_short_for_two_samples_gives_no_figure() -> None:
    """No figure rather than zeros: compare then keeps the calibration's free cores, and
    its notes do not report a load nobody measured."""
    assert _sampler([]).summary() == {}
