"""The scenario's ``algorithm`` section: one settings model per SGD variant.

A tagged union keyed by ``algorithm.name``: each variant holds the settings its role
programs read and nothing else, so ``tau`` on sync_ps (which never reads it) is an
error naming ``algorithm.tau``, never a silently ignored setting. Settings several
variants share come from small bases (a parameter server's ``partition_bytes``, a
period ``tau``, the ``synchronous`` switch); what every variant reads (learning rate,
momentum, Laplacian smoothing, a gradient transform usable with any variant) is on
:class:`AlgorithmSettings`. A section without a name is sync_ps, as before.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from pslab.quantities import Size, Strict


class AlgorithmName(str, Enum):
    sync_ps = "sync_ps"
    async_ps = "async_ps"
    ssp = "ssp"
    allreduce = "allreduce"
    layered_sgd = "layered_sgd"
    easgd = "easgd"
    leader_sgd = "leader_sgd"
    local_sgd = "local_sgd"


class Smoothing(Strict):
    sigma: float = Field(0.0, ge=0)
    order: int = Field(1, ge=1)


class AlgorithmSettings(Strict):
    """What every variant reads; ``name`` is narrowed to one value by each variant."""

    name: AlgorithmName
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    smoothing: Smoothing = Smoothing()


class Sharded(AlgorithmSettings):
    """A variant with a parameter server, whose keys are cut into partitions."""

    partition_bytes: Size = Field(4_096_000, gt=0, description="PS key-range partition size")


class Periodic(AlgorithmSettings):
    tau: int = Field(1, ge=1, description="local steps between communications")


class Switchable(AlgorithmSettings):
    synchronous: bool = True


class Grouped(AlgorithmSettings):
    groups: int | None = Field(None, ge=1, description="default: one group per node")


class PerTensor(AlgorithmSettings):
    per_tensor: bool = Field(False, description="one blocking collective per parameter tensor")


class CollectiveAlgo(AlgorithmSettings):
    allreduce_algo: Literal["ring", "hierarchical"] = "ring"


class SyncPS(Sharded):
    name: Literal[AlgorithmName.sync_ps] = AlgorithmName.sync_ps


class AsyncPS(Sharded):
    name: Literal[AlgorithmName.async_ps] = AlgorithmName.async_ps


class SSP(Sharded):
    name: Literal[AlgorithmName.ssp] = AlgorithmName.ssp
    staleness_bound: int | None = Field(None, ge=0, description="s (default 3); 0 is BSP")


class AllReduce(PerTensor, CollectiveAlgo):
    name: Literal[AlgorithmName.allreduce] = AlgorithmName.allreduce
    overlap_backward: bool = Field(False, description="bucketed all-reduce overlapped with bwd")


class LayeredSGD(PerTensor, Grouped):
    name: Literal[AlgorithmName.layered_sgd] = AlgorithmName.layered_sgd


class EASGD(Sharded, Periodic, Switchable):
    name: Literal[AlgorithmName.easgd] = AlgorithmName.easgd
    alpha: float | None = Field(None, gt=0, le=1, description="eta*rho (default 0.9/n)")


class LeaderSGD(Periodic, Switchable, Grouped):
    name: Literal[AlgorithmName.leader_sgd] = AlgorithmName.leader_sgd
    lambda_local: float = Field(0.1, ge=0, le=1, description="pull to the local leader")
    lambda_global: float = Field(0.1, ge=0, le=1, description="pull to the global leader")
    tau_global: int | None = Field(None, ge=1, description="steps between global pulls")
    loss_window: int = Field(10, ge=1, description="running-mean loss window")


class LocalSGD(Periodic, CollectiveAlgo):
    """Its parameter average is an all-workers all-reduce, priced ring or hierarchical."""

    name: Literal[AlgorithmName.local_sgd] = AlgorithmName.local_sgd


VARIANTS: dict[AlgorithmName, type[AlgorithmSettings]] = {
    AlgorithmName.sync_ps: SyncPS,
    AlgorithmName.async_ps: AsyncPS,
    AlgorithmName.ssp: SSP,
    AlgorithmName.allreduce: AllReduce,
    AlgorithmName.layered_sgd: LayeredSGD,
    AlgorithmName.easgd: EASGD,
    AlgorithmName.leader_sgd: LeaderSGD,
    AlgorithmName.local_sgd: LocalSGD,
}


def _default_name(data: Any) -> Any:
    """A section without ``name`` is sync_ps (the default before the union existed)."""
    if isinstance(data, dict) and "name" not in data:
        return {"name": AlgorithmName.sync_ps.value, **data}
    return data


Algorithm = Annotated[
    SyncPS | AsyncPS | SSP | AllReduce | LayeredSGD | EASGD | LeaderSGD | LocalSGD,
    BeforeValidator(_default_name),
    Field(discriminator="name"),
]
"""The ``algorithm`` section's type: the variant ``name`` picks."""


def switch_variant(section: dict[str, Any], name: str) -> dict[str, Any]:
    """``section`` (a dumped variant) as variant ``name``: the settings both share carry
    over, the old variant's own are dropped (a resolved scenario holds every default, so
    none of them is a choice a user made for the new variant)."""
    target = VARIANTS.get(name)  # type: ignore[call-overload]  # a str enum hashes as its value
    if target is None:
        return {**section, "name": name}  # an unknown name: the schema reports it
    return {k: v for k, v in section.items() if k in target.model_fields} | {"name": name}
