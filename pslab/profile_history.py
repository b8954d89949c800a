"""A machine's recent calibrations, and the profile that takes each figure's median of them.

One calibration's figures are one moment's draw. On the 2-core development machine the
same stream measurement, taken in fresh processes a minute apart, put a server's receive
anywhere in 5.9-11.4e-10 s/B. One validation's calibration (1.34e-9 s/B) over-predicted its
parameter-server runs by up to 68 % (median error 19.1 %); the median of five validations'
calibrations, applied to the same runs, gave 10.9 % (max 33.8 %). Timing each figure
against three fresh server processes did not narrow the draw (a server's receive read
7.2-10.6 with one server, 7.7-10.7 with three): it is the moment's, not the process's. So a
compare's cached profile holds each figure's median over the machine's last calibrations,
and one unlucky moment cannot set a week of predictions.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import yaml

from pslab.profile import PROFILE_FORMAT, Machine, Profile
from pslab.results import write_text_atomic

KEPT = 5  # calibrations the median is taken over
# not a machine figure: when it was measured, what other jobs left free at that moment
# (compare takes the cores from the run itself), the stream size it timed
_NOT_FIGURES = frozenset({"format", "measured_at", "effective_cores", "stream_bytes"})


# machine-wide tables, each entry a figure of its own (the per-scenario tables, a model's
# compute or a gloo group's, stay the profile's own: calibrations measure different ones)
_TABLES = ("stream_cpu_s_per_byte_at", "slice_add_s_per_byte_at", "slice_copy_s_per_byte_at")


def figures(profile: Profile) -> dict[str, float]:
    """The profile's machine-wide figures, a table's entries named ``table[key]``."""
    data = profile.model_dump()
    scalars = {
        k: float(v)
        for k, v in data.items()
        if k not in _NOT_FIGURES and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    entries = {f"{t}[{k}]": float(v) for t in _TABLES for k, v in data[t].items()}
    return {**scalars, **entries}


def _update(medians: dict[str, float]) -> dict[str, Any]:
    """``medians`` as a profile's fields: the tables' entries gathered into their tables."""
    update: dict[str, Any] = {t: {} for t in _TABLES}
    for name, value in medians.items():
        table, bracket, key = name.partition("[")
        if bracket and table in update:
            update[table][key.removesuffix("]")] = value
        else:
            update[name] = value
    return update


def _entries(path: Path) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    return data if isinstance(data, list) else []


def _kept(path: Path, machine: dict[str, Any], now: float, max_age_s: float) -> list[dict]:
    """The history's entries that still count: this machine's, this profile format's, younger
    than ``max_age_s`` at ``now``."""
    return [
        e
        for e in _entries(path)
        if isinstance(e, dict)
        and e.get("format") == PROFILE_FORMAT
        and e.get("machine") == machine
        and isinstance(e.get("figures"), dict)
        and now - float(e.get("measured_at", 0.0)) < max_age_s
    ]


def count(path: Path, machine: Machine, now: float, max_age_s: float) -> int:
    """How many calibrations the medians would be taken over now (at most :data:`KEPT`)."""
    return min(len(_kept(path, machine.model_dump(), now, max_age_s)), KEPT)


def with_history(profile: Profile, path: Path, max_age_s: float) -> Profile:
    """Add a fresh calibration to the machine's history at ``path``; return it with each
    figure the median over the history's last :data:`KEPT` (calibrations of another
    machine or profile format, or older than ``max_age_s``, are dropped)."""
    machine = profile.machine.model_dump()
    kept = _kept(path, machine, profile.measured_at, max_age_s)
    own = figures(profile)
    now = {"format": PROFILE_FORMAT, "machine": machine, "measured_at": profile.measured_at}
    kept = [*kept, {**now, "figures": own}][-KEPT:]
    write_text_atomic(path, yaml.safe_dump(kept, sort_keys=False))
    medians = {
        name: statistics.median(e["figures"].get(name, value) for e in kept)
        for name, value in own.items()
    }
    return Profile.model_validate({**profile.model_dump(), **_update(medians)})  # keys typed
