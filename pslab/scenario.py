"""The scenario file: topology + workload + algorithm + run settings.

One typed schema serves the simulator, the emulator and compare, so a field
means the same thing on both sides. Quantities are written with units in the
file and held in SI base units here; in a file (or ``--set``, or ``replace``) a
bare number on a duration or a bandwidth is refused, since ``latency: 5`` read
as five seconds. Every model forbids unknown keys: a typo is an error that
names its path, never a silently ignored setting, and a setting the chosen
algorithm never reads (``tau`` on sync_ps) is one too. The workload section lives
in pslab/workload.py, the algorithm section (one model per variant) in
pslab/algorithm_config.py, the unit types in pslab/quantities.py, the error
messages in pslab/schema_errors.py; this module re-exports them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from pslab.algorithm_config import Algorithm, AlgorithmName, SyncPS, switch_variant
from pslab.quantities import (
    STRICT_UNITS,
    Bandwidth,
    Count,
    Distribution,
    Duration,
    Link,
    Size,
    Strict,
    TimeSpec,
)
from pslab.schema_errors import ScenarioError, did_you_mean, format_validation
from pslab.workload import (
    BYTES_PER,
    ComputeEstimate,
    ModelSpec,
    TransformerModel,
    TransformerShape,
    Workload,
)

__all__ = [
    "BYTES_PER",
    "AlgorithmName",
    "Bandwidth",
    "ComputeEstimate",
    "Count",
    "Distribution",
    "Duration",
    "Link",
    "ModelSpec",
    "ScenarioError",
    "Size",
    "TimeSpec",
    "TransformerModel",
    "TransformerShape",
    "Workload",
    "did_you_mean",
]


class GraphNode(Strict):
    name: str
    kind: Literal["host", "gpu", "switch", "nic"] = "host"
    cores: int | None = None
    server: bool = False
    gpus: int | None = Field(
        None, ge=0, description="a host's GPUs, added behind it (default: its gpu vertices)"
    )


class GraphLink(Strict):
    a: str
    b: str
    bandwidth: Bandwidth
    latency: Duration = 0.0


class ExplicitGraph(Strict):
    nodes: list[GraphNode] = Field(default_factory=list)
    links: list[GraphLink] = Field(default_factory=list)
    graphml: str | None = None


class Topology(Strict):
    preset: Literal["single_node", "cluster", "fat_tree", "graph"] = "cluster"
    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(1, ge=0, description="0 means workers compute on CPU cores")
    workers_per_node: int | None = Field(None, ge=1, description="default: one per GPU, or 1")
    cores_per_node: int = Field(8, ge=1)
    intra_link: Link = Link(bandwidth=300e9, latency=2e-6)
    inter_link: Link = Link(bandwidth=10e9 / 8, latency=10e-6)
    servers: int = Field(1, ge=0, description="parameter-server hosts, each with its own NIC")
    server_link: Link | None = Field(None, description="server NIC; default: inter_link")
    server_cores: int = Field(8, ge=1)
    fat_tree_k: int = Field(4, ge=2, description="k of a k-ary fat tree (preset fat_tree)")
    core_link: Link | None = Field(None, description="switch-to-switch links (fat_tree)")
    graph: ExplicitGraph | None = None
    gpu: str | None = Field(None, description="catalogue GPU (pslab/hardware.py): FLOPs, memory")
    cpu: str | None = Field(None, description="catalogue CPU core type, for CPU workers")
    cpu_ghz: float = Field(2.0, gt=0, le=10, description="sustained all-core clock (cpu)")
    compute_efficiency: float | None = Field(
        None, gt=0, le=1, description="share of peak FLOP/s sustained; default: the catalogue's"
    )
    pcie_link: Link | None = Field(
        None, description="each GPU's PCIe link to its host (default from gpu; none: intra_link)"
    )
    nics_per_node: int | None = Field(
        None, ge=1, le=64, description="NICs per node, each at inter_link (none: the host's own)"
    )
    gpudirect: bool = Field(False, description="GPU data reaches a NIC over PCIe, not via host")

    @model_validator(mode="before")
    @classmethod
    def _gpu_links(cls, data: Any) -> Any:
        """A catalogued GPU's NVLink and PCIe bandwidths as the links' defaults."""
        if not isinstance(data, dict) or not isinstance(data.get("gpu"), str):
            return data
        from pslab.hardware import GPUS

        gpu = GPUS.get(data["gpu"])
        if gpu is None:
            return data
        data = dict(data)
        if gpu.nvlink is not None and "intra_link" not in data:
            data["intra_link"] = {"bandwidth": f"{gpu.nvlink!r}B/s", "latency": "2us"}
        if gpu.pcie is not None and "pcie_link" not in data:
            data["pcie_link"] = {"bandwidth": f"{gpu.pcie!r}B/s", "latency": "1us"}
        return data

    @field_validator("gpu", "cpu")
    @classmethod
    def _catalogued(cls, name: str | None, info: ValidationInfo) -> str | None:
        from pslab.hardware import CPUS, GPUS, known

        if name is not None:
            problem = known(GPUS if info.field_name == "gpu" else CPUS, name, info.field_name)
            if problem:
                raise ValueError(problem)
        return name

    @property
    def workers_each_node(self) -> int:
        if self.workers_per_node is not None:
            return self.workers_per_node
        return max(self.gpus_per_node, 1)

    @property
    def n_workers(self) -> int:
        return self.nodes * self.workers_each_node

    @model_validator(mode="after")
    def _check(self) -> Topology:
        if self.preset == "graph" and self.graph is None:
            raise ValueError("preset 'graph' needs a 'graph' section (nodes/links or graphml)")
        if self.preset == "single_node" and self.nodes != 1:
            raise ValueError("preset 'single_node' has exactly one node")
        if self.gpudirect and (self.pcie_link is None or self.nics_per_node is None):
            raise ValueError("gpudirect needs a pcie_link (or a catalogued gpu) and nics_per_node")
        return self


class TraceSample(Strict):
    workers: int = Field(16, ge=1)
    iterations: int = Field(50, ge=1)


class Run(Strict):
    iterations: int = Field(20, ge=1)
    seed: int = 0
    warmup: int = Field(2, ge=0)
    trace_sample: TraceSample = TraceSample()


class Emulation(Strict):
    compute: Literal["real", "emulated"] = "emulated"
    model: Literal["digits_mlp", "digits_cnn", "synthetic"] = "synthetic"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    network: Literal["loopback", "netns"] = "loopback"
    # netns: how a shaped port shares its rate among competing flows (grpc_ps.shaping)
    port_queue: Literal["fair", "fifo"] = "fair"
    chunk_bytes: Size = Field(1 << 20, gt=0)
    rpc_timeout: Duration = 60.0


class Numerics(Strict):
    model: Literal["digits_mlp", "digits_cnn"] = "digits_mlp"
    target_accuracy: float = Field(0.9, gt=0, le=1)


class Scenario(Strict):
    name: str
    description: str = ""
    topology: Topology = Topology()
    workload: Workload = Workload()
    algorithm: Algorithm = SyncPS()
    run: Run = Run()
    emulation: Emulation = Emulation()
    calibration: str | None = None
    numerics: Numerics | None = None

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.run.warmup >= self.run.iterations - 1:
            raise ValueError(
                "run.iterations must exceed run.warmup + 1 (warm-up and the last "
                "iteration are left out of the metrics)"
            )
        if self.numerics is not None and self.workload.model != self.numerics.model:
            raise ValueError(
                f"numerics.model is {self.numerics.model!r}: set workload.model to it too, "
                "so time is priced for the model whose accuracy is computed"
            )
        from pslab.algorithms import ALGORITHMS  # the registry imports this module

        if ALGORITHMS[self.algorithm.name].needs_server and self.topology.servers < 1:
            raise ValueError(f"algorithm {self.algorithm.name.value} needs topology.servers >= 1")
        return self

    def replace(self, **dotted: Any) -> Scenario:
        """A copy with fields overridden, validated again like a loaded file.

        Keys are dotted field paths, spelled either ``topology__nodes=4`` (double
        underscore, usable as a keyword) or ``**{"topology.nodes": 4}``. Values are
        what the YAML would hold (``"100Gb/s"`` is parsed, a bare ``5`` on a duration
        is refused). Unlike pydantic's ``model_copy(update=...)``, which skips
        validation (``nodes=0`` then ends in a ZeroDivisionError deep in the
        simulator), a bad value is a :class:`ScenarioError` naming the field. A
        compute time that ``auto`` priced is priced again (another GPU, another batch).
        A new ``algorithm.name`` keeps the settings both variants have and drops the
        old one's own (:func:`switch_variant`); one given with it must be the new one's.
        """
        data = self.model_dump(mode="json")
        keys = [key.replace("__", ".") for key in dotted]
        if "algorithm.name" in keys:
            name = dotted[list(dotted)[keys.index("algorithm.name")]]
            data["algorithm"] = switch_variant(data["algorithm"], str(getattr(name, "value", name)))
        if data["workload"].pop("compute_estimate", None) and "workload.compute_time" not in keys:
            data["workload"]["compute_time"] = "auto"
        for key, value in zip(keys, dotted.values(), strict=True):
            set_path(data, key, value)
        return scenario_from_dict(data, f"{self.name} (replace)", strict=True)


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Apply one ``--set a.b.c=value`` override to raw scenario data."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise ScenarioError(f"--set {dotted}: '{k}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ScenarioError(f"--set expects key.path=value, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def scenario_from_dict(
    data: dict[str, Any],
    source: str = "<scenario>",
    overrides: list[str] | None = None,
    strict: bool = False,
    base_dir: Path | None = None,
) -> Scenario:
    """Validate raw scenario data; ``strict``: durations and bandwidths need their units
    (text a person wrote). A model file named by ``workload.model`` is read from
    ``base_dir`` and inlined; ``compute_time: auto`` is priced and the GPU memory checked
    (pslab/compute.py), so the scenario returned is what both executors run."""
    from pslab.compute import resolve_compute
    from pslab.modelfile import inline_model_file

    data = copy.deepcopy(data)
    for text in overrides or []:
        key, value = parse_override(text)
        set_path(data, key, value)
    inline_model_file(data, base_dir or Path.cwd(), source)
    try:
        scenario = Scenario.model_validate(data, context=STRICT_UNITS if strict else None)
    except ValidationError as err:
        raise ScenarioError(format_validation(source, err, "scenario", Scenario)) from None
    return resolve_compute(scenario, source)


def read_yaml(path: Path, error: type[ScenarioError] = ScenarioError) -> dict[str, Any]:
    """A YAML file's top-level mapping; anything else is ``error`` naming the file."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level")
    return data


MAX_FILE_BYTES = 4 << 20
"""A scenario file is a few kB; 4 MiB is far past any real one and keeps a 32 MB
YAML from taking gigabytes to parse (issue 19)."""


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """A scenario file, strict about units (a person wrote it)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # read_yaml reports the missing file
    if size > MAX_FILE_BYTES:
        raise ScenarioError(
            f"{path}: {size:,} bytes; a scenario file is at most {MAX_FILE_BYTES:,}"
        )
    data = read_yaml(path)
    scenario = scenario_from_dict(data, str(path), overrides, strict=True, base_dir=path.parent)
    if scenario.calibration and not Path(scenario.calibration).is_absolute():
        resolved = (path.parent / scenario.calibration).resolve()
        scenario = scenario.model_copy(update={"calibration": str(resolved)})
    return scenario


def dump_scenario(scenario: Scenario) -> str:
    """The resolved scenario as YAML, written beside every result: durations and
    bandwidths carry their units (``0.05s``, ``1250000000.0B/s``, exact reprs), so
    :func:`load_scenario` reads it back strictly and to the same values (replay)."""
    return yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False)
