"""A shard's durable state: periodic checkpoints plus a journal of what came since.

An acknowledged push must survive a crash of its server. Of the two ways, the server makes
each push durable *before* acknowledging it (the other, workers keeping and replaying what
the checkpoint lacks, needs every worker to hold its unconfirmed gradients and a replay
protocol per consistency model). A push accepted by the policy is appended to the journal
and fsynced, and only then applied and answered; a checkpoint (parameters, momentum,
policy, the per-worker push ids, counters) is written every N versions or T seconds, after
which the journal starts afresh. Resuming loads the checkpoint and replays the journal
through the same code path that handled the pushes, in their original order, so the
restarted server holds bitwise what the dead one had acknowledged, including a BSP round
left half full. The cost is one journal write and fsync per push (see ``journal_seconds``
in the server's Stats and the soak benchmark).

Files in the directory: ``checkpoint.npz`` (replaced atomically: temp file, fsync, rename,
fsync of the directory) and ``journal-G.log``, G the checkpoint's generation, in the format
of :mod:`grpc_ps.journal`. Nothing is trusted unread: a checkpoint that does not load, does
not match the shard it is resumed into (sizes, workers, momentum, policy) or holds a
non-finite value, and a journal that does not prove itself, are :class:`CheckpointError`
naming the file (``pslab serve`` exits 2), and nothing is changed. Only a record cut short
by a crash (never acknowledged) is cut off; records the operator discards
(``discard_after``) are kept aside in ``discarded-G-N.log``.
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from grpc_ps import journal
from grpc_ps.journal import CRC, HEAD, MAX_ID, JournalCorrupt, Record

CHECKPOINT = "checkpoint.npz"
_SCALARS = ("version", "generation", "next_seq")
_LISTS = ("clock", "live", "last_iteration", "counters")


class JournalError(OSError):
    """A record that could not be made durable: the push it carries must be refused."""


class CheckpointError(ValueError):
    """State on disk that cannot be resumed from, and why (the file named)."""


@dataclass
class State:
    """Everything a shard needs to carry on: what a checkpoint holds."""

    params: np.ndarray
    velocity: np.ndarray | None
    version: int
    clock: list[int]  # the policy's pushes per worker
    live: list[int]  # workers that have not left
    last_iteration: list[int]  # per worker, the last push id accepted (-1: none)
    received: int
    applied: int
    policy: str  # the policy that wrote it, e.g. "aggregate=True bound=None"


@dataclass(frozen=True)
class Shape:
    """What the shard resuming a checkpoint is: the checkpoint must match it."""

    length: int
    n_workers: int
    momentum: bool
    policy: str


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Checkpoints and the journal of one shard, in ``directory``.

    ``discard_after``: on resume, replay journal records 0..N only (the operator's answer
    to a journal that does not prove itself); None replays all, and refuses a bad one.
    """

    def __init__(
        self,
        directory: Path,
        every_versions: int = 100,
        every_seconds: float = 30.0,
        discard_after: int | None = None,
    ) -> None:
        if every_versions < 1 or every_seconds <= 0:
            raise ValueError("checkpoint intervals must be positive")
        if discard_after is not None and discard_after < -1:
            raise ValueError(f"discard_after {discard_after}: a record number, or -1 for none")
        self.directory = directory
        self.every_versions, self.every_seconds = every_versions, every_seconds
        self.discard_after = discard_after
        self.generation = 0
        self._seq = 0  # the next record's sequence number
        self._log: BinaryIO | None = None  # the open journal file
        self._broken = ""  # why appends are refused, once a failed record could not be cut
        self._last_version = 0
        self._last_time = time.monotonic()
        self.checkpoints = 0
        self.checkpoint_seconds = 0.0
        self.journal_seconds = 0.0

    def _journal_path(self, generation: int) -> Path:
        return self.directory / f"journal-{generation}.log"

    def exists(self) -> bool:
        return (self.directory / CHECKPOINT).exists()

    # -- writing --------------------------------------------------------------------------

    def due(self, version: int) -> bool:
        """A checkpoint is due: N versions or T seconds (with some progress) since the last."""
        if version - self._last_version >= self.every_versions:
            return True
        return version > self._last_version and (
            time.monotonic() - self._last_time >= self.every_seconds
        )

    def checkpoint(self, state: State) -> None:
        """Write ``state`` atomically, then start an empty journal and drop the old one."""
        start = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        generation = self.generation + 1
        arrays = {
            "params": state.params,
            "version": np.int64(state.version),
            "clock": np.asarray(state.clock, np.int64),
            "live": np.asarray(state.live, np.int64),
            "last_iteration": np.asarray(state.last_iteration, np.int64),
            "counters": np.asarray([state.received, state.applied], np.int64),
            "generation": np.int64(generation),
            "next_seq": np.int64(self._seq),
            "policy": np.asarray(state.policy),
        }
        if state.velocity is not None:
            arrays["velocity"] = state.velocity
        tmp = self.directory / f"{CHECKPOINT}.tmp"
        with tmp.open("wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / CHECKPOINT)
        _fsync_dir(self.directory)
        self._open(generation)
        self._last_version, self._last_time = state.version, time.monotonic()
        self.checkpoints += 1
        self.checkpoint_seconds += time.perf_counter() - start

    def _open(self, generation: int) -> None:
        """Journal into generation ``generation`` from now on; older journals are covered."""
        if self._log is not None:
            self._log.close()
        self._log = self._journal_path(generation).open("ab", buffering=0)
        self._broken = ""
        _fsync_dir(self.directory)
        for old in self.directory.glob("journal-*.log"):
            if old.name != self._journal_path(generation).name:
                old.unlink()
        self.generation = generation

    def append(self, record: Record) -> None:
        """Make ``record`` durable: written and fsynced before the caller acknowledges it.

        All or nothing: a record that fails to be written or synced (a full disk, an I/O
        error) is cut off again and :class:`JournalError` raised, so the journal holds
        exactly the records that were acknowledged, in unbroken sequence. If even the cut
        fails, the journal refuses every later append rather than corrupt.
        """
        if self._log is None or self._log.closed:
            raise JournalError("the journal is not open: checkpoint() or load() first")
        if self._broken:
            raise JournalError(f"{self._log.name} is unusable since: {self._broken}")
        journal.check_record(record)
        start = time.perf_counter()
        head, tail = journal.encode(self._seq, record)
        fd = self._log.fileno()
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            for part in (head, record.data, tail):
                journal.write_all(fd, part)
            os.fsync(fd)
        except OSError as e:
            self._cut(fd, end, e)
            raise JournalError(f"journal write failed ({e.strerror or e}); nothing recorded") from e
        finally:
            self.journal_seconds += time.perf_counter() - start
        self._seq += 1

    def _cut(self, fd: int, end: int, error: OSError) -> None:
        """Drop a partly written record; on failure, mark the journal unusable."""
        try:
            os.ftruncate(fd, end)
            os.fsync(fd)
        except OSError as e:
            self._broken = f"a failed write ({error}) could not be cut off ({e})"

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- reading --------------------------------------------------------------------------

    def load(self, shape: Shape) -> State:
        """The last checkpoint, checked against ``shape``; then :meth:`replay` the journal."""
        state, self.generation, self._seq = read_checkpoint(self.directory / CHECKPOINT, shape)
        self._last_version, self._last_time = state.version, time.monotonic()
        return state

    def replay(self, max_bytes: int, buffer: Callable[[int], memoryview]) -> Iterator[Record]:
        """The journal's records after the checkpoint, streamed (see :func:`journal.read`);
        once all are read, the journal is open for appends after them.

        Raises :class:`CheckpointError` for a journal that does not prove itself, having
        changed nothing on disk.
        """
        path = self._journal_path(self.generation)
        end = 0
        if path.exists():
            records = journal.read(path, self._seq, max_bytes, buffer, self.discard_after)
            try:
                for record in records:
                    yield record
                    end += HEAD + len(record.data) + CRC.size
                    self._seq += 1
            except JournalCorrupt as e:
                raise CheckpointError(str(e)) from None
            self._set_aside(path, end)
        self._open(self.generation)

    def _set_aside(self, path: Path, end: int) -> None:
        """Cut the journal after its last replayed record. Past it is either a record a
        crash cut short (never acknowledged: dropped) or what ``discard_after`` discarded
        (kept in ``discarded-G-N.log``)."""
        if path.stat().st_size == end:
            return
        if self.discard_after is not None:
            kept = self.directory / f"discarded-{self.generation}-{self.discard_after + 1}.log"
            with path.open("rb") as src, kept.open("wb") as dst:
                src.seek(end)
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
        with path.open("r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())


def read_checkpoint(path: Path, shape: Shape) -> tuple[State, int, int]:
    """The state in ``path``, its generation and next sequence number, every field checked."""

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{path}: {why}; not resumed, nothing changed")

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise bad(f"not a readable checkpoint ({e or type(e).__name__})") from None
    missing = [k for k in ("params", "policy", *_SCALARS, *_LISTS) if k not in arrays]
    if missing:
        raise bad(f"no {', '.join(missing)} (written by an older pslab, or damaged)")
    ints = {k: arrays[k] for k in (*_SCALARS, *_LISTS)}
    if any(v.dtype != np.int64 for v in ints.values()):
        raise bad("a counter is not an int64")
    policy = str(arrays["policy"])
    if policy != shape.policy:
        raise bad(f"written under policy {policy!r}; this scenario's is {shape.policy!r}")
    _check_array(arrays["params"], shape.length, "params", bad)
    velocity = arrays.get("velocity")
    if (velocity is not None) != shape.momentum:
        raise bad(f"momentum {'held' if velocity is not None else 'absent'}; the scenario differs")
    if velocity is not None:
        _check_array(velocity, shape.length, "velocity", bad)
    version, generation, next_seq = (int(ints[k]) for k in _SCALARS)
    clock, live, last = (ints[k].tolist() for k in ("clock", "live", "last_iteration"))
    counters = ints["counters"].tolist()
    n = shape.n_workers
    checks = [
        (version >= 0 and generation >= 1 and next_seq >= 0, "a negative version or sequence"),
        (len(clock) == n and min(clock) >= 0, f"clock is not {n} push counts"),
        (len(last) == n and all(-1 <= i <= MAX_ID for i in last), f"push ids not {n} in range"),
        (all(0 <= w < n for w in live) and len(set(live)) == len(live), "live: not workers"),
        (len(counters) == 2 and 0 <= counters[1] <= counters[0], "counters out of order"),
    ]
    for ok, why in checks:
        if not ok:
            raise bad(why)
    state = State(arrays["params"], velocity, version, clock, live, last, *counters, policy)
    return state, generation, next_seq


def _check_array(
    a: np.ndarray, length: int, name: str, bad: Callable[[str], CheckpointError]
) -> None:
    if a.dtype != np.float32 or a.shape != (length,):
        raise bad(f"{name} is {a.dtype} {a.shape}, the shard float32 ({length},)")
    if not np.isfinite(a.sum(dtype=np.float64)):
        raise bad(f"{name} holds NaN or Inf")
