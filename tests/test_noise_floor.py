"""experiments.noise_floor: the split of measured times and of the model's error, on validations
built with known parts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments.noise_floor import load_runs, main, replayed_prediction, split, two_way
from pslab.profile import Machine, Profile
from pslab.scenario import dump_scenario, load_scenario

SCENARIOS = {"a": 0.1, "b": 0.05, "c": 0.2, "d": 0.01}  # typical seconds
MOMENTS = [0.95, 1.0, 1.08]  # each validation's factor
BIAS = {"a": 1.2, "b": 1.0, "c": 0.9, "d": 1.0}  # the model's, per scenario
CALIBRATION = [1.1, 1.0, 1.0]  # the model's, per validation


def _write(root: Path, scatter: np.ndarray) -> list[Path]:
    dirs = []
    for j, moment in enumerate(MOMENTS):
        v = root / f"val{j + 2}"  # val2..val4, so val10-style ordering is exercised by name
        for i, (s, t) in enumerate(SCENARIOS.items()):
            measured = t * moment * math.exp(scatter[i, j])
            predicted = t * moment * BIAS[s] * CALIBRATION[j]
            report = {
                "metrics": {"iteration_time_s": {"measured": measured, "predicted": predicted}}
            }
            (v / s).mkdir(parents=True)
            (v / s / "compare.json").write_text(json.dumps(report))
        dirs.append(v)
    return dirs


def test_two_way_recovers_an_additive_table() -> None:
    a, b = np.array([1.0, -2.0, 0.5]), np.array([0.3, -0.1, -0.2])
    y = a[:, None] + b[None, :]
    y[1, 2] = np.nan  # a scenario one validation lacks
    fa, fb = two_way(y)
    np.testing.assert_allclose(fa, a, atol=1e-9)
    np.testing.assert_allclose(fb, b, atol=1e-9)


def test_without_scatter_the_oracles_are_exact_and_the_model_split_is_recovered(
    tmp_path: Path,
) -> None:
    runs = load_runs(_write(tmp_path, np.zeros((4, 3))))
    out = split(runs, bound_pct=12.0)
    for r in out["per_validation"]:
        assert r["oracle"]["max_pct"] == pytest.approx(0.0, abs=1e-9)
        assert r["leave_one_out"]["max_pct"] == pytest.approx(0.0, abs=1e-9)
    moments = [r["moment_pct"] for r in out["per_validation"]]
    mean_log = np.mean(np.log(MOMENTS))
    expected = [100 * (m / math.exp(mean_log) - 1) for m in MOMENTS]
    assert moments == pytest.approx(expected, abs=1e-9)
    # the model's bias per scenario carries its overall level, its calibration is mean zero
    level = math.exp(np.mean(np.log(CALIBRATION)))
    bias = {r["scenario"]: r["model_bias_pct"] for r in out["per_scenario"]}
    for s, x in BIAS.items():
        assert bias[s] == pytest.approx(100 * (x * level - 1), abs=1e-9)
    assert out["model_split_sd_pct"]["rest"] == pytest.approx(0.0, abs=1e-9)
    assert out["all_within_bound"] == {"model": 0, "oracle": 3, "leave_one_out": 3}


def test_a_runs_scatter_is_the_floor_no_oracle_gets_under(tmp_path: Path) -> None:
    scatter = np.random.default_rng(0).normal(0, 0.05, (4, 3))
    out = split(load_runs(_write(tmp_path, scatter)), bound_pct=12.0)
    assert out["scatter_sd_pct"] > 0
    for r in out["per_validation"]:  # held out, a run is harder to predict than in-sample
        assert r["leave_one_out"]["max_pct"] >= r["oracle"]["max_pct"]
        assert r["oracle"]["max_pct"] > 0


def test_cli_ends_with_one_json_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _write(tmp_path, np.zeros((4, 3)))
    assert main([str(d) for d in dirs]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [Path(r["validation"]).name for r in last["per_validation"]] == ["val2", "val3", "val4"]
    assert last["scenarios"] == 4


def test_replay_predicts_again_from_a_runs_recorded_inputs(tmp_path: Path, root: Path) -> None:
    """``--replay`` predicts from each run's ``replay/`` files alone, with this code: the
    recorded prediction is replaced, the measured time kept."""
    run = tmp_path / "val1" / "sync_ps_emulated"
    (run / "replay").mkdir(parents=True)
    scenario = load_scenario(root / "scenarios/validation/sync_ps_emulated.yaml")
    (run / "replay" / "scenario.yaml").write_text(dump_scenario(scenario))
    zero = dict.fromkeys(
        ("send_cpu_s_per_byte", "recv_cpu_s_per_byte", "rpc_overhead_s", "rpc_cpu_s"), 0.0
    )
    machine = Machine(hostname="test", cores=2, python="3")
    Profile(machine=machine, measured_at=0.0, update_s_per_byte=1e-10, **zero).save(
        run / "replay" / "profile.yaml"
    )
    times = {"measured": 0.2, "predicted": 1.0}  # a stale recorded prediction
    (run / "compare.json").write_text(json.dumps({"metrics": {"iteration_time_s": times}}))
    again = replayed_prediction(run)
    # free transfers: an iteration is its 10 ms load and 30 ms compute (sleeps) and the
    # server's updates of 8 MB at 1e-10 s/B (under 1 ms each)
    assert 0.04 < again < 0.05
    runs = load_runs([tmp_path / "val1"], replay=True, workers=1)
    assert runs == {(str(tmp_path / "val1"), "sync_ps_emulated"): (0.2, again)}
