"""A machine's recent calibrations, and the profile that takes each figure's median of them.

One calibration's figures are one moment's draw. On the 2-core development machine the
same stream measurement, taken in fresh processes a minute apart, put a server's receive
anywhere in 5.9-11.4e-10 s/B. One validation's calibration (1.34e-9 s/B) over-predicted its
parameter-server runs by up to 68 % (median error 19.1 %); the median of five validations'
calibrations, applied to the same runs, gave 10.9 % (max 33.8 %). Timing each figure
against three fresh server processes did not narrow the draw (a server's receive read
7.2-10.6 with one server, 7.7-10.7 with three): it is the moment's, not the process's. So a
compare's cached profile holds each figure's median over the machine's last calibrations,
and one unlucky moment cannot set a week of predictions. What only some scenarios need (a
model's compute, a gloo group's all-reduce) is measured when a compare first needs it; it
joins the entry of the calibration its profile stands on, and its median is over the
entries that hold it.
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


# tables whose entries are each a figure of its own: the machine-wide ones, then those a
# scenario asks for (a model's compute, a gloo group's all-reduce), measured only by the
# calibrations that ran such a scenario, so each entry's median is over those alone
_TABLES = ("stream_cpu_s_per_byte_at", "slice_add_s_per_byte_at", "slice_copy_s_per_byte_at")
_SCENARIO_TABLES = (
    "compute_s",
    "compute_cold_s",
    "compute_cold_ramp_s",
    "allreduce_s",
    "allreduce_cpu_s",
)


def figures(profile: Profile) -> dict[str, float]:
    """The profile's figures, a table's entries named ``table[key]``."""
    data = profile.model_dump()
    scalars = {
        k: float(v)
        for k, v in data.items()
        if k not in _NOT_FIGURES and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return {**scalars, **_entries_of(data, _TABLES), **_entries_of(data, _SCENARIO_TABLES)}


def _entries_of(data: dict[str, Any], tables: tuple[str, ...]) -> dict[str, float]:
    return {f"{t}[{k}]": float(v) for t in tables for k, v in data[t].items()}


def _update(medians: dict[str, float], base: dict[str, Any]) -> dict[str, Any]:
    """``medians`` as a profile's fields: the tables' entries gathered into ``base``'s
    tables."""
    tables = (*_TABLES, *_SCENARIO_TABLES)
    update: dict[str, Any] = {t: {str(k): v for k, v in base[t].items()} for t in tables}
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
    return _medians(profile, kept, own)


def with_scenario_figures(
    profile: Profile, measured: Profile, path: Path, max_age_s: float
) -> Profile:
    """``measured``: ``profile`` (a cached one, medians of the history at ``path``) with the
    scenario tables' entries a scenario needed measured now. They join the history's entry
    of the calibration ``profile`` stands on, and come back as medians over the
    calibrations that measured them: a gloo group's all-reduce read 0.45 to 2.9 ms, a
    model's cold step 0.65 to 0.80 ms, from one calibration to the next (7 December).
    Without that entry (a profile from elsewhere) ``measured`` is returned as it is."""
    had = _entries_of(profile.model_dump(), _SCENARIO_TABLES)
    measured_now = _entries_of(measured.model_dump(), _SCENARIO_TABLES)
    new = {name: value for name, value in measured_now.items() if name not in had}
    kept = _kept(path, profile.machine.model_dump(), profile.measured_at, max_age_s)[-KEPT:]
    mine = [e for e in kept if e["measured_at"] == profile.measured_at]
    if not new or not mine:
        return measured
    mine[-1]["figures"].update(new)
    write_text_atomic(path, yaml.safe_dump(kept, sort_keys=False))
    return _medians(measured, kept, new)


def _medians(profile: Profile, kept: list[dict], names: dict[str, float]) -> Profile:
    """``profile`` with each of ``names`` the median over the ``kept`` entries that hold it."""
    medians = {
        name: statistics.median(e["figures"][name] for e in kept if name in e["figures"])
        for name in names
    }
    data = profile.model_dump()
    return Profile.model_validate({**data, **_update(medians, data)})  # keys typed
