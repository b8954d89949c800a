"""A size budget checked before anything is built, so a typo cannot eat the machine.

``topology.nodes: 1e9`` took 3 GB in 18 s and ``run.iterations: 1e12`` ran
without end (issue 19): the schema accepts both (they are whole numbers), so
the sizes a run would build are estimated from the scenario alone, in
microseconds, and each compared with a limit far above any scenario shipped
here (the 1,024-worker scale scenario uses 2 % of the worker-iteration budget).
A refusal names the figure and the field to change; ``--force`` (or
``force=True`` in the API) runs it anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from pslab.catalogue import resolve_model
from pslab.scenario import Scenario
from pslab.schema_errors import ScenarioError


@dataclass(frozen=True)
class Limit:
    what: str
    limit: float
    field: str


WORKERS = Limit("workers", 100_000, "topology.nodes")
LINKS = Limit("links", 2_000_000, "topology.nodes")
FAT_TREE_LINKS = Limit("links", 2_000_000, "topology.fat_tree_k")
LAYERS = Limit("parameter tensors", 100_000, "workload.model.layers")
PARAMS = Limit("parameters", 1e13, "workload.model.params")
WORKER_ITERATIONS = Limit("worker-iterations (run.iterations x workers)", 5e6, "run.iterations")


def estimate(scenario: Scenario) -> list[tuple[Limit, float]]:
    """The sizes this scenario would build, each beside its limit."""
    topo = scenario.topology
    per_node = 1 + (topo.nics_per_node or 0)
    per_node += topo.gpus_per_node * (3 if topo.pcie_link is not None else 1)
    links = topo.nodes * per_node + topo.servers
    sizes = [(WORKERS, float(topo.n_workers)), (LINKS, float(links))]
    if topo.preset == "fat_tree":
        sizes.append((FAT_TREE_LINKS, topo.fat_tree_k**3 / 2))  # k³/4 edge-agg + k³/4 agg-core
    if topo.preset == "graph" and topo.graph is not None:
        sizes.append((Limit("links", LINKS.limit, "topology.graph.links"), len(topo.graph.links)))
    model = resolve_model(scenario.workload)
    sizes.append((PARAMS, float(model.params)))
    sizes.append((LAYERS, float(len(model.layers or [model.params]))))
    sizes.append((WORKER_ITERATIONS, float(scenario.run.iterations) * topo.n_workers))
    return sizes


def check_budget(scenario: Scenario, source: str = "scenario") -> None:
    """Refuse a scenario past any limit, naming the figure, the limit and the field."""
    over = [(lim, size) for lim, size in estimate(scenario) if size > lim.limit]
    if not over:
        return
    lines = [f"{source}: too large to build (pass --force to run it anyway)"]
    for lim, size in over:
        lines.append(f"  {lim.field}: {size:,.0f} {lim.what}, over the budget of {lim.limit:,.0f}")
    raise ScenarioError("\n".join(lines))
