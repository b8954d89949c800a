"""The cores' speed: probed through calibration and around each run, and what it rescales."""

from __future__ import annotations

import pytest

from grpc_ps.speed_probe import mean_speed, measure_speed
from pslab.profile import CPU_FIGURES, Machine, Profile, Speed
from pslab.scenario import load_scenario
from pslab_cli.comparing import with_run_machine
from sim.run import simulate_emulated


def _speed(rate: float, low: float | None = None, high: float | None = None) -> Speed:
    return Speed(loops_per_cpu_s=rate, low=low or rate, high=high or rate)


def _profile(speed: Speed | None) -> Profile:
    return Profile(
        machine=Machine(hostname="test", cores=2, python="3"),
        measured_at=0.0,
        send_cpu_s_per_byte=1e-9,
        recv_cpu_s_per_byte=1e-9,
        server_send_cpu_s_per_byte=1e-9,
        server_recv_cpu_s_per_byte=1e-9,
        rpc_overhead_s=4e-4,
        rpc_cpu_s=1e-3,
        update_s_per_byte=5e-10,
        sleep_overshoot_s=1e-4,
        worker_update_s=2e-4,
        compute_s={"m@32": 1e-3},
        cold_ramp_s=5e-3,
        speed=speed,
    )


def test_a_probe_reads_a_plausible_rate_and_means_are_harmonic_with_their_range() -> None:
    s = measure_speed(0.02)
    assert 1e5 < s.loops_per_cpu_s < 1e10
    assert s.low == s.high == s.loops_per_cpu_s
    m = mean_speed([_speed(10.0), _speed(30.0)])
    assert m.loops_per_cpu_s == pytest.approx(15.0)  # 2 / (1/10 + 1/30): CPU seconds add
    assert (m.low, m.high) == (10.0, 30.0)


def test_a_run_inside_the_calibrations_probes_keeps_its_figures() -> None:
    p = _profile(_speed(30.0, 28.0, 33.0))
    q = p.at_speed(_speed(29.0))
    assert q.speed == _speed(29.0)
    assert all(getattr(q, f) == getattr(p, f) for f in CPU_FIGURES)


def test_a_slower_run_costs_every_cpu_figure_more_and_nothing_else() -> None:
    p = _profile(_speed(30.0, 28.0, 33.0))
    q = p.at_speed(_speed(20.0))
    assert q.rpc_cpu_s == pytest.approx(1.5e-3)
    assert q.send_cpu_s_per_byte == pytest.approx(1.5e-9)
    assert q.compute_s == {"m@32": pytest.approx(1.5e-3)}
    # not CPU work: a sleep's overshoot, an idle gap's ramp
    assert (q.sleep_overshoot_s, q.cold_ramp_s) == (p.sleep_overshoot_s, p.cold_ramp_s)
    assert _profile(None).at_speed(_speed(20.0)) == _profile(None)  # nothing to scale from


def test_a_run_on_slower_cores_is_predicted_slower(root) -> None:
    scenario = load_scenario(root / "scenarios/validation/sync_ps_emulated.yaml")
    profile = _profile(_speed(30.0, 28.0, 33.0))

    def predicted(rate: float) -> float:
        measured = {"machine_speed": _speed(rate).model_dump()}
        return simulate_emulated(scenario, with_run_machine(profile, measured)).metrics[
            "iteration_time_s"
        ]

    assert predicted(15.0) > predicted(30.0) == predicted(31.0)


def test_figures_a_scenario_adds_later_join_at_the_profiles_speed(root, monkeypatch) -> None:
    """Measured at half the profile's speed, a real step's 2 ms is 1 ms at the profile's;
    its ramp is not CPU work and stays as measured."""
    from grpc_ps import calibrate

    scenario = load_scenario(root / "scenarios/validation/sync_ps_real.yaml")
    profile = _profile(_speed(30.0, 28.0, 33.0)).model_copy(update={"compute_s": {}})
    monkeypatch.setattr(calibrate, "measure_compute", lambda model, batch: (2e-3, 3e-3, 7e-3))
    key = profile.compute_key(scenario.emulation.model, scenario.workload.batch_size)
    for rate, step_s in ((15.0, 1e-3), (29.0, 2e-3)):  # outside, then inside, the probes
        monkeypatch.setattr(calibrate, "measure_speed", lambda rate=rate: _speed(rate))
        joined = calibrate.with_scenario(profile, scenario)
        assert joined.compute_s[key] == pytest.approx(step_s)
        assert joined.compute_cold_ramp_s[key] == 7e-3
        assert joined.speed == profile.speed
