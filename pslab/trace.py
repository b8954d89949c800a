"""One trace schema for both executors, in Chrome Trace Event form (opens in Perfetto).

Executors record spans while they run; metrics are computed from those
spans by :mod:`pslab.metrics`, the same function for simulated and measured
runs, so a metric cannot mean two things. A trace of a large run keeps a
sample of workers and iterations (said so in its metadata) so that writing it
never dominates the run, while metrics always cover everything.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import Any, overload

from pslab.span_args import SpanArgs


@dataclass(slots=True)
class SpanRecord:
    """A timed op on a role's lane. Times in seconds from the run's start.

    ``blocking`` is False for ops a role started without waiting (they show
    as async events and never count as exposed time). ``on_behalf`` names
    the workers whose communication this is when another role runs it.
    """

    role: str
    host: str
    name: str
    cat: str
    start: float
    end: float
    iteration: int = -1
    nbytes: int = 0
    blocking: bool = True
    on_behalf: tuple[str, ...] = ()
    args: dict[str, Any] | None = None

    @property
    def dur(self) -> float:
        return self.end - self.start


# A span as stored until its chunk is compacted: its lane's code (see SpanColumns), then
# SpanRecord's fields after the lane's four.
_Row = tuple[int, float, float, int, int, bool, tuple[str, ...], Any]
_CHUNK = 8192  # rows kept as tuples before they are packed into the columns
_Lane = tuple[str, str, str, str]  # role, host, span name, category
_Fields = tuple[str, str, str, str, float, float, int, int, bool, tuple[str, ...], Any]


class SpanColumns:
    """Every span of a trace, one array per field, for code that reads millions of them.

    ``lane`` indexes ``lanes`` (role, host, name, category); ``on_behalf`` is sparse
    (span index -> value), being empty on nearly every span; ``args`` are packed
    (:class:`pslab.span_args.SpanArgs`).
    A lane gets its code when it is first recorded (:meth:`code`), so a row
    carries one small int instead of four strings to look up when it is packed.
    """

    def __init__(self) -> None:
        self.lane = array("i")
        self.start = array("d")
        self.end = array("d")
        self.iteration = array("q")
        self.nbytes: list[int] = []  # the callers' own objects: an int stays an int
        self.blocking = array("b")
        self.on_behalf: dict[int, tuple[str, ...]] = {}
        self.args = SpanArgs()
        self.lanes: list[_Lane] = []
        self._lane_of: dict[_Lane, int] = {}
        self._new_lane = threading.Lock()  # the emulator records from several threads

    def __len__(self) -> int:
        return len(self.start)

    def code(self, role: str, host: str, name: str, cat: str) -> int:
        """The lane's code, given on its first span."""
        key = (role, host, name, cat)
        found = self._lane_of.get(key)
        if found is None:
            with self._new_lane:
                found = self._lane_of.get(key)
                if found is None:
                    found = self._lane_of[key] = len(self.lanes)
                    self.lanes.append(key)
        return found

    def pack(self, rows: list[_Row]) -> None:
        """Append ``rows``: C-level column copies."""
        base = len(self.start)
        lane, start, end, it, nbytes, blocking, behalf, args = zip(*rows, strict=True)
        self.lane.extend(lane)
        self.start.extend(start)
        self.end.extend(end)
        self.iteration.extend(it)
        self.nbytes.extend(nbytes)
        self.blocking.extend(blocking)
        for i in compress(range(len(rows)), behalf):
            self.on_behalf[base + i] = behalf[i]
        self.args.extend(args)

    def full(self, row: _Row) -> _Fields:
        """A row with its lane's four fields in place of its code: SpanRecord's fields."""
        return (*self.lanes[row[0]], *row[1:])  # type: ignore[return-value]

    def row(self, i: int) -> _Fields:
        role, host, name, cat = self.lanes[self.lane[i]]
        return (
            *(role, host, name, cat, self.start[i], self.end[i], self.iteration[i]),
            *(self.nbytes[i], bool(self.blocking[i]), self.on_behalf.get(i, ()), self.args.get(i)),
        )


class _Spans(Sequence[SpanRecord]):
    """``Trace.spans``: a read-only view that makes each SpanRecord when it is asked for."""

    def __init__(self, trace: Trace) -> None:
        self._trace = trace

    def __len__(self) -> int:
        columns, rows = self._trace._state
        return len(columns) + len(rows)

    @overload
    def __getitem__(self, i: int) -> SpanRecord: ...
    @overload
    def __getitem__(self, i: slice) -> list[SpanRecord]: ...
    def __getitem__(self, i: int | slice) -> SpanRecord | list[SpanRecord]:
        columns, rows = self._trace._state  # one read: a pack may swap it meanwhile
        packed, n = len(columns), len(columns) + len(rows)

        def one(k: int) -> SpanRecord:
            return SpanRecord(*(columns.row(k) if k < packed else columns.full(rows[k - packed])))

        if isinstance(i, slice):
            return [one(k) for k in range(*i.indices(n))]
        if not -n <= i < n:
            raise IndexError("span index out of range")
        return one(i % n)

    def __iter__(self) -> Iterator[SpanRecord]:
        for row in self._trace.rows():
            yield SpanRecord(*row)


class Trace:
    """Spans, counters and metadata of one run.

    A simulated run records millions of spans, so they are stored as columns
    (:class:`SpanColumns`), not one object each: a third of the memory, and
    metrics vectorise over them. ``spans`` still reads as a sequence of
    :class:`SpanRecord`, and ``add`` still takes one.
    """

    def __init__(
        self,
        source: str,  # "sim" or "emu"
        spans: Iterable[SpanRecord] = (),
        counters: list[tuple[str, str, float, dict[str, float]]] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.source = source
        self.counters = counters if counters is not None else []
        self.meta = meta if meta is not None else {}
        # (packed columns, rows not yet packed), swapped as one so that a reader on
        # another thread (the CLI's progress bar) never sees a row twice
        self._state: tuple[SpanColumns, list[_Row]] = (SpanColumns(), [])
        for span in spans:
            self.add(span)

    @property
    def spans(self) -> Sequence[SpanRecord]:
        return _Spans(self)

    def record(
        self,
        role: str,
        host: str,
        name: str,
        cat: str,
        start: float,
        end: float,
        iteration: int = -1,
        nbytes: int = 0,
        blocking: bool = True,
        on_behalf: tuple[str, ...] = (),
        args: dict[str, Any] | None = None,
    ) -> None:
        """Add a span from its fields (SpanRecord's, in order), without making the object."""
        lane = self._state[0].code(role, host, name, cat)
        self.record_in(lane, start, end, iteration, nbytes, blocking, on_behalf, args)

    def lane(self, role: str, host: str, name: str, cat: str) -> int:
        """The code of a lane, for :meth:`record_in`: a caller that records many spans on
        one lane (the driver, per op type) looks it up once."""
        return self._state[0].code(role, host, name, cat)

    def record_in(
        self,
        lane: int,
        start: float,
        end: float,
        iteration: int = -1,
        nbytes: int = 0,
        blocking: bool = True,
        on_behalf: tuple[str, ...] = (),
        args: dict[str, Any] | None = None,
    ) -> None:
        """Add a span on the lane ``lane`` (from :meth:`lane`); one tuple appended, which is
        atomic, so threads may record at once."""
        rows = self._state[1]
        rows.append((lane, start, end, iteration, nbytes, blocking, on_behalf, args))
        if len(rows) >= _CHUNK:
            self._pack()

    def add(self, span: SpanRecord) -> None:
        self.record(
            *(span.role, span.host, span.name, span.cat, span.start, span.end),
            *(span.iteration, span.nbytes, span.blocking, span.on_behalf, span.args),
        )

    def _pack(self) -> None:
        columns, rows = self._state
        if rows:
            columns.pack(rows)
            self._state = (columns, [])

    def columns(self) -> SpanColumns:
        """Every span so far, packed."""
        self._pack()
        return self._state[0]

    def rows(self) -> Iterator[_Fields]:
        """Every span's fields, in order, without making SpanRecords."""
        columns, rows = self._state
        for i in range(len(columns)):
            yield columns.row(i)
        for row in rows:
            yield columns.full(row)

    def counter(self, role: str, name: str, t: float, values: dict[str, float]) -> None:
        self.counters.append((role, name, t, values))

    def extend(self, other: Trace) -> None:
        for row in other.rows():
            self.record(*row)
        self.counters.extend(other.counters)

    def to_chrome(self, workers: int | None = None, iterations: int | None = None) -> dict:
        """Chrome Trace Event JSON, keeping the first ``workers`` workers and ``iterations``."""

        def kept(role: str, iteration: int) -> bool:
            if iterations is not None and iteration >= iterations:
                return False
            if workers is not None and role.startswith("worker-"):
                return int(role.split("-", 1)[1]) < workers
            return True

        pids: dict[str, int] = {}
        tids: dict[tuple[str, str], int] = {}
        events: list[dict[str, Any]] = []

        def lane(host: str, role: str) -> tuple[int, int]:
            if host not in pids:
                pids[host] = len(pids) + 1
                events.append(_meta("process_name", pids[host], 0, host))
            key = (host, role)
            if key not in tids:
                tids[key] = len(tids) + 1
                events.append(_meta("thread_name", pids[host], tids[key], role))
            return pids[host], tids[key]

        async_id = 0
        for role, host, name, cat, start, end, it, nbytes, blocking, behalf, extra in self.rows():
            if not kept(role, it):
                continue
            pid, tid = lane(host, role)
            args: dict[str, Any] = {"iteration": it}
            if nbytes:
                args["bytes"] = nbytes
            if behalf:
                args["for"] = list(behalf)
            if extra:
                args.update(extra)
            ts, dur = start * 1e6, (end - start) * 1e6
            common = {"name": name, "cat": cat, "pid": pid, "tid": tid, "args": args}
            if blocking:
                events.append({**common, "ph": "X", "ts": ts, "dur": dur})
            else:
                async_id += 1
                events.append({**common, "ph": "b", "ts": ts, "id": async_id})
                end_event = {k: v for k, v in common.items() if k != "args"}
                events.append({**end_event, "ph": "e", "ts": ts + dur, "id": async_id})
        for role, name, t, values in self.counters:
            host = next((h for (h, r) in tids if r == role), role)
            pid, _ = lane(host, role)
            events.append({"name": name, "ph": "C", "ts": t * 1e6, "pid": pid, "args": values})
        meta = dict(self.meta, source=self.source)
        if workers is not None or iterations is not None:
            meta["sample"] = {"workers": workers, "iterations": iterations}
        return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": meta}


def _meta(kind: str, pid: int, tid: int, name: str) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}


def _umask() -> int:
    """This process's umask, read without changing it where Linux says it (``os.umask`` can
    only be read by setting it, which races with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, data: Any, mode: int | None = None) -> None:
    """Write JSON so that a reader never sees a half-written file (temp, fsync, rename).

    The file gets ``mode``, by default what ``open()`` would give (0644 under the usual
    umask): ``mkstemp`` creates 0600, which left results unreadable to the rest of a team
    while ``scenario.yaml`` beside them was not. Pass ``0o600`` for anything secret.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode if mode is not None else 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=None if "trace" in path.name else 2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_spans(chrome: dict) -> Trace:
    """Read a Chrome trace written by :meth:`Trace.to_chrome` back into spans."""
    events = chrome["traceEvents"]
    hosts = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    roles = {
        (e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"
    }
    trace = Trace(chrome.get("otherData", {}).get("source", "?"), meta=chrome.get("otherData", {}))
    begins: dict[int, dict] = {}
    for e in events:
        ph = e["ph"]
        if ph == "b":
            begins[e["id"]] = e
            continue
        if ph not in ("X", "e"):
            continue
        b = begins.pop(e["id"]) if ph == "e" else e
        args = dict(b.get("args", {}))
        start = b["ts"] / 1e6
        end = e["ts"] / 1e6 if ph == "e" else start + e["dur"] / 1e6
        trace.add(
            SpanRecord(
                role=roles[(b["pid"], b["tid"])],
                host=hosts[b["pid"]],
                name=b["name"],
                cat=b["cat"],
                start=start,
                end=end,
                iteration=args.pop("iteration", -1),
                nbytes=args.pop("bytes", 0),
                blocking=ph == "X",
                on_behalf=tuple(args.pop("for", ())),
                args=args or None,
            )
        )
    return trace


class IterationMarks:
    """Turns a role's :class:`pslab.ops.Iteration` ops into ``iteration`` spans.

    Both executors feed it the same way, so an iteration means the same
    stretch of a lane in a simulated and a measured trace: from one mark to
    the next, the last one closed when the program ends.
    """

    def __init__(self, trace: Trace, role: str, host: str) -> None:
        self.trace = trace
        self._lane = trace.lane(role, host, "iteration", "iteration")
        self._open: tuple[int, float] | None = None

    def mark(self, iteration: int, now: float) -> None:
        self.close(now)
        self._open = (iteration, now)

    def close(self, now: float) -> None:
        if self._open is not None:
            it, start = self._open
            self.trace.record_in(self._lane, start, now, it)
            self._open = None


def wait_category(cats: set[str]) -> str:
    """A Wait on background loads is I/O; on anything else, communication."""
    return "io" if cats == {"io"} else "comm"
