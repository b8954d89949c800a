"""Compare end to end on the quickstart: calibrate, emulate, predict, and agree."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from grpc_ps.calibrate import calibrations
from pslab.compare import compare_metrics, error_pct
from pslab.scenario import load_scenario
from pslab.trace import Trace
from pslab_cli.comparing import measure_median
from pslab_cli.main import main


@pytest.mark.slow  # three calibrations and real processes: a minute or two
def test_quickstart_prediction_is_within_bounds(tmp_path, capsys) -> None:
    # as a machine's profile stands after its first hours: each figure the median of three
    # calibrations, not one moment's draw (pslab.profile_history)
    assert main(["calibrate", "--history", "3"]) == 0
    assert calibrations() == 3
    assert main(["calibrate", "--history", "3"]) == 0  # already there: none taken
    assert "0 calibration(s) added; compare's medians now stand on 3" in capsys.readouterr().out
    out = tmp_path / "cmp"
    assert main(["compare", "--set", "run.iterations=14", "-o", str(out)]) == 0
    report = json.loads((out / "compare.json").read_text())
    it = report["metrics"]["iteration_time_s"]
    assert abs(it["error_pct"]) <= 25, it
    assert abs(report["metrics"]["overlap_ratio"]["abs_error"]) <= 0.1
    for png in ("timeline.png", "breakdown.png"):
        assert (out / png).stat().st_size > 1000
    assert "iteration_time_s" in capsys.readouterr().out
    # --sim/--measured re-compare earlier runs without running anything
    again = tmp_path / "again"
    args = ["compare", "--sim", str(out / "sim"), "--measured", str(out / "measured")]
    assert main([*args, "-o", str(again)]) == 0
    assert json.loads((again / "compare.json").read_text())["metrics"] == report["metrics"]
    # the prediction's inputs lie beside it, and predict it again bit for bit
    recorded = out / "replay"
    assert {p.name for p in recorded.iterdir()} >= {"scenario.yaml", "profile.yaml", "pslab.json"}
    assert json.loads((recorded / "pslab.json").read_text())["version"]
    assert report["machine_load"]["cores"] >= 1
    roles = report["cpu_s_per_worker_iteration"]["by_role"]  # every process, both sides
    assert set(roles) >= {"workers", "ps-0"}
    assert all(e["predicted"] > 0 and e["measured"] > 0 for e in roles.values())
    replayed = tmp_path / "replayed"
    assert main(["compare", "--replay", str(out), "-o", str(replayed)]) == 0
    again_report = json.loads((replayed / "compare.json").read_text())
    assert again_report["replay"]["identical"]
    it_again = again_report["metrics"]["iteration_time_s"]
    assert it_again["predicted"] == it["predicted"] and it_again["measured"] == it["measured"]


def test_replay_of_a_directory_without_its_inputs_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["compare", "--replay", str(tmp_path)]) == 2
    assert "no replay/scenario.yaml" in capsys.readouterr().err


def test_error_pct_and_metric_join() -> None:
    assert error_pct(1.1, 1.0) == pytest.approx(10.0)
    assert error_pct(0.0, 0.0) == 0.0
    assert error_pct(1.0, 0.0) is None
    m = {
        "iteration_time_s": 1.0,
        "throughput_samples_per_s": 2.0,
        "compute_time_s": 0.5,
        "io_time_s": 0.1,
        "comm_time_s": 0.4,
        "exposed_comm_time_s": 0.2,
        "overlap_ratio": 0.5,
        "staleness": {"mean": 1.0},
    }
    out = compare_metrics(m, {**m, "overlap_ratio": 0.4})
    assert out["overlap_ratio"]["abs_error"] == pytest.approx(0.1)
    assert out["iteration_time_s"]["error_pct"] == 0.0


def test_repeat_compares_with_the_median_run(tmp_path) -> None:
    times = iter([0.3, 0.1, 0.2])

    def measure(scenario, out_dir):
        out_dir.mkdir(parents=True)
        t = next(times)
        (out_dir / "metrics.json").write_text(json.dumps({"iteration_time_s": t}))
        return SimpleNamespace(metrics={"iteration_time_s": t}, trace=Trace("emu"))

    scenario = load_scenario("scenarios/quickstart.yaml")
    chosen, runs = measure_median(scenario, tmp_path, measure, repeat=3)
    assert runs == [0.3, 0.1, 0.2]
    assert chosen.metrics["iteration_time_s"] == 0.2
    measured = json.loads((tmp_path / "measured" / "metrics.json").read_text())
    assert measured["iteration_time_s"] == 0.2


def test_the_notes_state_the_runs_range_the_load_and_the_cpu() -> None:
    from pslab_cli.comparing import report_notes

    load = {
        "cores": 2,
        "other_cores": 0.4,
        "other_cores_min": 0.1,
        "other_cores_max": 0.9,
        "unsteady": True,
    }
    report = {
        "measured_runs_s": [0.10, 0.12, 0.11],
        "measured_range_s": [0.10, 0.12],
        "prediction_in_range": False,
        "machine_load": load,
        "cpu_s_per_worker_iteration": {"predicted": 0.002, "measured": 0.003},
    }
    notes = "\n".join(report_notes(report))
    assert "3 measured runs took 0.1-0.12 s" in notes and "outside that range" in notes
    assert "0.40 of 2 cores" in notes and "0.10-0.90" in notes
    assert "moved a lot" in notes
    assert "predicted 2 ms, measured 3 ms" in notes


def test_cpu_by_role_sums_the_workers_and_keeps_each_server() -> None:
    from pslab_cli.comparing import _cpu_by_role, report_notes

    predicted = {"cpu_time_by_process_s": {"worker-0": 0.2, "worker-1": 0.2, "ps-0": 0.3}}
    measured = {"cpu_time_by_process_s": {"worker-0": 0.3, "worker-1": 0.5, "ps-0": 0.3}}
    # the measured side is divided by the worker-iterations of its own window
    by_role = _cpu_by_role(predicted, measured, per={"predicted": 100, "measured": 50})
    assert by_role["workers"] == pytest.approx({"predicted": 0.004, "measured": 0.016})
    assert by_role["ps-0"] == pytest.approx({"predicted": 0.003, "measured": 0.006})
    cpu = {"predicted": 0.007, "measured": 0.022, "by_role": by_role}
    notes = "\n".join(report_notes({"cpu_s_per_worker_iteration": cpu}))
    assert "workers 4/16" in notes and "ps-0 3/6" in notes
