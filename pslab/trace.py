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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


@dataclass
class Trace:
    source: str  # "sim" or "emu"
    spans: list[SpanRecord] = field(default_factory=list)
    counters: list[tuple[str, str, float, dict[str, float]]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, span: SpanRecord) -> None:
        self.spans.append(span)

    def counter(self, role: str, name: str, t: float, values: dict[str, float]) -> None:
        self.counters.append((role, name, t, values))

    def extend(self, other: Trace) -> None:
        self.spans.extend(other.spans)
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
        for s in self.spans:
            if not kept(s.role, s.iteration):
                continue
            pid, tid = lane(s.host, s.role)
            args: dict[str, Any] = {"iteration": s.iteration}
            if s.nbytes:
                args["bytes"] = s.nbytes
            if s.on_behalf:
                args["for"] = list(s.on_behalf)
            if s.args:
                args.update(s.args)
            ts, dur = s.start * 1e6, s.dur * 1e6
            common = {"name": s.name, "cat": s.cat, "pid": pid, "tid": tid, "args": args}
            if s.blocking:
                events.append({**common, "ph": "X", "ts": ts, "dur": dur})
            else:
                async_id += 1
                events.append({**common, "ph": "b", "ts": ts, "id": async_id})
                end = {k: v for k, v in common.items() if k != "args"}
                events.append({**end, "ph": "e", "ts": ts + dur, "id": async_id})
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
        self.trace, self.role, self.host = trace, role, host
        self._open: tuple[int, float] | None = None

    def mark(self, iteration: int, now: float) -> None:
        self.close(now)
        self._open = (iteration, now)

    def close(self, now: float) -> None:
        if self._open is not None:
            it, start = self._open
            self.trace.add(
                SpanRecord(self.role, self.host, "iteration", "iteration", start, now, it)
            )
            self._open = None


def wait_category(cats: set[str]) -> str:
    """A Wait on background loads is I/O; on anything else, communication."""
    return "io" if cats == {"io"} else "comm"
