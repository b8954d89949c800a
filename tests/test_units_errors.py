"""A user's mistakes in a scenario: exit status 2, the field path, no traceback, a hint.

One test per case of issue 17 (units, "did you mean", clean field paths); the
accepted spellings are checked beside the refused ones.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pslab import units
from pslab.scenario import scenario_from_dict
from pslab_cli.main import main

BASE = "name: e\nrun: {iterations: 5, warmup: 1}\n"


def sim_error(tmp_path: Path, body: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``pslab sim`` on BASE + body; assert exit 2 and return stderr (one paragraph)."""
    f = tmp_path / "s.yaml"
    f.write_text(BASE + body)
    assert main(["sim", str(f)]) == 2
    text = capsys.readouterr().err
    assert "Traceback" not in text
    assert "function-after" not in text and "ModelSpec" not in text
    return " ".join(text.split())  # rich wraps long lines


@pytest.mark.parametrize("text", ["1.3G", "1.3e9", "1300M", 1.3e9])
def test_parameter_counts_take_si_suffixes_and_exponents(text: str | float) -> None:
    assert units.parse_count(text) == 1_300_000_000
    spec = scenario_from_dict({"name": "c", "workload": {"model": {"params": text}}})
    assert spec.workload.model.params == 1_300_000_000


def test_billions_written_b_are_refused_with_the_spelling_to_use(tmp_path, capsys) -> None:
    err = sim_error(tmp_path, "workload: {model: {params: 1.3B}}\n", capsys)
    assert "workload.model.params" in err
    assert "B means bytes" in err and "'1.3G'" in err and "1.3e9" in err


def test_lowercase_bandwidth_names_both_bits_and_bytes(tmp_path, capsys) -> None:
    err = sim_error(tmp_path, "topology: {inter_link: {bandwidth: 100gb/s}}\n", capsys)
    assert "topology.inter_link.bandwidth" in err
    assert "'100Gb/s' (bits)" in err and "'100GB/s' (bytes)" in err


def test_bits_and_bytes_stay_distinct() -> None:
    assert units.parse_bandwidth("100Gb/s") == 100e9 / 8
    assert units.parse_bandwidth("100GB/s") == 100e9


def test_lowercase_size_is_a_hint_not_a_guess() -> None:
    with pytest.raises(units.UnitError, match="'4MB'"):
        units.parse_size("4mb")


def test_duration_units_are_case_insensitive() -> None:
    """No duration unit differs from another by case alone (there are no megaseconds)."""
    assert units.parse_time("50MS") == pytest.approx(0.05)
    assert units.parse_time("2US") == pytest.approx(2e-6)


def test_unknown_catalogue_model_suggests_the_closest(tmp_path, capsys) -> None:
    err = sim_error(tmp_path, "workload: {model: resnet-50}\n", capsys)
    assert "workload.model" in err and "did you mean 'resnet50'?" in err


def test_unknown_field_suggests_the_closest(tmp_path, capsys) -> None:
    err = sim_error(tmp_path, "topology: {nodez: 2}\n", capsys)
    assert "topology.nodez: unknown field" in err and "did you mean 'nodes'?" in err


def test_unknown_nested_field_in_a_list(tmp_path, capsys) -> None:
    body = (
        "topology:\n  preset: graph\n  graph:\n    nodes: [{name: a}, {name: b}]\n"
        "    links: [{a: a, b: b, bandwith: 1Gb/s}]\n"
    )
    err = sim_error(tmp_path, body, capsys)
    assert "topology.graph.links.0.bandwith" in err and "did you mean 'bandwidth'?" in err


def test_unknown_top_level_section(tmp_path, capsys) -> None:
    err = sim_error(tmp_path, "topologie: {nodes: 2}\n", capsys)
    assert "topologie: unknown field" in err and "did you mean 'topology'?" in err


def test_unknown_enum_value_suggests_the_closest(tmp_path, capsys) -> None:
    err = sim_error(tmp_path, "algorithm: {name: sync-ps}\n", capsys)
    assert "algorithm.name" in err and "did you mean 'sync_ps'?" in err


def test_unknown_literal_value_suggests_the_closest(tmp_path, capsys) -> None:
    err = sim_error(tmp_path, "emulation: {device: cdua}\n", capsys)
    assert "emulation.device" in err and "did you mean 'cuda'?" in err


def test_model_check_path_has_no_pydantic_internals(tmp_path, capsys) -> None:
    err = sim_error(tmp_path, "workload: {model: {params: 10, layers: [1, 2]}}\n", capsys)
    assert "workload.model: layers sum to 3" in err


def test_distribution_field_path_is_clean(tmp_path, capsys) -> None:
    err = sim_error(tmp_path, "workload: {compute_time: {mean: soon}}\n", capsys)
    assert "workload.compute_time.mean: expected a duration" in err
    assert "valid number" not in err  # the other alternative's complaint is dropped


def test_override_with_a_misspelt_field_exits_2(capsys) -> None:
    assert main(["sim", "--set", "algorithm.lr_=0.1"]) == 2
    err = capsys.readouterr().err
    assert "algorithm.lr_" in err and "did you mean 'lr'?" in err


def test_the_command_prints_no_traceback(tmp_path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(BASE + "workload: {model: resnet-50}\n")
    p = subprocess.run(
        [sys.executable, "-m", "pslab_cli.main", "sim", str(f)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "workload.model" in p.stderr
