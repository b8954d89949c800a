"""One module per SGD variant; the registry maps a scenario's algorithm name to its builder."""

from __future__ import annotations

from collections.abc import Callable

from pslab.algorithms import allreduce, easgd, layered_sgd, leader_sgd, local_sgd, ps
from pslab.algorithms.base import Plan
from pslab.scenario import AlgorithmName, Scenario

BUILDERS: dict[AlgorithmName, Callable[[Scenario], Plan]] = {
    AlgorithmName.sync_ps: ps.build,
    AlgorithmName.async_ps: ps.build,
    AlgorithmName.ssp: ps.build,
    AlgorithmName.allreduce: allreduce.build,
    AlgorithmName.layered_sgd: layered_sgd.build,
    AlgorithmName.easgd: easgd.build,
    AlgorithmName.leader_sgd: leader_sgd.build,
    AlgorithmName.local_sgd: local_sgd.build,
}


def build_plan(scenario: Scenario) -> Plan:
    return BUILDERS[scenario.algorithm.name](scenario)
