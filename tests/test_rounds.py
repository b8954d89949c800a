"""The servers' round logic (pslab.rounds): BSP sums, the newest publication, leader barriers."""

from __future__ import annotations

import numpy as np
import pytest

from pslab.policies import PolicyError, StalenessPolicy
from pslab.rounds import LeaderRounds, Publications, RoundSum


def test_a_bsp_round_sums_in_arrival_order_and_applies_once_it_closes() -> None:
    policy, rounds = StalenessPolicy(3, aggregate=True), RoundSum[np.ndarray](True)
    parts = [np.full(2, v, np.float32) for v in (1.0, 2.0, 4.0)]
    first = parts[0]
    due, taken = rounds.add(first, "grad", 7, policy.on_push(0, 0))
    assert (due, taken) == (None, True)  # the first push is the sum: taken, not copied
    assert rounds.open and rounds.parts(parts[1])[1] == 2
    due, taken = rounds.add(parts[1], "grad", 8, policy.on_push(1, 0))
    assert (due, taken) == (None, False)  # added in place: the caller may reuse it
    due, taken = rounds.add(parts[2], "grad", 9, policy.on_push(2, 0))
    assert due is not None and not taken
    assert due.total is first and due.total.tolist() == [7.0, 7.0]
    assert (due.count, due.mode, due.iteration, due.done.version) == (3, "grad", 7, 1)
    assert not rounds.open and rounds.parts(parts[0]) == ([parts[0]], 1)


def test_a_round_refuses_a_push_of_another_mode_before_changing_anything() -> None:
    rounds = RoundSum[np.ndarray](True)
    rounds.add(np.ones(2, np.float32), "grad", 0, None)
    with pytest.raises(PolicyError, match="a delta push in a round of grad pushes"):
        rounds.check("delta")
    with pytest.raises(PolicyError):
        rounds.add(np.ones(2, np.float32), "delta", 0, None)
    assert (rounds.count, rounds.mode) == (1, "grad")


def test_a_leave_closes_the_open_round_as_one_update() -> None:
    policy, rounds = StalenessPolicy(2, aggregate=True), RoundSum[np.ndarray](True)
    rounds.add(np.ones(2, np.float32), "delta", 3, policy.on_push(0, 0))
    done = policy.leave(1)
    assert done is not None
    due = rounds.close(done)
    assert (due.count, due.mode, due.iteration, due.done.workers) == (1, "delta", 3, [0])
    assert not rounds.open


def test_without_aggregation_every_push_is_its_own_update() -> None:
    policy, rounds = StalenessPolicy(2), RoundSum[np.ndarray](False)
    for worker, iteration in ((0, 0), (1, 0), (0, 1)):
        part = np.full(2, float(worker), np.float32)
        due, taken = rounds.add(part, "grad", iteration, policy.on_push(worker, 0))
        assert taken and due is not None and due.total is part
        assert (due.count, due.iteration) == (1, iteration)
        assert not rounds.open


def test_the_newest_published_round_wins() -> None:
    held = Publications[str]()
    assert not held.ready("global", 0)
    assert held.publish("global", 2, "two")
    assert not held.publish("global", 1, "one")  # a late copy of an older round is dropped
    assert held.get("global") == (2, "two")
    assert held.publish("global", 2, "two again")  # the same round replaces it
    assert held.ready("global", 2) and not held.ready("global", 3)
    assert dict(held.items()) == {"global": (2, "two again")}


def test_a_synchronous_round_is_answered_as_its_last_report_found_the_losses() -> None:
    leaders = LeaderRounds([[0, 1], [2]], sync=True)
    assert not leaders.report(0, 3, 0.5)
    assert not leaders.report(2, 3, 0.1)
    assert not leaders.ready(0, 3)
    assert leaders.report(1, 3, 0.9)  # the round's last report decides everyone's answer
    assert leaders.answer(2, 3) == (2, 2)
    # a fast worker's next report changes the losses before a slow one collects its answer
    assert not leaders.report(2, 4, 9.0)
    assert leaders.answer(0, 3) == (0, 2)  # still the round's answer: worker 2 led then
    assert leaders.answer(1, 3) == (0, 2)
    assert not leaders.ready(1, 3)  # handed out once


def test_an_asynchronous_report_is_answered_as_the_losses_stood_on_arrival() -> None:
    leaders = LeaderRounds([[0, 1]], sync=False)
    assert leaders.report(0, 1, 0.5)
    assert leaders.report(1, 1, 0.2)
    assert leaders.answer(0, 1) == (0, 0)  # only its own loss was in when it arrived
    assert leaders.answer(1, 1) == (1, 1)


def test_an_unknown_worker_changes_nothing() -> None:
    leaders = LeaderRounds([[0, 1]], sync=True)
    with pytest.raises(PolicyError):
        leaders.report(5, 0, 0.1)
    assert not leaders.report(0, 0, 0.3)
    assert leaders.report(1, 0, 0.4)
    assert leaders.answer(1, 0) == (0, 0)
