"""pslab sweep: grid points as Dask tasks on a LocalCluster, cached by scenario hash, per-variant
settings checked, plotted and written as JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pslab.scenario import ScenarioError
from pslab_cli.main import main
from pslab_cli.sweep import FIGURES, slurm_cluster
from pslab_cli.sweep_grid import build_grid
from sim.run import simulate

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "digits_tta.yaml"
GRID = [
    "sweep",
    str(SCENARIO),
    "--vary",
    "algorithm.name=sync_ps,local_sgd",
    "--vary",
    "topology.nodes=1,2",
    "--set",
    "run.iterations=12",
    "-j",
    "2",
]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One sweep through a 2-worker LocalCluster, shared by the tests below."""
    out = tmp_path_factory.mktemp("sweep")
    assert main([*GRID, "--trace", "-o", str(out)]) == 0
    return out, json.loads((out / "sweep.json").read_text())


@pytest.mark.slow  # a LocalCluster starts in 5-15 s here
def test_a_dask_sweep_equals_the_local_runs(swept) -> None:
    out, report = swept
    assert report["computed"] == 4 and report["cached"] == 0
    assert {p["algorithm.name"] for p in report["points"]} == {"sync_ps", "local_sgd"}
    grid = build_grid(SCENARIO, GRID[3:7:2], ["run.iterations=12"])
    for point, row in zip(grid.points, report["points"], strict=True):
        local = simulate(point.scenario, SCENARIO.parent).metrics
        assert {k: row[k] for k in FIGURES} == {k: local.get(k) for k in FIGURES}
        assert row["comm_time_s"] >= row["exposed_comm_time_s"] > 0
        folder = out / "points" / row["point"]
        written = json.loads((folder / "metrics.json").read_text())
        simulated = json.loads(json.dumps(local))
        for m in (written, simulated):
            del m["wall_time_s"]  # how long the simulation took, the one figure not simulated
        assert written == simulated
        assert (
            yaml.safe_load((folder / "scenario.yaml").read_text())["topology"]["nodes"]
            == (row["topology.nodes"])
        )
        assert json.loads((folder / "trace.json").read_text())["traceEvents"]
    assert (out / "sweep.png").stat().st_size > 1000


@pytest.mark.slow  # a LocalCluster starts in 5-15 s here
def test_a_rerun_comes_from_the_cache_and_an_extension_computes_only_the_new(swept, capsys) -> None:
    out, first = swept
    assert main([*GRID, "-o", str(out)]) == 0  # no --trace: the cached traces still count
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["computed"] == 0 and again["cached"] == 4
    assert again["points"] == first["points"]
    # a grid extended by one node count computes only its two new points
    extended = [*GRID, "-o", str(out)]
    extended[extended.index("topology.nodes=1,2")] = "topology.nodes=1,2,3"
    assert main(extended) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["computed"] == 2 and report["cached"] == 4


def test_per_variant_settings_from_a_sweep_file(tmp_path) -> None:
    sweep_file = tmp_path / "variants.yaml"
    sweep_file.write_text(
        f"scenario: {SCENARIO}\n"
        "set: {run.iterations: 12}\n"
        "vary: {topology.nodes: [1, 2]}\n"
        "variants:\n"
        "  sync_ps: {}\n"
        "  local_sgd: {algorithm.tau: [1, 4]}\n"
    )
    grid = build_grid(sweep_file, [], [])
    labels = [p.label for p in grid.points]
    assert labels[:2] == [
        {"algorithm.name": "sync_ps", "topology.nodes": 1},
        {"algorithm.name": "sync_ps", "topology.nodes": 2},
    ]
    pairs = {(p["topology.nodes"], p["algorithm.tau"]) for p in labels[2:]}
    assert pairs == {(1, 1), (1, 4), (2, 1), (2, 4)}
    assert grid.keys == ["algorithm.name", "topology.nodes", "algorithm.tau"]
    assert all(not hasattr(p.scenario.algorithm, "tau") for p in grid.points[:2])  # sync_ps


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ("  sync_ps: {algorithm.tau: [1, 4]}\n", "algorithm.tau: sync_ps has no such setting"),
        ("  allreduce: {algorithm.staleness_bound: [1]}\n", "only ssp reads it"),
        ("  sgd: {}\n", "unknown variant 'sgd'"),
    ],
)
def test_a_setting_a_variant_ignores_is_an_error(tmp_path, capsys, variants, message) -> None:
    sweep_file = tmp_path / "bad.yaml"
    sweep_file.write_text(f"scenario: {SCENARIO}\nvariants:\n{variants}")
    assert main(["sweep", str(sweep_file), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_a_varied_setting_a_variant_ignores_is_an_error(tmp_path, capsys) -> None:
    args = ["sweep", str(SCENARIO), "--vary", "algorithm.name=sync_ps,local_sgd"]
    assert main([*args, "--vary", "algorithm.tau=1,4", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sweep point algorithm.name=sync_ps, algorithm.tau=1" in err
    assert "algorithm.tau: sync_ps has no such setting" in err


def test_sweep_rejects_a_bad_grid_point(tmp_path, capsys) -> None:
    assert (
        main(["sweep", str(SCENARIO), "--vary", "topology.nodes=1,zero", "-o", str(tmp_path)]) == 2
    )
    assert "topology.nodes" in capsys.readouterr().err


def test_the_documented_slurm_config_makes_a_job_script(tmp_path) -> None:
    """docs/cluster.md's SLURMCluster settings, as written there, through --slurm's reader."""
    docs = (ROOT / "docs" / "cluster.md").read_text()
    block = re.search(r"```yaml\n(# slurm\.yaml.*?)```", docs, re.S)
    assert block, "docs/cluster.md lost its slurm.yaml block"
    config = tmp_path / "slurm.yaml"
    config.write_text(block.group(1))
    cluster = slurm_cluster(config)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    settings = yaml.safe_load(block.group(1))
    assert f"#SBATCH -p {settings['queue']}" in script
    assert f"#SBATCH -t {settings['walltime']}" in script
    assert "distributed.cli.dask_worker" in script
    config.write_text("queue: debug\ncores: 1\nmemory: 1GB\nbogus: 1\n")
    with pytest.raises(ScenarioError, match="not a SLURMCluster configuration"):
        slurm_cluster(config)
