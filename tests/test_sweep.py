"""pslab sweep: a grid of simulations in parallel processes, plotted and written as JSON."""

from __future__ import annotations

import json

from pslab_cli.main import main


def test_sweep_grid_of_variants(tmp_path, capsys, root) -> None:
    args = [
        "sweep",
        str(root / "scenarios" / "digits_tta.yaml"),
        "--vary",
        "algorithm.name=sync_ps,local_sgd",
        "--vary",
        "topology.nodes=1,2",
        "--set",
        "run.iterations=30",
        "-o",
        str(tmp_path),
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(report["points"]) == 4
    assert {p["algorithm.name"] for p in report["points"]} == {"sync_ps", "local_sgd"}
    assert all(p["throughput_samples_per_s"] > 0 for p in report["points"])
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    assert json.loads((tmp_path / "sweep.json").read_text()) == report


def test_sweep_rejects_a_bad_grid_point(tmp_path, capsys, root) -> None:
    scenario = str(root / "scenarios" / "digits_tta.yaml")
    assert main(["sweep", scenario, "--vary", "topology.nodes=1,zero", "-o", str(tmp_path)]) == 2
    assert "topology.nodes" in capsys.readouterr().err
