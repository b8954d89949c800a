from __future__ import annotations

import pytest

from pslab.policies import LeaderBoard, PolicyError, StalenessPolicy


def test_bsp_applies_once_per_round_and_gates_pulls() -> None:
    p = StalenessPolicy(3, bound=0, aggregate=True)
    assert p.on_push(0, 0) is None
    assert not p.may_pull(0)
    assert p.on_push(1, 0) is None
    applied = p.on_push(2, 0)
    assert applied is not None and applied.workers == [0, 1, 2] and applied.version == 1
    assert all(p.may_pull(w) for w in range(3))
    with pytest.raises(PolicyError, match="computed on version 5"):
        p.on_push(0, 5)


def test_bsp_rejects_a_double_push() -> None:
    p = StalenessPolicy(2, bound=0, aggregate=True)
    p.on_push(0, 0)
    with pytest.raises(PolicyError, match="twice"):
        p.on_push(0, 0)


def test_asp_staleness_counts_versions_applied_since() -> None:
    p = StalenessPolicy(3)
    assert p.on_push(0, 0).staleness == [0]
    assert p.on_push(1, 0).staleness == [1]
    assert p.on_push(2, 0).staleness == [2]
    assert p.may_pull(0)


@pytest.mark.parametrize("bound", [0, 1, 3])
def test_ssp_never_lets_a_worker_more_than_s_ahead(bound: int) -> None:
    p = StalenessPolicy(2, bound=bound)
    pushes = 0
    while p.may_pull(0):
        p.on_push(0, p.version)
        pushes += 1
        assert pushes <= bound + 1
    assert pushes == bound + 1
    p.on_push(1, p.version)
    assert p.may_pull(0)


def test_leaving_worker_closes_a_bsp_round_and_stops_blocking_ssp() -> None:
    p = StalenessPolicy(2, bound=0, aggregate=True)
    p.on_push(0, 0)
    assert p.leave(1) is not None
    assert p.may_pull(0)
    q = StalenessPolicy(2, bound=0)
    q.on_push(0, 0)
    assert not q.may_pull(0)
    q.leave(1)
    assert q.may_pull(0)
    with pytest.raises(PolicyError, match="has left"):
        q.on_push(1, 0)


def test_leader_is_lowest_loss_in_group_and_overall() -> None:
    board = LeaderBoard([[0, 1], [2, 3]])
    board.report(0, 0.5)
    board.report(1, 0.3)
    board.report(2, 0.9)
    assert board.report(3, 0.7) == (3, 1)
    assert board.leaders(0) == (1, 1)
    with pytest.raises(PolicyError):
        board.report(9, 0.1)
