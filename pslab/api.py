"""The Python API for notebooks and scripts: ``pslab.simulate``, ``load``, ``emulate``, ``compare``.

The shared package must not import the executors (the import-linter contract
"the shared package stays pure" forbids ``pslab`` → ``sim``/``grpc_ps``/``pslab_cli``):
``pslab.scenario`` and friends are what both executors build on, and a static
import upwards would make them a cycle. So each entry point here resolves its
executor with :func:`importlib.import_module` *at call time*. import-linter only
follows import statements, so the contract still guards every static import, and
``import pslab`` stays light: no simpy, no grpc, no torch until a run is asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pslab.budget import check_budget
from pslab.outputs import check_out_dir
from pslab.scenario import Scenario, ScenarioError, load_scenario
from pslab.trace import Trace

if TYPE_CHECKING:
    import pandas

ScenarioLike = Scenario | str | Path

SPAN_COLUMNS = (
    "role",
    "host",
    "name",
    "cat",
    "start",
    "end",
    "dur",
    "iteration",
    "nbytes",
    "blocking",
)


@dataclass
class Result:
    """One run's outcome: the metrics dict (as in ``metrics.json``) and the trace."""

    scenario: Scenario
    metrics: dict[str, Any]
    trace: Trace
    extra: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pandas.DataFrame:
        """The trace's spans as a pandas DataFrame, one row per op (columns: SPAN_COLUMNS).

        pandas is an optional dependency (``pip install pandas``): nothing else in
        pslab needs it, so it is imported only here."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Result.to_frame() needs pandas, an optional dependency of pslab: "
                "pip install pandas (metrics and trace work without it)"
            ) from None
        rows = [
            {col: getattr(s, col) for col in SPAN_COLUMNS if col != "dur"} | {"dur": s.dur}
            for s in self.trace.spans
        ]
        return pd.DataFrame(rows, columns=list(SPAN_COLUMNS))


def load(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """A validated scenario from a YAML file; ``overrides`` as ``--set`` takes them
    (``["topology.nodes=4"]``). A bad file is a :class:`ScenarioError` naming the field."""
    return load_scenario(Path(path), overrides)


def _resolve(scenario: ScenarioLike, overrides: dict[str, Any]) -> tuple[Scenario, Path | None]:
    """The scenario and the directory its relative paths (graphml) are read from."""
    base: Path | None = None
    if isinstance(scenario, str | Path):
        base = Path(scenario).parent
        scenario = load(scenario)
    elif not isinstance(scenario, Scenario):
        raise TypeError(f"expected a Scenario or a path to a YAML file, got {type(scenario)}")
    if overrides:
        scenario = scenario.replace(**overrides)
    return scenario, base


def simulate(
    scenario: ScenarioLike,
    out_dir: str | Path | None = None,
    force: bool = False,
    **overrides: Any,
) -> Result:
    """Predict ``scenario`` (a Scenario or a YAML path) with the SimPy model.

    ``overrides`` are :meth:`Scenario.replace` keys (``topology__nodes=4``); with
    ``out_dir`` the run also writes ``metrics.json``, ``trace.json`` and
    ``scenario.yaml`` there, as ``pslab sim -o`` does (the place is checked before
    the run). A scenario past the size budget (:mod:`pslab.budget`) is refused unless
    ``force``. The simulator is imported lazily (see the module docstring)."""
    out = check_out_dir(out_dir, "out_dir") if out_dir is not None else None
    resolved, base = _resolve(scenario, overrides)
    if not force:
        check_budget(resolved, resolved.name)
    run = importlib.import_module("sim.run")
    sim = run.simulate(resolved, base) if out is None else run.simulate_to(resolved, out, base)
    return Result(resolved, sim.metrics, sim.trace)


def emulate(
    scenario: ScenarioLike,
    out_dir: str | Path | None = None,
    force: bool = False,
    **overrides: Any,
) -> Result:
    """Run ``scenario`` for real on this machine (processes, gRPC, torch), as
    ``pslab launch`` does. A run too big for the machine is refused before any
    process starts unless ``force``. grpc_ps is imported lazily."""
    resolved, _ = _resolve(scenario, overrides)
    if not force:
        importlib.import_module("grpc_ps.fit").check_fits(resolved)
    launch = importlib.import_module("grpc_ps.launch")
    try:
        run = launch.launch(resolved, Path(out_dir) if out_dir else None, force=force)
    except launch.LaunchError as e:
        raise ScenarioError(f"emulation failed: {e}") from None
    return Result(resolved, run.metrics, run.trace)


def compare(
    scenario: ScenarioLike, out_dir: str | Path = "runs/compare", repeat: int = 1, **overrides: Any
) -> dict[str, Any]:
    """Simulate and emulate ``scenario`` and return the report ``pslab compare``
    writes to ``out_dir/compare.json`` (per metric: predicted, measured, error)."""
    resolved, _ = _resolve(scenario, overrides)
    comparing = importlib.import_module("pslab_cli.comparing")
    launch = importlib.import_module("grpc_ps.launch")

    def measure(sc: Scenario, d: Path) -> Any:  # a grpc_ps.launch.LaunchResult
        return launch.launch(sc, d)

    return comparing.compare(resolved, Path(out_dir), measure, repeat=repeat)
