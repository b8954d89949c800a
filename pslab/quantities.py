"""Quantities as a scenario writes them: durations, bandwidths, counts and sizes with units.

The annotated types here parse "100Gb/s" or "50ms" into SI floats on the way in
and write them back with their units on the way out (JSON mode), so a dumped
scenario reads back strictly and exactly. Kept apart from the schema so the
workload and topology modules can share them without importing each other.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationInfo

from pslab import units

STRICT_UNITS = {"units": "strict"}
"""Validation context for text a person wrote (a scenario file, ``--set``, ``replace``):
a bare number on a duration or a bandwidth is refused there, because ``latency: 5``
silently meant five seconds. Python callers building dicts pass SI numbers."""

_EXAMPLE = {"duration": "'{v}ms' or '{v}s'", "bandwidth": "'{v}Gb/s' (bits) or '{v}GB/s' (bytes)"}


def _unit(parser, kind: str | None = None):
    """Parse a quantity written with units; ``kind`` set: a bare number needs one (strict)."""

    def parse(value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return value
        if isinstance(value, float) and not math.isfinite(value):
            raise units.UnitError(f"must be finite, got {value}")
        strict = (info.context or {}).get("units") == "strict"
        if kind and strict and not isinstance(value, str) and value != 0:
            example = _EXAMPLE[kind].format(v=value)
            raise units.UnitError(f"a bare number is ambiguous: add the unit, e.g. {example}")
        parsed = parser(value)
        if isinstance(parsed, float) and not math.isfinite(parsed):
            raise units.UnitError(f"must be finite, got {value!r}")
        return parsed

    return BeforeValidator(parse)


Bandwidth = Annotated[
    float,
    _unit(units.parse_bandwidth, "bandwidth"),
    Field(gt=0),
    PlainSerializer(lambda v: f"{v!r}B/s", when_used="json"),
]


def _duration_json(value: Any) -> Any:
    """A duration with its unit; a :class:`Distribution` in a duration's place (``TimeSpec``
    is a union, and pydantic may hand either member to this serializer) as its fields."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return f"{value!r}s"


Duration = Annotated[
    float,
    _unit(units.parse_time, "duration"),
    Field(ge=0),
    PlainSerializer(_duration_json, when_used="json"),
]
Count = Annotated[int, _unit(units.parse_count), Field(ge=0)]
Size = Annotated[int, _unit(units.parse_size), Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Link(Strict):
    bandwidth: Bandwidth
    latency: Duration = 0.0


class Distribution(Strict):
    """A random duration (stragglers): a mean and a coefficient of variation."""

    dist: Literal["constant", "normal", "lognormal", "exponential", "uniform"] = "lognormal"
    mean: Duration
    cv: float = Field(0.1, ge=0)


TimeSpec = Duration | Distribution
