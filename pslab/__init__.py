"""pslab: predict and measure parameter-server SGD; the shared, executor-free package.

The Python API is re-exported here (see docs/api.md)::

    import pslab
    result = pslab.simulate("scenarios/quickstart.yaml", topology__workers_per_node=2)
    result.metrics["iteration_time_s"]

``pslab.api`` imports the simulator and emulator only when a run is asked for,
so ``import pslab`` stays cheap and the import-linter contract holds.
"""

from pslab.api import Result, compare, emulate, load, simulate
from pslab.scenario import Scenario, ScenarioError

__all__ = ["Result", "Scenario", "ScenarioError", "compare", "emulate", "load", "simulate"]
