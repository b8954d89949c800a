"""pslab validate: a scenario that cannot run is named, and the suite goes on without it."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import zero_cost_profile

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
