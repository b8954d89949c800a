"""Scenario bounds (#19) and units that must be written (#17): exit 2, the field, no traceback.

Each refused input is one the issue found running forever, eating memory or
meaning something else than it said; each test also shows what is accepted.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from pslab import budget
from pslab.scenario import load_scenario, scenario_from_dict
from pslab_cli import sim_progress
from pslab_cli.main import main

BASE = "name: b\nrun: {iterations: 5, warmup: 1}\n"


def sim(tmp_path: Path, body: str, capsys, *args: str) -> tuple[int, str]:
    f = tmp_path / "s.yaml"
    f.write_text(BASE + body)
    code = main(["sim", str(f), *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, " ".join(err.split())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "topology: {inter_link: {bandwidth: 10Gb/s, latency: 5}}\n",
            "topology.inter_link.latency: a bare number is ambiguous: add the unit, "
            "e.g. '5ms' or '5s'",
        ),
        (
            "topology: {inter_link: {bandwidth: 100}}\n",
            "topology.inter_link.bandwidth: a bare number is ambiguous: add the unit, "
            "e.g. '100Gb/s' (bits) or '100GB/s' (bytes)",
        ),
        ("workload: {compute_time: 0.05}\n", "workload.compute_time: a bare number"),
        ("workload: {io_time: {mean: 2}}\n", "workload.io_time.mean: a bare number"),
    ],
)
def test_bare_numbers_on_durations_and_bandwidths_are_refused(
    tmp_path, capsys, body, expected
) -> None:
    code, err = sim(tmp_path, body, capsys)
    assert code == 2 and expected in err


def test_zero_and_units_are_accepted_and_python_dicts_stay_si() -> None:
    from pslab.scenario import STRICT_UNITS, Scenario

    data = {"name": "z", "topology": {"inter_link": {"bandwidth": "10Gb/s", "latency": 0}}}
    assert Scenario.model_validate(data, context=STRICT_UNITS).topology.inter_link.latency == 0
    assert (
        scenario_from_dict({"name": "p", "workload": {"compute_time": 0.05}}).workload.compute_time
        == 0.05
    )


def test_a_bare_number_in_set_is_refused_too(capsys) -> None:
    assert main(["sim", "--set", "workload.compute_time=0.04"]) == 2
    assert "workload.compute_time: a bare number is ambiguous" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            "topology: {inter_link: {bandwidth: 10Gb/s, latency: .inf}}\n",
            "topology.inter_link.latency",
        ),
        ("workload: {compute_time: .inf}\n", "workload.compute_time"),
        ("workload: {io_time: {mean: .nan}}\n", "workload.io_time.mean"),
        ("algorithm: {lr: .inf}\n", "algorithm.lr"),
    ],
)
def test_infinite_values_are_refused(tmp_path, capsys, body, field) -> None:
    code, err = sim(tmp_path, body, capsys)
    assert code == 2 and f"{field}:" in err and "finite" in err


@pytest.mark.parametrize(
    ("body", "field", "figure"),
    [
        ("topology: {nodes: 1.0e+9}\n", "topology.nodes", "1,000,000,000 workers"),
        ("run: {iterations: 1.0e+12, warmup: 1}\n", "run.iterations", "1,000,000,000,000 worker-"),
        ("topology: {preset: fat_tree, fat_tree_k: 1000, nodes: 4}\n", "topology.fat_tree_k", ""),
        (
            "workload: {model: {params: 1e30}}\n",
            "workload.model.params",
            "1,000,000,000,000,000,019,884,624,838,656 parameters",
        ),
    ],
)
def test_the_size_budget_names_the_figure_and_the_field(
    tmp_path, capsys, body, field, figure
) -> None:
    code, err = sim(tmp_path, body, capsys)
    assert code == 2 and f"{field}: {figure}" in err and "--force" in err


def test_force_runs_past_the_budget(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(
        budget, "WORKER_ITERATIONS", budget.Limit("worker-iterations", 2, "run.iterations")
    )
    code, err = sim(tmp_path, "", capsys)
    assert code == 2 and "run.iterations: 5 worker-iterations, over the budget of 2" in err
    code, _ = sim(tmp_path, "", capsys, "--force")
    assert code == 0


def test_a_huge_scenario_file_is_refused_before_parsing(tmp_path) -> None:
    from pslab.scenario import MAX_FILE_BYTES, ScenarioError

    f = tmp_path / "big.yaml"
    f.write_text(BASE + "#" * MAX_FILE_BYTES)
    with pytest.raises(ScenarioError, match="at most"):
        load_scenario(f)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: "", "-o is empty"),
        (lambda d: (d / "file").write_text("x") and str(d / "file"), "an existing file"),
        (lambda d: (d / "f").write_text("x") and str(d / "f" / "sub"), "is a file, so"),
        (lambda d: "/proc/pslab-no-such-dir", "cannot write there"),
    ],
)
def test_out_is_checked_before_the_run(tmp_path, capsys, monkeypatch, make, expected) -> None:
    ran: list[object] = []
    monkeypatch.setattr("sim.run.simulate", lambda *a: ran.append(a))
    monkeypatch.setattr("sim.run.simulate_to", lambda *a: ran.append(a))
    assert main(["sim", "-o", make(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not ran  # refused before anything was simulated


def test_launch_checks_out_before_any_process(tmp_path, capsys) -> None:
    (tmp_path / "taken").write_text("keep me")
    assert main(["launch", "-o", str(tmp_path / "taken")]) == 2
    assert "an existing file" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "keep me"


def test_the_progress_bar_draws_on_a_terminal_only(monkeypatch) -> None:
    from sim.run import simulate

    monkeypatch.setattr(sim_progress, "SHOW_AFTER_S", 0.0)
    monkeypatch.setattr(sim_progress, "POLL_S", 0.01)
    scenario = load_scenario(
        Path(__file__).resolve().parent.parent / "scenarios" / "quickstart.yaml"
    )
    slow = scenario.replace(run__iterations=400)
    for terminal in (True, False):
        buf = io.StringIO()
        console = Console(file=buf, force_terminal=terminal, width=100)
        with sim_progress.sim_progress(console, slow.run.iterations) as on_start:
            simulate(slow, None, on_start)
        assert ("simulating" in buf.getvalue()) is terminal


def test_the_api_refuses_past_the_budget_unless_forced(monkeypatch, tmp_path) -> None:
    import pslab
    from pslab.scenario import ScenarioError

    monkeypatch.setattr(budget, "WORKERS", budget.Limit("workers", 2, "topology.nodes"))
    with pytest.raises(ScenarioError, match=r"topology\.nodes: 4 workers"):
        pslab.simulate("scenarios/quickstart.yaml")
    r = pslab.simulate("scenarios/quickstart.yaml", tmp_path / "out", force=True, run__iterations=6)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["iteration_time_s"] > 0
    assert r.metrics["iteration_time_s"] > 0
