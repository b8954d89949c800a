"""The one op driver (pslab.driver): the same spans whether the handlers block or yield events."""

from __future__ import annotations

from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import simpy

from pslab import ops
from pslab.driver import Handler, Run, drive, finish
from pslab.scenario import scenario_from_dict
from pslab.trace import Trace
from sim.executor import SimExecutor
from sim.run import simulate


def program() -> Generator[ops.Op, Any, None]:
    """Two iterations: a prefetched load, a compute, a pull; the results come back in."""
    pending = yield ops.Start(0, op=ops.Load(0))
    for i in range(2):
        yield ops.Iteration(i)
        loaded = yield ops.Wait(i, handles=(pending,))
        assert loaded == [f"batch {i}"]
        if i + 1 < 2:
            pending = yield ops.Start(i + 1, op=ops.Load(i + 1))
        loss = yield ops.Compute(i)
        assert loss == 0.5 * i
        version = yield ops.Pull(i)
        assert version == i + 1


# seconds each op takes on the simulated clock
COST = {"load": 3.0, "compute": 1.0, "pull": 0.5}


def result(op: ops.Op) -> tuple[Any, int]:
    return {
        "load": (f"batch {op.iteration}", 0),
        "compute": (0.5 * op.iteration, 0),
        "pull": (op.iteration + 1, 100),
    }[op.name]


class Ticks:
    """A clock for the blocking run: every read moves one tick on, so spans have an order."""

    def __init__(self) -> None:
        self.t = 0.0

    @property
    def now(self) -> float:
        self.t += 1.0
        return self.t


def blocking_handler(asked: list[str]):
    def handler(name: str) -> Handler:
        asked.append(name)

        def run(op: ops.Op) -> Generator[Any, Any, tuple[Any, int]]:
            return result(op)
            yield

        return run

    return handler


def test_a_blocking_executor_runs_the_program_to_its_end() -> None:
    trace, asked, marks = Trace("emu"), [], []
    pool = ThreadPoolExecutor(1)

    def join(futures: list[Future]) -> Run:
        return [f.result() for f in futures]
        yield

    finish(
        drive(
            program(),
            handler=blocking_handler(asked),
            spawn=lambda run, cat: pool.submit(finish, run),
            join=join,
            clock=Ticks(),
            trace=trace,
            role="worker-0",
            host="h0",
            on_iteration=marks.append,
        )
    )
    pool.shutdown()
    assert marks == [0, 1]
    assert sorted(asked) == ["compute", "load", "pull"]  # once per op type, not per op
    names = [(s.name, s.cat, s.iteration, s.blocking, s.nbytes) for s in trace.spans]
    assert names.count(("load", "io", 0, False, 0)) == 1  # started ops: not blocking
    assert names.count(("wait", "io", 1, True, 0)) == 1  # a wait on loads is I/O
    assert names.count(("pull", "comm", 1, True, 100)) == 1
    assert [s.iteration for s in trace.spans if s.name == "iteration"] == [0, 1]
    assert all(s.role == "worker-0" and s.host == "h0" for s in trace.spans)
    assert all(s.end > s.start for s in trace.spans)


def test_a_simpy_executor_overlaps_started_ops_with_the_program() -> None:
    env, trace = simpy.Environment(), Trace("sim")

    def handler(name: str) -> Handler:
        def run(op: ops.Op) -> Generator[simpy.Event, Any, tuple[Any, int]]:
            yield env.timeout(COST[op.name])
            return result(op)

        return run

    def join(procs: list[simpy.Process]) -> Run:
        done = yield env.all_of(procs)
        return [done[p] for p in procs]

    env.process(
        drive(
            program(),
            handler=handler,
            spawn=lambda run, cat: env.process(run),
            join=join,
            clock=env,
            trace=trace,
            role="worker-0",
            host="h0",
        )
    )
    env.run()
    spans = {(s.name, s.iteration): (s.start, s.end) for s in trace.spans}
    # load 1 (3 s) starts at 3, while compute 1 and pull 1 take 1.5 s: the wait shows the rest
    assert spans["load", 1] == (3.0, 6.0)
    assert spans["compute", 0] == (3.0, 4.0)
    assert spans["pull", 0] == (4.0, 4.5)
    assert spans["wait", 1] == (4.5, 6.0)
    assert spans["iteration", 0] == (0.0, 4.5)
    assert spans["iteration", 1] == (4.5, 7.5)  # the last one closes with the program
    assert env.now == 7.5


def test_a_handler_that_yields_cannot_run_in_a_blocking_executor() -> None:
    def handler(name: str) -> Handler:
        def run(op: ops.Op) -> Generator[Any, Any, tuple[Any, int]]:
            yield "an event"
            return None, 0

        return run

    def one() -> Generator[ops.Op, Any, None]:
        yield ops.Compute(0)

    def unused(*_: Any) -> Any:
        raise AssertionError("the program starts nothing")

    driven = drive(
        one(),
        handler=handler,
        spawn=unused,
        join=unused,
        clock=Ticks(),
        trace=Trace("emu"),
        role="worker-0",
        host="h0",
    )
    with pytest.raises(RuntimeError, match="yielded"):
        finish(driven)


# Iterations whose load and compute are waited for as one: every one, but in layered_sgd
# only the first (later, the last round's broadcast comes between them).
@pytest.mark.parametrize(
    ("algo", "merged"), [("sync_ps", 6), ("async_ps", 6), ("allreduce", 6), ("layered_sgd", 1)]
)
def test_delays_run_back_to_back_give_the_spans_of_one_wait_each(
    algo: str, merged: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A simulated worker's load and compute, waited for as one event, give every span and
    figure that a wait per op gives, to the bit, with one event less where they are next
    to each other."""
    data = {
        "name": f"delays-{algo}",
        "topology": {"preset": "cluster", "nodes": 4, "gpus_per_node": 2},
        "workload": {
            "model": {"params": "1M"},
            "compute_time": {"dist": "lognormal", "mean": "20ms", "cv": 0.3},
            "io_time": {"dist": "lognormal", "mean": "5ms", "cv": 0.3},
        },
        "algorithm": {"name": algo},
        "run": {"iterations": 6, "warmup": 1, "seed": 3},
    }
    scenario = scenario_from_dict(data, "<test>")
    ahead = simulate(scenario)
    monkeypatch.setattr(SimExecutor, "_delays", lambda self, role: {})
    one_by_one = simulate(scenario)

    def spans(result: Any) -> list[tuple[Any, ...]]:
        return sorted(result.trace.rows(), key=repr)

    assert spans(ahead) == spans(one_by_one)
    assert one_by_one.metrics["events"] - ahead.metrics["events"] == 8 * merged  # 8 workers
    for key in ("iteration_time_s", "compute_time_s", "io_time_s", "overlap_ratio"):
        assert ahead.metrics[key] == one_by_one.metrics[key], key
