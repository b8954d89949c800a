from __future__ import annotations

import pytest

from pslab import units
from pslab.quantities import Distribution
from pslab.scenario import ScenarioError, dump_scenario, load_scenario, scenario_from_dict


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10Gb/s", 1.25e9), ("300GB/s", 300e9), ("100Mbit/s", 12.5e6), ("1GiB/s", 2**30), (5, 5.0)],
)
def test_bandwidth_bits_and_bytes(text, expected) -> None:
    assert units.parse_bandwidth(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"), [("50ms", 0.05), ("2us", 2e-6), ("1.5s", 1.5), ("3", 3.0), (0.2, 0.2)]
)
def test_time(text, expected) -> None:
    assert units.parse_time(text) == pytest.approx(expected)


def test_counts_and_sizes() -> None:
    assert units.parse_count("25.6M") == 25_600_000
    assert units.parse_size("1MiB") == 2**20
    assert units.parse_size("4MB") == 4_000_000
    with pytest.raises(units.UnitError, match="expected a bandwidth"):
        units.parse_bandwidth("fast")
    with pytest.raises(units.UnitError):
        units.parse_count("3MB")


def test_scenario_units_are_parsed_into_si() -> None:
    s = scenario_from_dict(
        {
            "name": "x",
            "topology": {"inter_link": {"bandwidth": "10Gb/s", "latency": "10us"}},
            "workload": {"model": {"params": "25.6M"}, "compute_time": "50ms"},
        }
    )
    assert s.topology.inter_link.bandwidth == pytest.approx(1.25e9)
    assert s.topology.inter_link.latency == pytest.approx(1e-5)
    assert s.workload.model.params == 25_600_000
    assert s.workload.compute_time == pytest.approx(0.05)


def test_overrides_apply_before_validation() -> None:
    s = scenario_from_dict({"name": "x"}, overrides=["topology.nodes=16", "algorithm.name=ssp"])
    assert s.topology.nodes == 16
    assert s.algorithm.name.value == "ssp"


def test_errors_name_file_path_and_expectation(tmp_path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: b\ntopology:\n  inter_link: {bandwidth: fast}\nalgorithm: {nme: x}\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(f)
    msg = str(e.value)
    assert str(f) in msg
    assert "topology.inter_link.bandwidth" in msg
    assert "expected a bandwidth" in msg
    assert "algorithm.nme" in msg


def test_missing_file_and_bad_yaml(tmp_path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "none.yaml")
    f = tmp_path / "x.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(f)


def test_server_variants_need_a_server() -> None:
    with pytest.raises(ScenarioError, match=r"needs topology\.servers"):
        scenario_from_dict({"name": "x", "topology": {"servers": 0}})


def test_a_dumped_scenario_with_a_distribution_reads_back_equal(tmp_path) -> None:
    """Every launch writes the scenario for its roles to read: stragglers must survive it."""
    scenario = load_scenario("scenarios/validation/ssp_emulated.yaml")
    assert isinstance(scenario.workload.compute_time, Distribution)
    path = tmp_path / "scenario.yaml"
    path.write_text(dump_scenario(scenario))
    assert load_scenario(path) == scenario
