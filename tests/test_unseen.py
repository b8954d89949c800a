"""experiments.unseen: scenarios drawn beyond the validation suite, every variant in turn."""

from __future__ import annotations

import json

import pytest

from experiments import unseen
from pslab.scenario import load_scenario


def test_draws_cover_every_variant_and_load_as_scenarios(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    variants = unseen.bases_by_variant()
    unseen.main(["-n", str(len(variants)), "--seed", "3", "-o", str(tmp_path), "--draw-only"])
    drawn = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["drawn"]
    assert len(drawn) == len(variants)
    seen = set()
    for name, changes in drawn.items():
        scenario = load_scenario(tmp_path / "scenarios" / name)  # a valid scenario, as drawn
        seen.add(scenario.algorithm.name)
        assert scenario.topology.workers_per_node == changes["topology.workers_per_node"]
        assert scenario.run.iterations <= unseen.MAX_ITERATIONS
        assert scenario.emulation.compute == "emulated"
        assert scenario.workload.model.params == changes["workload.model.params"]
    assert seen == set(variants)


def test_the_same_seed_draws_the_same_scenarios(tmp_path, capsys) -> None:
    texts = []
    for run in ("a", "b"):
        unseen.main(["-n", "3", "--seed", "5", "-o", str(tmp_path / run), "--draw-only"])
        capsys.readouterr()
        texts.append([p.read_text() for p in sorted((tmp_path / run / "scenarios").iterdir())])
    assert texts[0] == texts[1]
