"""What a sweep runs: its grid points, each a resolved scenario named by its hash.

A grid comes from ``--vary key=v1,v2`` (a plain product) and, optionally, a sweep
file that ties settings to one variant::

    scenario: digits_tta.yaml          # relative to the sweep file
    set: {run.iterations: 30}          # applied to every point
    vary: {topology.nodes: [1, 2]}     # crossed with every variant
    variants:
      sync_ps: {}
      local_sgd: {algorithm.tau: [1, 4, 16]}

Varying a setting that a variant never reads (``tau`` for ``sync_ps``) would
give points that differ in name only. Each variant's ``algorithm`` section holds
only what it reads (:mod:`pslab.algorithm_config`), so such a point does not
resolve: the error names the point and the setting before anything runs, and a
sweep never reports the same run twice as two results.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pslab.scenario import (
    AlgorithmName,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_override,
    read_yaml,
)

NAME_KEY = "algorithm.name"
SWEEP_KEYS = {"scenario", "set", "vary", "variants"}


@dataclass(frozen=True)
class Point:
    """One grid point: the values that name it, the overrides that make it from the
    sweep's scenario file, and the scenario they resolve to."""

    label: dict[str, Any]
    overrides: tuple[str, ...]
    scenario: Scenario

    @property
    def key(self) -> str:
        """The cache key: a hash of the resolved scenario, so two spellings of one run
        (``1Gb/s`` and ``1e9``, a default written out or not) share one result."""
        text = json.dumps(self.scenario.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Grid:
    scenario_path: Path
    keys: list[str]  # the varied settings, in column order
    points: list[Point]


def parse_vary(texts: list[str]) -> list[tuple[str, list[Any]]]:
    """``key.path=v1,v2,...`` → (key, [values]); values parse as YAML scalars."""
    axes = []
    for text in texts:
        key, raw = parse_override(text)
        values = [yaml.safe_load(v) for v in str(raw).split(",")] if raw != "" else []
        if not values:
            raise ScenarioError(f"--vary {text}: give at least one value after '='")
        axes.append((key, values))
    return axes


def _axes(where: str, data: Any) -> list[tuple[str, list[Any]]]:
    """A ``{key: [values]}`` mapping of a sweep file (a single value is a list of one)."""
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: expected a mapping of setting: [values]")
    return [(str(k), v if isinstance(v, list) else [v]) for k, v in data.items()]


def read_sweep_file(path: Path) -> tuple[Path, list[str], list[tuple[str, list[Any]]], Any]:
    """(scenario path, --set overrides, shared axes, variants section) of a sweep file."""
    data = read_yaml(path)
    unknown = sorted(set(data) - SWEEP_KEYS)
    if unknown:
        raise ScenarioError(f"{path}: unknown key {unknown[0]!r} (a sweep file has {SWEEP_KEYS})")
    if not isinstance(data.get("scenario"), str):
        raise ScenarioError(f"{path}: scenario: the scenario file this sweep varies")
    scenario = (path.parent / data["scenario"]).resolve()
    sets = data.get("set") or {}
    if not isinstance(sets, dict):
        raise ScenarioError(f"{path}: set: expected a mapping of setting: value")
    overrides = [f"{k}={json.dumps(v)}" for k, v in sets.items()]
    return scenario, overrides, _axes(f"{path}: vary", data.get("vary")), data.get("variants")


def is_sweep_file(path: Path) -> bool:
    """A sweep file names its scenario; a scenario never has a ``scenario`` key."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False  # load_scenario reports it, with the file's name
    return isinstance(data, dict) and "scenario" in data


def _variant_of(value: Any, where: str) -> AlgorithmName:
    try:
        return AlgorithmName(value)
    except ValueError:
        names = ", ".join(a.value for a in AlgorithmName)
        raise ScenarioError(f"{where}: unknown variant {value!r} (one of {names})") from None


def build_grid(path: Path, vary: list[str], base: list[str]) -> Grid:
    """Every point of the sweep, validated, before any runs (a typo fails in a second)."""
    variants: Any = None
    axes: list[tuple[str, list[Any]]] = []
    if is_sweep_file(path):
        path, file_sets, axes, variants = read_sweep_file(path)
        base = file_sets + base
    axes += parse_vary(vary)
    load_scenario(path, base)  # a bad base fails here, once, not at every point
    per_variant: list[tuple[AlgorithmName | None, list[tuple[str, list[Any]]]]]
    if variants is None:
        per_variant = [(None, [])]
    else:
        if not isinstance(variants, dict) or not variants:
            raise ScenarioError("variants: expected a mapping of variant: {setting: [values]}")
        if any(k == NAME_KEY for k, _ in axes):
            raise ScenarioError(f"vary {NAME_KEY} or list variants, not both")
        per_variant = [
            (_variant_of(name, "variants"), _axes(f"variants.{name}", own))
            for name, own in variants.items()
        ]
    keys = ([NAME_KEY] if variants is not None else []) + [k for k, _ in axes]
    for _, own in per_variant:
        keys += [k for k, _ in own if k not in keys]
    points: list[Point] = []
    for variant, own in per_variant:
        all_axes = axes + own
        for combo in itertools.product(*[vals for _, vals in all_axes]):
            label = dict(zip([k for k, _ in all_axes], combo, strict=True))
            if variant is not None:
                label = {NAME_KEY: variant.value, **label}
            overrides = base + [f"{k}={json.dumps(v)}" for k, v in label.items()]
            try:
                scenario = load_scenario(path, overrides)
            except ScenarioError as e:
                where = ", ".join(f"{k}={v}" for k, v in label.items())
                raise ScenarioError(f"sweep point {where}: {e}") from None
            points.append(Point(label, tuple(overrides), scenario))
    if not points:
        raise ScenarioError("the sweep has no points (an empty list of values?)")
    return Grid(path, keys, points)
