"""``pslab model from-torch`` and scenarios that name the model file it writes (#17)."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from pslab.scenario import load_scenario
from pslab_cli.main import main

MODULE = """\
from torch import nn


def build():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
"""


@pytest.fixture
def model_file(tmp_path, monkeypatch):
    (tmp_path / "tiny_net.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "models" / "tiny.yaml"
    assert (
        main(["model", "from-torch", "tiny_net:build", "-o", str(out), "--input-shape", "8"]) == 0
    )
    return out


def test_from_torch_writes_the_layout_and_measured_flops(model_file) -> None:
    m = yaml.safe_load(model_file.read_text())
    assert m["layers"] == [8 * 16, 16, 16 * 4, 4] and m["params"] == 212
    assert [t["name"] for t in m["tensors"]] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    forward = 2 * (8 * 16 + 16 * 4)  # the counter counts matmuls: 2 FLOPs a multiply-add
    assert 2 * forward <= m["flops_per_sample"] <= 3 * forward  # + backward (no input grad)


def test_a_scenario_names_the_model_file(model_file, tmp_path) -> None:
    s = tmp_path / "s.yaml"
    s.write_text(
        textwrap.dedent("""\
        name: m
        topology: {nodes: 1, gpus_per_node: 1, gpu: h100, servers: 0}
        workload: {model: models/tiny.yaml, batch_size: 10, compute_time: auto}
        algorithm: {name: allreduce}
        run: {iterations: 4, warmup: 1}
        """)
    )
    scenario = load_scenario(s)
    flops = yaml.safe_load(model_file.read_text())["flops_per_sample"]
    assert scenario.workload.model.layers == [128, 16, 64, 4]
    assert scenario.workload.compute_estimate.flops_per_batch == 10 * flops


def test_bad_targets_and_missing_files_exit_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["model", "from-torch", "no_such_pkg:build", "-o", "m.yaml"]) == 2
    assert "cannot import 'no_such_pkg'" in capsys.readouterr().err
    s = tmp_path / "s.yaml"
    s.write_text("name: m\nworkload: {model: missing.yaml}\n")
    assert main(["sim", str(s)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "workload.model: cannot read model file" in err and "from-torch" in err
    assert "Traceback" not in err
