"""The calibration's yardstick: an op timed against how long it idled first."""

from __future__ import annotations

import time

from grpc_ps.timing import RAMP_GAPS_S, costs_after_gaps


def test_each_gap_is_timed_after_that_gap_and_the_gaps_take_turns() -> None:
    """An op that costs 2 ms after 5 ms idle and nothing otherwise: every gap's median says
    so, whichever gap ran before it (turns, not blocks: the 0-gap call follows a 40 ms one)."""
    last = [time.perf_counter()]
    order: list[int] = []

    def op(i: int) -> None:
        order.append(i)
        if time.perf_counter() - last[0] >= 0.005:
            time.sleep(0.002)
        last[0] = time.perf_counter()

    costs = costs_after_gaps(op, rounds=3)
    assert len(costs) == len(RAMP_GAPS_S)
    for gap, cost in zip(RAMP_GAPS_S, costs, strict=True):
        assert (cost > 0.0015) == (gap >= 0.005), (gap, cost)
    timed = order[20:]  # after the warm-up calls
    assert timed == sorted(set(timed)) and len(timed) == 3 * len(RAMP_GAPS_S)


def test_what_a_run_does_before_the_op_is_done_after_the_gap_and_not_timed() -> None:
    """A compute op starts on the batch its load fetched after the load's sleep: the fetch
    (here 3 ms) runs after each gap, on the same call, and is not in the op's time."""
    events: list[tuple[str, int]] = []

    def fetch(i: int) -> None:
        events.append(("fetch", i))
        time.sleep(0.003)

    def op(i: int) -> None:
        assert events[-1] == ("fetch", i)
        events.append(("op", i))

    costs = costs_after_gaps(op, rounds=2, prepare=fetch)
    assert max(costs) < 0.0015
    assert len(events) == 2 * (20 + 2 * len(RAMP_GAPS_S))
