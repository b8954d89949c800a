"""Simulate a scenario end to end: plan, cluster, executor, outputs."""

from __future__ import annotations

from pathlib import Path

from pslab.algorithms import build_plan
from pslab.results import write_results
from pslab.scenario import Scenario
from sim.executor import SimExecutor, SimResult
from sim.topology import build_cluster


def simulate(scenario: Scenario, base_dir: Path | None = None) -> SimResult:
    plan = build_plan(scenario)
    cluster = build_cluster(scenario.topology, base_dir)
    return SimExecutor(scenario, plan, cluster).run()


def simulate_to(scenario: Scenario, out_dir: Path, base_dir: Path | None = None) -> SimResult:
    result = simulate(scenario, base_dir)
    write_results(out_dir, scenario, result.metrics, result.trace)
    return result
