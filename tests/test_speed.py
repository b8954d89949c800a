"""The cores' speed: tracked through calibration and through each run, reported, not applied."""

from __future__ import annotations

import pytest

from grpc_ps.speed_probe import SpeedTrack, speed_of
from pslab.profile import Machine, Profile, Speed
from pslab.scenario import load_scenario
from pslab_cli.comparing import report_notes, with_run_machine
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


def test_a_stretchs_speed_is_the_harmonic_mean_of_its_blocks_within_its_error() -> None:
    s = speed_of([10.0, 30.0])
    assert s is not None
    assert s.loops_per_cpu_s == pytest.approx(15.0)  # 2 / (1/10 + 1/30): CPU seconds add
    assert s.low < 15.0 < s.high
    many = speed_of([10.0, 30.0] * 50)  # the same spread, known 10x better
    assert many is not None and many.high - many.low < (s.high - s.low) / 5
    assert speed_of([12.0]) is None  # one block says nothing of its error


def test_a_track_times_blocks_in_a_process_of_its_own_through_its_stretch() -> None:
    import os
    import time

    cpu0 = time.process_time()
    with SpeedTrack() as track:
        time.sleep(0.6)
    t0 = time.monotonic()
    assert len(track.samples) >= 3
    assert all(t < t0 for t, _ in track.samples)
    s = track.speed()
    assert s is not None and 1e5 < s.low <= s.loops_per_cpu_s <= s.high < 1e10
    assert track.speed((0.0, 1.0)) is None  # no block in that span
    assert time.process_time() - cpu0 < 0.05 * (os.cpu_count() or 1)  # not this one's CPU


def test_speeds_differ_only_beyond_both_errors() -> None:
    calibrated = _speed(30.0, 28.0, 33.0)
    assert not _speed(29.0).differs_from(calibrated)
    assert not _speed(26.0, 24.0, 28.5).differs_from(calibrated)  # the errors overlap
    assert _speed(20.0, 19.0, 21.0).differs_from(calibrated)
    assert calibrated.differs_from(_speed(40.0, 35.0, 45.0))


def test_the_runs_speed_is_reported_not_applied(root) -> None:
    """The loop's speed did not carry over to the ops (pslab.profile): a run on slower
    cores is predicted from the figures as calibrated, and compare says how far off the
    cores were."""
    scenario = load_scenario(root / "scenarios/validation/sync_ps_emulated.yaml")
    profile = _profile(_speed(30.0, 28.0, 33.0))

    def predicted(rate: float) -> float:
        measured = {"machine_speed": _speed(rate).model_dump()}
        return simulate_emulated(scenario, with_run_machine(profile, measured)).metrics[
            "iteration_time_s"
        ]

    assert predicted(15.0) == predicted(30.0)
    slow = {"speed_vs_calibration": {"ratio": 0.5, "beyond_errors": True}}
    assert "0.50x the calibration's work" in report_notes(slow)[0]
    assert "beyond both speeds' errors" in report_notes(slow)[0]
    near = {"speed_vs_calibration": {"ratio": 0.97, "beyond_errors": False}}
    assert "within both speeds' errors" in report_notes(near)[0]
