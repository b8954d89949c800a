"""Does a run fit this machine? Checked before ``pslab launch`` starts a single process.

The emulator runs one OS process per role (every parameter-server shard, the leader
registry, every communicator and every worker) on this one machine. A scenario written for
a cluster (16 nodes × 8 GPUs is 130 processes) would otherwise start all of them on a
laptop, swamp its cores and memory and make every measurement meaningless, so the run is
refused up front with a message that says what to lower. One rule for every scenario:

- **processes**: at most :data:`MAX_ROLES_PER_CORE` role processes per usable core. Most
  roles sleep or wait on the network most of the time (the validation suite runs 4-8
  workers and a server on 2 cores, about 5 per core), but past that the run measures the
  scheduler, not the algorithm.
- **memory**: the estimate ``roles × (ROLE_BASE_BYTES + MODEL_COPIES × model bytes)`` must
  stay under :data:`MAX_MEMORY_FRACTION` of ``MemAvailable`` (``/proc/meminfo``). A role's
  interpreter with torch and grpc loaded is ≈ 300 MB resident; each role holds up to four
  float32 copies of the model (parameters, gradient, a received buffer, optimizer state).
  Deliberately an over-estimate: refusing a run that would have fitted costs a ``--force``,
  starting one that does not costs the machine.

This module imports neither torch nor grpc, so the CLI can refuse in a fraction of a second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pslab.algorithms import build_plan
from pslab.scenario import Scenario, ScenarioError

MAX_ROLES_PER_CORE = 8
MAX_MEMORY_FRACTION = 0.8
ROLE_BASE_BYTES = 300 * 2**20
MODEL_COPIES = 4
FLOAT32_BYTES = 4  # the emulator's tensors are float32 whatever workload.model.dtype says


@dataclass(frozen=True)
class Footprint:
    """What a run asks of the machine: processes and an estimate of resident memory."""

    processes: int
    memory_bytes: int


def footprint(scenario: Scenario) -> Footprint:
    """The role processes ``pslab launch`` would start, and the memory they would hold."""
    plan = build_plan(scenario)
    processes = len(plan.processes())
    per_role = ROLE_BASE_BYTES + MODEL_COPIES * FLOAT32_BYTES * plan.model.params
    return Footprint(processes, processes * per_role)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which cgroup cpusets narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` in bytes, or None where the kernel does not say."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(
    scenario: Scenario, cores: int | None = None, memory: int | None = None
) -> Footprint:
    """Raise :class:`ScenarioError` naming the numbers and what to lower when the run cannot
    fit; return its footprint otherwise. ``cores``/``memory``: this machine's, by default."""
    need = footprint(scenario)
    cores = cores if cores is not None else usable_cores()
    memory = memory if memory is not None else available_memory()
    lower = (
        "lower topology.nodes, topology.gpus_per_node / workers_per_node or "
        "topology.servers, or pass --force to start it anyway"
    )
    if need.processes > MAX_ROLES_PER_CORE * cores:
        raise ScenarioError(
            f"this run needs {need.processes} role processes but this machine has {cores} "
            f"core{'s' if cores != 1 else ''} (at most {MAX_ROLES_PER_CORE} per core, "
            f"{MAX_ROLES_PER_CORE * cores} here): {lower}"
        )
    if memory is not None and need.memory_bytes > MAX_MEMORY_FRACTION * memory:
        raise ScenarioError(
            f"this run's {need.processes} role processes would hold about "
            f"{_gib(need.memory_bytes)} but this machine has {_gib(memory)} available "
            f"(at most {MAX_MEMORY_FRACTION:.0%} of it): lower workload.model's size or the "
            f"number of roles ({lower.removeprefix('lower ')})"
        )
    return need


def check_device(scenario: Scenario) -> None:
    """``emulation.device: cuda`` on a machine without a usable GPU: refused before any
    process starts, rather than by every role at its first tensor."""
    if scenario.emulation.device != "cuda":
        return
    import torch  # only here: the process-count check above must stay fast

    if not torch.cuda.is_available():
        raise ScenarioError(
            "emulation.device is 'cuda' but torch sees no GPU on this machine "
            "(torch.cuda.is_available() is false): set emulation.device to 'cpu' or 'auto'"
        )
