"""The command as a user runs it: real processes, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

from pslab_cli.main import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pslab_cli.main", *args], capture_output=True, text=True, timeout=120
    )


def test_bad_scenario_exits_2_without_traceback(tmp_path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: b\nworkload: {compute_time: soon}\n")
    p = run("sim", str(f))
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert str(f) in p.stderr
    assert "workload.compute_time" in p.stderr


def test_bad_override_exits_2(capsys) -> None:
    assert main(["sim", "--set", "topology.nodes"]) == 2
    assert "key.path=value" in capsys.readouterr().err


def test_sim_json_and_outputs(tmp_path, capsys) -> None:
    assert main(["sim", "--json", "-o", str(tmp_path), "--set", "run.iterations=6"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in (
        "iteration_time_s",
        "throughput_samples_per_s",
        "compute_time_s",
        "io_time_s",
        "comm_time_s",
        "exposed_comm_time_s",
        "overlap_ratio",
        "staleness",
        "links",
        "events",
        "wall_time_s",
    ):
        assert key in metrics
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert trace["otherData"]["source"] == "sim"
    assert any(e["ph"] == "X" for e in trace["traceEvents"])
    assert (tmp_path / "scenario.yaml").exists()
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


def test_worker_takes_its_rank_from_the_launcher_environment(tmp_path, capsys, monkeypatch) -> None:
    from grpc_ps.roles import rank_from_env

    for name in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert rank_from_env() == 3
    monkeypatch.setenv("RANK", "5")
    assert rank_from_env() == 5
    assert main(["worker", "--run-dir", str(tmp_path)]) == 2
    assert "no scenario.yaml" in capsys.readouterr().err


def test_a_bad_calibration_profile_exits_2_naming_its_fields(tmp_path, capsys) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("machine: {hostname: x}\nbogus: 1\n")
    args = ["compare", "--set", f"calibration={profile}", "-o", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{profile}: invalid calibration profile" in err
    assert "bogus" in err and "measured_at" in err and "Traceback" not in err


def test_a_topology_that_cannot_be_built_exits_2_without_traceback(tmp_path) -> None:
    bad = tmp_path / "odd.yaml"
    bad.write_text("name: odd\ntopology: {preset: fat_tree, fat_tree_k: 3, nodes: 4}\n")
    done = subprocess.run(
        [sys.executable, "-m", "pslab_cli.main", "sim", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "fat_tree_k must be even" in done.stderr and "Traceback" not in done.stderr
