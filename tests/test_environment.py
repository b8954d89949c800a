"""The simulator's environment: its alarm rings exactly where its event would be processed."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from sim.environment import CountingEnvironment
from sim.flow_events import LATE


def test_an_alarm_rings_after_the_normal_events_of_its_instant_and_before_later_ones() -> None:
    env = CountingEnvironment()
    seen: list[tuple[str, float]] = []

    def proc(name: str, delay: float) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(delay)
        seen.append((name, env.now))

    env.process(proc("early", 1.0))
    env.process(proc("same instant", 2.0))
    env.process(proc("later", 3.0))
    env.alarm(2.0, LATE, lambda: seen.append(("alarm", env.now)))
    env.run()
    assert seen == [("early", 1.0), ("same instant", 2.0), ("alarm", 2.0), ("later", 3.0)]
    assert env.events_processed == 3 * 3 + 1  # start, timeout, end; the alarm counts too


def test_a_new_alarm_replaces_the_old_and_off_silences_it() -> None:
    env = CountingEnvironment()
    rung: list[str] = []
    env.alarm(1.0, LATE, lambda: rung.append("first"))
    env.alarm(2.0, LATE, lambda: rung.append("second"))
    env.run()
    assert rung == ["second"] and env.now == 2.0
    env.alarm(1.0, LATE, lambda: rung.append("third"))
    env.alarm_off()
    env.run()
    assert rung == ["second"] and env.now == 2.0


def test_run_until_step_and_peek_see_the_alarm() -> None:
    env = CountingEnvironment()
    rung: list[float] = []
    env.alarm(1.5, LATE, lambda: rung.append(env.now))
    assert env.peek() == 1.5
    env.run(until=1.0)  # stops before it
    assert rung == [] and env.now == 1.0
    env.run(until=2.0)
    assert rung == [1.5] and env.now == 2.0
    fresh = CountingEnvironment()
    fresh.alarm(0.5, LATE, lambda: rung.append(fresh.now))
    fresh.step()
    assert rung == [1.5, 0.5] and fresh.peek() == float("inf")
