"""The one loop that runs a role program: both executors supply op handlers, a clock, a trace.

A role program yields ops (:mod:`pslab.ops`); :func:`drive` answers each one and records
its span, so an op's span means the same stretch of a lane in a simulated and a measured
trace, and iteration marks, background ops (``Start``) and their ``Wait`` are handled once.
What an op *does* is the executor's: each handler is a generator,
``result, nbytes = yield from handler(op)``. The simulator's handlers yield SimPy events
and it runs :func:`drive` as a SimPy process; the emulator's handlers block instead and
never yield, and it runs the driver with :func:`finish`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Protocol

from pslab import ops
from pslab.trace import IterationMarks, Trace, wait_category

# What an executor's handler for one op type is: ``result, nbytes = yield from handler(op)``.
Handler = Callable[[Any], Generator[Any, Any, tuple[Any, int]]]
# A generator run for what it returns; what it yields is the executor's (SimPy events).
Run = Generator[Any, Any, Any]
# What ``Start`` gives the program for its ``Wait``: what the executor's ``spawn``
# returned (a SimPy process, a future) and the started op's category.
Handle = tuple[Any, str]
# What an executor's pure delay for one op type is: ``seconds = delay(op, start)``.
Delay = Callable[[Any, float], float]

_OWN = {ops.Iteration: "iteration", ops.Start: "start", ops.Wait: "wait"}


class Clock(Protocol):
    """Where the driver reads the time: a SimPy environment is one as it is."""

    @property
    def now(self) -> float: ...


def drive(
    program: Generator[ops.Op, Any, Any],
    *,
    handler: Callable[[str], Handler],
    spawn: Callable[[Run, str], Any],
    join: Callable[[list[Any]], Run],
    clock: Clock,
    trace: Trace,
    role: str,
    host: str,
    on_iteration: Callable[[int], None] | None = None,
    delay: Callable[[str], Delay | None] | None = None,
    wait_until: Callable[[float], Any] | None = None,
) -> Run:
    """Run ``program`` to its end, answering every op and recording its span.

    ``handler(name)``: the handler for ops named ``name``, asked once per op type.
    ``spawn(run, cat)``: start ``run`` (a started op, recording its own span) in the
    background and return what ``join`` waits on. ``join(spawned)``: wait for all of
    them; their results, in order. ``on_iteration``: called at every iteration mark.

    ``delay(name)``: for ops named ``name`` that are pure delays of this role (nothing
    another role sees, a result of ``None``), the function that books one starting at
    ``start`` and says how long it takes; ``None`` for the others. Such ops are not
    waited for one by one: the role's clock runs ahead of the executor's, and
    ``wait_until(t)`` (what a handler would yield, done at ``t``) is yielded once before
    the next op that is not one. A simulated worker's load and compute are one event,
    not two: a fifth of a straggling sync_ps's events, an eighth of async_ps's. Programs
    see only their ops' results, so running a program's code between two delays early
    changes nothing it can tell.

    The span of an op is inlined rather than a helper's, and recorded by one call to
    ``Trace.record_in`` on its lane, looked up once per op type: the simulator runs this
    loop on every op of every role, and a call or a frame less per op is measurable.
    """
    assert delay is None or wait_until is not None, "delay given without wait_until"
    marks = IterationMarks(trace, role, host)
    record = trace.record_in

    # Per op type: its handler (None for the driver's own ops), span name, its lane in
    # the trace, and whether its ops say on whose behalf they run (only then is it read).
    # Its pure delay, if it is one (``delay``).
    kinds: dict[type, tuple[Handler | None, str, int, bool, Delay | None]] = {}

    def kind(op: ops.Op) -> tuple[Handler | None, str, int, bool, Delay | None]:
        own = _OWN.get(type(op))
        behalf = hasattr(op, "on_behalf")
        if own:  # the driver records these itself, if at all
            found = kinds[type(op)] = (None, own, -1, behalf, None)
        else:
            lane = trace.lane(role, host, op.name, op.cat.value)
            pure = delay(op.name) if delay is not None else None
            found = kinds[type(op)] = (handler(op.name), op.name, lane, behalf, pure)
        return found

    def background(op: ops.Op) -> Run:
        """A started op: the same span as a blocking one, marked as not blocking."""
        run, name, lane, behalf, _ = kinds.get(type(op)) or kind(op)
        assert run is not None, f"{name} cannot be started in the background"
        start = clock.now
        result, nbytes = yield from run(op)
        on_behalf = op.on_behalf if behalf else ()  # type: ignore[attr-defined]
        record(lane, start, clock.now, op.iteration, nbytes, False, on_behalf)
        return result

    result: Any = None
    send = program.send
    ahead: float | None = None  # the role's clock, where its delays have run ahead
    while True:
        try:
            op = send(result)
        except StopIteration:
            break
        run, name, lane, behalf, pure = kinds.get(type(op)) or kind(op)
        if pure is not None:
            start = clock.now if ahead is None else ahead
            ahead = start + pure(op, start)  # the sum a wait per delay would reach
            on_behalf = op.on_behalf if behalf else ()  # type: ignore[attr-defined]
            record(lane, start, ahead, op.iteration, 0, True, on_behalf)
            result = None
            continue
        if ahead is not None:
            yield wait_until(ahead)  # type: ignore[misc]  # given with delay (checked above)
            ahead = None
        if run is not None:
            start = clock.now
            result, nbytes = yield from run(op)
            on_behalf = op.on_behalf if behalf else ()  # type: ignore[attr-defined]
            record(lane, start, clock.now, op.iteration, nbytes, True, on_behalf)
        elif name == "iteration":
            marks.mark(op.iteration, clock.now)
            if on_iteration is not None:
                on_iteration(op.iteration)
            result = None
        elif name == "start":
            inner = op.op  # type: ignore[attr-defined]
            assert inner is not None
            result = (spawn(background(inner), inner.cat.value), inner.cat.value)
        else:
            handles: tuple[Handle, ...] = op.handles  # type: ignore[attr-defined]
            start = clock.now
            result = yield from join([h[0] for h in handles])
            cat = wait_category({h[1] for h in handles})
            trace.record(role, host, "wait", cat, start, clock.now, op.iteration, 0, True, ())
    if ahead is not None:
        yield wait_until(ahead)  # type: ignore[misc]
    marks.close(clock.now)


def finish(run: Run) -> Any:
    """What a generator that never yields returns: the emulator's ops block, never yield."""
    try:
        run.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("an op handler yielded, but this executor's handlers block instead")
