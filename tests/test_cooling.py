"""The cooling probe's fit (grpc_ps.cooling): what others' work in a gap adds, and over how much."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from grpc_ps.cooling import fit_cooling, measure_cooling

MS = 1e-3


def test_a_share_built_up_linearly_then_flat_is_recovered() -> None:
    share, build_up = 0.3, 1.5 * MS
    cold, idle = 200e-6, 80e-6
    extras = {
        w: idle + share * cold * min(w / build_up, 1.0)
        for w in (0.0, 0.5 * MS, 1 * MS, 2 * MS, 4 * MS)
    }
    got_share, got_build_up = fit_cooling(extras, cold)
    assert got_share == pytest.approx(share)
    assert got_build_up == pytest.approx(build_up, rel=0.1)


def test_no_cooling_beyond_the_idle_gap_gives_none() -> None:
    extras = dict.fromkeys((0.0, 0.5 * MS, 1 * MS, 2 * MS, 4 * MS), 80e-6)
    assert fit_cooling(extras, 200e-6) == (0.0, 0.0)
    assert fit_cooling({0.0: 1e-6, 1 * MS: 9e-6, 2 * MS: 9e-6}, 0.0) == (0.0, 0.0)  # never cold


def test_the_probe_runs_its_burners_and_leaves_none_behind() -> None:
    """A short probe on a trivial op: figures in range, and every burner process gone."""
    before = _children()
    share, build_up = measure_cooling(lambda _i: sum(range(2000)), burners=2, rounds=3)
    assert 0.0 <= share <= 1.0 and build_up >= 0.0
    assert _children() == before


def _children() -> set[int]:
    """This process's children, from /proc (the field after a process's name is its parent)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == os.getpid():
            found.add(int(stat.parent.name))
    return found
