"""The workload section: the model (spec, transformer family, catalogue name, model file),
its batch and what one step costs (a time, a distribution, or ``auto`` from FLOPs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from pslab.quantities import Bandwidth, Count, Strict, TimeSpec
from pslab.schema_errors import did_you_mean


class ModelSpec(Strict):
    params: Count = Field(gt=0)
    dtype: Literal["float32", "float16", "bfloat16", "float64"] = "float32"
    layers: list[Count] | None = Field(None, description="per-tensor parameter counts")
    flops_per_sample: float | None = Field(
        None, gt=0, description="forward+backward FLOPs of one sample (compute_time: auto)"
    )
    activations_per_sample: float | None = Field(
        None, ge=0, description="activation elements one sample keeps for backward"
    )

    @property
    def bytes_per_param(self) -> int:
        return BYTES_PER[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.params * self.bytes_per_param

    @model_validator(mode="after")
    def _layers_sum(self) -> ModelSpec:
        if self.layers is not None and sum(self.layers) != self.params:
            raise ValueError(f"layers sum to {sum(self.layers)}, not params={self.params}")
        return self


BYTES_PER = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


class TransformerShape(Strict):
    """A GPT-style transformer by its shape; tensors and FLOPs follow (pslab/catalogue.py)."""

    layers: int = Field(ge=1, le=10_000)
    hidden: int = Field(ge=1, le=1_000_000)
    vocab: int = Field(ge=1, le=10_000_000)
    seq: int = Field(ge=1, le=10_000_000, description="tokens per sample")
    heads: int | None = Field(None, ge=1, description="default: hidden / 64")
    ffn: int | None = Field(None, ge=1, description="default: 4 x hidden")


class TransformerModel(Strict):
    transformer: TransformerShape
    dtype: Literal["float32", "float16", "bfloat16", "float64"] = "float32"


def _model_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "Transformer" if "transformer" in value else "Spec"
    if isinstance(value, TransformerModel):
        return "Transformer"
    return "Spec" if isinstance(value, ModelSpec) else "Name"


ModelChoice = Annotated[
    Annotated[ModelSpec, Tag("Spec")]
    | Annotated[TransformerModel, Tag("Transformer")]
    | Annotated[str, Tag("Name")],
    Discriminator(_model_kind),
]


class ComputeEstimate(Strict):
    """How ``compute_time: auto`` was priced: kept beside the resolved time, so a written
    scenario says what produced it and ``replace`` can price it again."""

    device: str
    flops_per_batch: float
    peak_flops: float
    efficiency: float
    memory_bytes: float
    device_memory_bytes: float | None = None  # None: a CPU, whose memory is not checked


class Workload(Strict):
    model: ModelChoice = Field(
        default_factory=lambda: ModelSpec(params=1_000_000),
        description="spec, {transformer: {...}}, catalogue name or a model file (.yaml)",
    )
    batch_size: int = Field(32, ge=1)
    compute_time: TimeSpec | Literal["auto"] = 0.05
    compute_estimate: ComputeEstimate | None = Field(
        None, description="written by compute_time: auto; not to be set by hand"
    )
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
    def _known_model(cls, model: Any) -> Any:
        """A catalogue name is checked here, at load, so ``resnet-50`` is an error naming
        ``workload.model`` with a suggestion, not a KeyError once the run has started."""
        if isinstance(model, str):
            from pslab.catalogue import CATALOGUE  # imports this module: resolved at call time

            if model not in CATALOGUE:
                known = sorted(CATALOGUE)
                raise ValueError(
                    f"unknown model {model!r}{did_you_mean(model, known)}; "
                    f"known: {', '.join(known)}, a model file (.yaml), "
                    "{transformer: {layers, hidden, vocab, seq}} or a spec {params: 25.6M}"
                )
        return model
