"""One module per SGD variant; the registry maps a scenario's algorithm name to its entry.

An entry holds the builder and the facts executors and the schema need about a
variant beyond its role programs, so nothing outside this package matches names:
whether it needs a parameter server (the scenario checks ``topology.servers``),
whether a run is asynchronous (a dead worker then leaves it instead of ending it)
and which roles all-reduce through one torch.distributed group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pslab.algorithm_config import AlgorithmSettings, Switchable
from pslab.algorithms import allreduce, easgd, layered_sgd, leader_sgd, local_sgd, ps
from pslab.algorithms.base import Collective, Plan
from pslab.scenario import AlgorithmName, Scenario


def _never(_settings: AlgorithmSettings) -> bool:
    return False


def _always(_settings: AlgorithmSettings) -> bool:
    return True


def _unless_synchronous(settings: AlgorithmSettings) -> bool:
    """EASGD and Leader SGD run either way, as ``algorithm.synchronous`` says."""
    assert isinstance(settings, Switchable)
    return not settings.synchronous


@dataclass(frozen=True)
class Entry:
    build: Callable[[Scenario], Plan]
    needs_server: bool
    asynchronous: Callable[[AlgorithmSettings], bool] = _never
    collective: Collective = None  # which roles all-reduce through one group


ALGORITHMS: dict[AlgorithmName, Entry] = {
    AlgorithmName.sync_ps: Entry(ps.build, needs_server=True),
    AlgorithmName.async_ps: Entry(ps.build, needs_server=True, asynchronous=_always),
    AlgorithmName.ssp: Entry(ps.build, needs_server=True, asynchronous=_always),
    AlgorithmName.allreduce: Entry(allreduce.build, needs_server=False, collective="workers"),
    AlgorithmName.layered_sgd: Entry(layered_sgd.build, needs_server=False, collective="comms"),
    AlgorithmName.easgd: Entry(easgd.build, needs_server=True, asynchronous=_unless_synchronous),
    AlgorithmName.leader_sgd: Entry(
        leader_sgd.build, needs_server=False, asynchronous=_unless_synchronous
    ),
    AlgorithmName.local_sgd: Entry(local_sgd.build, needs_server=False, collective="workers"),
}


def build_plan(scenario: Scenario) -> Plan:
    """The variant's plan, carrying its entry's facts for the executors."""
    entry = ALGORITHMS[scenario.algorithm.name]
    plan = entry.build(scenario)
    plan.asynchronous = entry.asynchronous(scenario.algorithm)
    plan.collective = entry.collective
    return plan
