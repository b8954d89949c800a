"""The scenario file: topology + workload + algorithm + run settings.

One typed schema serves the simulator, the emulator and compare, so a field
means the same thing on both sides. Quantities are written with units in the
file and held in SI base units here. Every model forbids unknown keys: a
typo is an error that names its path, never a silently ignored setting.
"""

from __future__ import annotations

import copy
import difflib
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pslab import units


def _unit(parser):
    def parse(value: Any) -> Any:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return parser(value)
        return value

    return BeforeValidator(parse)


Bandwidth = Annotated[float, _unit(units.parse_bandwidth), Field(gt=0)]
Duration = Annotated[float, _unit(units.parse_time), Field(ge=0)]
Count = Annotated[int, _unit(units.parse_count), Field(ge=0)]
Size = Annotated[int, _unit(units.parse_size), Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Link(Strict):
    bandwidth: Bandwidth
    latency: Duration = 0.0


class Distribution(Strict):
    """A random duration (stragglers): a mean and a coefficient of variation."""

    dist: Literal["constant", "normal", "lognormal", "exponential", "uniform"] = "lognormal"
    mean: Duration
    cv: float = Field(0.1, ge=0)


TimeSpec = Duration | Distribution


class GraphNode(Strict):
    name: str
    kind: Literal["host", "gpu", "switch", "nic"] = "host"
    cores: int | None = None
    server: bool = False


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
        return self


class ModelSpec(Strict):
    params: Count = Field(gt=0)
    dtype: Literal["float32", "float16", "bfloat16", "float64"] = "float32"
    layers: list[Count] | None = Field(None, description="per-tensor parameter counts")

    @property
    def bytes_per_param(self) -> int:
        return {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.params * self.bytes_per_param

    @model_validator(mode="after")
    def _layers_sum(self) -> ModelSpec:
        if self.layers is not None and sum(self.layers) != self.params:
            raise ValueError(f"layers sum to {sum(self.layers)}, not params={self.params}")
        return self


class Workload(Strict):
    model: ModelSpec | str = Field(
        default_factory=lambda: ModelSpec(params=1_000_000), description="spec or catalogue name"
    )
    batch_size: int = Field(32, ge=1)
    compute_time: TimeSpec = 0.05
    io_time: TimeSpec = 0.0
    io_prefetch: bool = False
    server_update_bandwidth: Bandwidth = Field(
        2e9, description="bytes/s one server core applies an update at"
    )
    smoothing_flops: float = Field(
        2e9, gt=0, description="flop/s of the device smoothing a gradient (FFT: 5 n log2 n)"
    )

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: ModelSpec | str) -> ModelSpec | str:
        """A catalogue name is checked here, at load, so ``resnet-50`` is an error naming
        ``workload.model`` with a suggestion, not a KeyError once the run has started."""
        if isinstance(model, str):
            from pslab.catalogue import CATALOGUE  # imports this module: resolved at call time

            if model not in CATALOGUE:
                known = sorted(CATALOGUE)
                raise ValueError(
                    f"unknown model {model!r}{did_you_mean(model, known)}; "
                    f"known: {', '.join(known)}, or a spec {{params: 25.6M}}"
                )
        return model


class Smoothing(Strict):
    sigma: float = Field(0.0, ge=0)
    order: int = Field(1, ge=1)


class AlgorithmName(str, Enum):
    sync_ps = "sync_ps"
    async_ps = "async_ps"
    ssp = "ssp"
    allreduce = "allreduce"
    layered_sgd = "layered_sgd"
    easgd = "easgd"
    leader_sgd = "leader_sgd"
    local_sgd = "local_sgd"


class Algorithm(Strict):
    name: AlgorithmName = AlgorithmName.sync_ps
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    staleness_bound: int | None = Field(None, ge=0, description="ssp: s; 0 is BSP")
    tau: int = Field(1, ge=1, description="local steps between communications")
    alpha: float | None = Field(None, gt=0, le=1, description="easgd: eta*rho (default 0.9/n)")
    lambda_local: float = Field(0.1, ge=0, le=1, description="leader_sgd: pull to local leader")
    lambda_global: float = Field(0.1, ge=0, le=1, description="leader_sgd: pull to global leader")
    tau_global: int | None = Field(None, ge=1, description="leader_sgd: steps between global")
    loss_window: int = Field(10, ge=1, description="leader_sgd: running-mean loss window")
    groups: int | None = Field(None, ge=1, description="default: one group per node")
    synchronous: bool = True
    allreduce_algo: Literal["ring", "hierarchical"] = "ring"
    per_tensor: bool = Field(False, description="one blocking collective per parameter tensor")
    overlap_backward: bool = Field(False, description="bucketed all-reduce overlapped with bwd")
    partition_bytes: Size = Field(4_096_000, gt=0, description="PS key-range partition size")
    smoothing: Smoothing = Smoothing()


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
    algorithm: Algorithm = Algorithm()
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
        needs_server = self.algorithm.name in (
            AlgorithmName.sync_ps,
            AlgorithmName.async_ps,
            AlgorithmName.ssp,
            AlgorithmName.easgd,
        )
        if self.numerics is not None and self.workload.model != self.numerics.model:
            raise ValueError(
                f"numerics.model is {self.numerics.model!r}: set workload.model to it too, "
                "so time is priced for the model whose accuracy is computed"
            )
        if needs_server and self.topology.servers < 1:
            raise ValueError(f"algorithm {self.algorithm.name.value} needs topology.servers >= 1")
        return self

    def replace(self, **dotted: Any) -> Scenario:
        """A copy with fields overridden, validated again like a loaded file.

        Keys are dotted field paths, spelled either ``topology__nodes=4`` (double
        underscore, usable as a keyword) or ``**{"topology.nodes": 4}``. Values are
        what the YAML would hold (``"100Gb/s"`` is parsed). Unlike pydantic's
        ``model_copy(update=...)``, which skips validation (``nodes=0`` then ends in a
        ZeroDivisionError deep in the simulator), a bad value is a
        :class:`ScenarioError` naming the field.
        """
        data = self.model_dump(mode="json")
        for key, value in dotted.items():
            set_path(data, key.replace("__", "."), value)
        return scenario_from_dict(data, f"{self.name} (replace)")


class ScenarioError(Exception):
    """A scenario that cannot be used; str() is the message a user should see."""


_WRONG_TYPE = {
    "model_type",
    "dict_type",
    "float_type",
    "int_type",
    "string_type",
    "bool_type",
    "float_parsing",
    "int_parsing",
}


def _is_tag(part: str | int) -> bool:
    """pydantic's names for a union's alternatives or a validator chain, not fields:
    ``ModelSpec``, ``str``, ``function-after[_layers_sum(), ModelSpec]``. Field names
    here are all lowercase identifiers; list indices are ints."""
    if isinstance(part, int):
        return False
    return "[" in part or part[:1].isupper() or part in ("str", "float", "int", "bool")


def _clean(loc: tuple[str | int, ...]) -> tuple[list[str], bool]:
    """The field path a user wrote, and whether the error is about one alternative."""
    return [str(p) for p in loc if not _is_tag(p)], any(_is_tag(p) for p in loc)


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing (difflib)."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(path: list[str]) -> type[BaseModel] | None:
    """The schema model that holds the field at ``path`` (its parent), walking from Scenario."""
    model: type[BaseModel] = Scenario
    for part in path[:-1]:
        if part.isdigit():
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        found = _submodel(info.annotation)
        if found is None:
            return None
        model = found
    return model


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _message(e: Any, path: list[str]) -> str:
    """pydantic's message, with a suggestion for a misspelt field or choice."""
    msg = e["msg"].removeprefix("Value error, ")
    got = e.get("input")
    if e["type"] == "extra_forbidden":
        model = _model_at(path)
        fields = list(model.model_fields) if model is not None else []
        return f"unknown field{did_you_mean(path[-1], fields)}" + (
            f"; known: {', '.join(fields)}" if fields else ""
        )
    if e["type"] in ("enum", "literal_error") and isinstance(got, str):
        choices = re.findall(r"'([^']*)'", str((e.get("ctx") or {}).get("expected", "")))
        return msg + did_you_mean(got, choices)
    return msg


def format_validation(source: str, err: ValidationError, what: str = "scenario") -> str:
    """One line per wrong field: its dotted path, what was expected, what was given,
    and a "did you mean" where a name is close to a known one.

    A field that accepts alternatives (a duration or a distribution) fails once per
    alternative. The alternatives' "wrong type" complaints are dropped where another
    alternative says something specific about the same field, then only the first
    complaint per path is kept; pydantic's alternative names never reach the path.
    """
    errors = err.errors()
    cleaned = [(e, *_clean(e["loc"])) for e in errors]
    specific = [".".join(p) for e, p, _ in cleaned if e["type"] not in _WRONG_TYPE]
    lines = [f"{source}: invalid {what}"]
    seen: set[str] = set()
    for e, parts, alternative in cleaned:
        path = ".".join(parts) or "<top>"
        if (
            alternative
            and e["type"] in _WRONG_TYPE
            and any(s == path or s.startswith(path + ".") for s in specific)
        ):
            continue
        if path in seen:
            continue
        seen.add(path)
        msg = _message(e, parts)
        got = e.get("input")
        shown = ""
        if (
            e["type"] != "extra_forbidden"
            and got is not None
            and not isinstance(got, dict | list)
            and repr(got) not in msg
        ):
            shown = f" (got {got!r})"
        lines.append(f"  {path}: {msg}{shown}")
    return "\n".join(lines)


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
    data: dict[str, Any], source: str = "<scenario>", overrides: list[str] | None = None
) -> Scenario:
    data = copy.deepcopy(data)
    for text in overrides or []:
        key, value = parse_override(text)
        set_path(data, key, value)
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(format_validation(source, err)) from None


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


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    path = Path(path)
    data = read_yaml(path)
    scenario = scenario_from_dict(data, str(path), overrides)
    if scenario.calibration and not Path(scenario.calibration).is_absolute():
        resolved = (path.parent / scenario.calibration).resolve()
        scenario = scenario.model_copy(update={"calibration": str(resolved)})
    return scenario


def dump_scenario(scenario: Scenario) -> str:
    """The resolved scenario as YAML, written beside every result."""
    return yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False)
