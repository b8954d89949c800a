"""pslab validate: a scenario that cannot run is named, and the suite goes on without it."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import zero_cost_profile

from pslab_cli.comparing import machine_moment, machine_note
from pslab_cli.main import main


def _scenario(name: str, workers: int, profile: str) -> dict:
    return {
        "name": name,
        "topology": {"preset": "single_node", "workers_per_node": workers, "servers": 1},
        "workload": {"model": {"params": 1000}, "compute_time": "2ms", "io_time": "0ms"},
        "algorithm": {"name": "sync_ps"},
        "run": {"iterations": 4, "warmup": 1},
        "emulation": {"compute": "emulated", "model": "synthetic"},
        "calibration": profile,  # no calibration: the test is about the suite, not the model
    }


@pytest.mark.slow  # one real (tiny) emulation: several seconds
def test_a_scenario_that_cannot_run_is_named_and_the_rest_compared(tmp_path, capsys) -> None:
    profile = tmp_path / "profile.yaml"
    zero_cost_profile().save(profile)
    suite = tmp_path / "suite"
    suite.mkdir()
    for name, workers in (("fits", 2), ("too-many", 40)):  # 40 roles on this machine's cores
        (suite / f"{name}.yaml").write_text(yaml.safe_dump(_scenario(name, workers, str(profile))))
    assert main(["validate", str(suite), "-o", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["scenarios"] == 1 and set(summary["per_scenario"]) == {"fits"}
    assert "role processes" in summary["failed"]["too-many"]  # why, as check_fits says it
    assert "1 scenario(s) failed: too-many" in captured.err.replace("\n", " ")
    assert (tmp_path / "out" / "fits" / "compare.json").exists()
    assert set(summary["machine"]) == {"cpu_measured_over_predicted", "speed_vs_calibration"}


def test_the_summary_says_which_moment_the_machine_was_in() -> None:
    """Medians over the scenarios that measured each figure; none measured: said so."""
    per_scenario = {
        "a": {
            "cpu_s_per_worker_iteration": {"predicted": 2.0, "measured": 2.5},
            "speed_vs_calibration": 0.9,
        },
        "b": {
            "cpu_s_per_worker_iteration": {"predicted": 1.0, "measured": 1.3},
            "speed_vs_calibration": 0.8,
        },
        "c": {
            "cpu_s_per_worker_iteration": {"predicted": 4.0, "measured": 4.8},
            "speed_vs_calibration": None,
        },
        "d": {"cpu_s_per_worker_iteration": None, "speed_vs_calibration": None},
    }
    moment = machine_moment(per_scenario)
    assert moment["cpu_measured_over_predicted"] == pytest.approx(1.25)  # of 1.25, 1.3, 1.2
    assert moment["speed_vs_calibration"] == pytest.approx(0.85)
    note = machine_note(moment)
    assert note is not None and "1.25x the CPU predicted" in note and "0.85x" in note
    empty = machine_moment({"d": per_scenario["d"]})
    assert empty == {"cpu_measured_over_predicted": None, "speed_vs_calibration": None}
    assert machine_note(empty) is None
