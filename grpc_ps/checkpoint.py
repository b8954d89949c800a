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
fsync of the directory) and ``journal-G.log``, G the checkpoint's generation. A journal
record is a fixed header, the data and a CRC32; a record cut short by a crash was never
acknowledged, so replay stops at the first incomplete or corrupt one.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

CHECKPOINT = "checkpoint.npz"
PUSH, LEAVE = 1, 2
_HEADER = struct.Struct("<BIqQBQ")  # kind, worker, iteration, computed_on, mode, data bytes
_CRC = struct.Struct("<I")
MAX_ID = 2**63 - 2  # push ids: the header's signed int64, and id + 1 still a valid int64
MAX_WORKER = 2**32 - 1


class JournalError(OSError):
    """A record that could not be made durable: the push it carries must be refused."""


def check_record(record: Record) -> None:
    """Refuse a record whose fields do not fit the header, before anything is written."""
    if not 0 <= record.worker <= MAX_WORKER:
        raise ValueError(f"worker {record.worker} is not in 0..{MAX_WORKER}")
    if not 0 <= record.iteration <= MAX_ID:
        raise ValueError(f"push id {record.iteration} is not in 0..{MAX_ID}")
    if not 0 <= record.computed_on < 2**64:
        raise ValueError(f"computed_on {record.computed_on} is not a uint64")


def _write_all(fd: int, data: memoryview) -> None:
    """os.write until all of ``data`` is written (a write may be short)."""
    while data:
        data = data[os.write(fd, data) :]


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


@dataclass
class Record:
    kind: int
    worker: int
    iteration: int = 0
    computed_on: int = 0
    mode: int = 0
    data: bytes = b""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Checkpoints and the journal of one shard, in ``directory``."""

    def __init__(
        self, directory: Path, every_versions: int = 100, every_seconds: float = 30.0
    ) -> None:
        if every_versions < 1 or every_seconds <= 0:
            raise ValueError("checkpoint intervals must be positive")
        self.directory = directory
        self.every_versions, self.every_seconds = every_versions, every_seconds
        self.generation = 0
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
        exactly the records that were acknowledged and later appends stay readable (replay
        stops at the first bad record, which would hide every record after a torn one). If
        even the cut fails, the journal refuses every later append rather than corrupt.
        """
        if self._log is None or self._log.closed:
            raise JournalError("the journal is not open: checkpoint() or load() first")
        if self._broken:
            raise JournalError(f"{self._log.name} is unusable since: {self._broken}")
        check_record(record)
        start = time.perf_counter()
        header = _HEADER.pack(
            record.kind,
            record.worker,
            record.iteration,
            record.computed_on,
            record.mode,
            len(record.data),
        )
        crc = zlib.crc32(record.data, zlib.crc32(header))
        fd = self._log.fileno()
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            for part in (header, record.data, _CRC.pack(crc)):
                _write_all(fd, memoryview(part).cast("B"))
            os.fsync(fd)
        except OSError as e:
            self._cut(fd, end, e)
            raise JournalError(f"journal write failed ({e.strerror or e}); nothing recorded") from e
        finally:
            self.journal_seconds += time.perf_counter() - start

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

    def load(self, max_bytes: int) -> tuple[State, list[Record]]:
        """The last checkpoint and the journal records after it; journal from here on.

        ``max_bytes`` bounds a record's data (a shard's size), so a corrupt length cannot
        make replay allocate without limit.
        """
        with np.load(self.directory / CHECKPOINT, allow_pickle=False) as z:
            received, applied = (int(v) for v in z["counters"])
            state = State(
                params=np.array(z["params"]),
                velocity=np.array(z["velocity"]) if "velocity" in z else None,
                version=int(z["version"]),
                clock=[int(v) for v in z["clock"]],
                live=[int(v) for v in z["live"]],
                last_iteration=[int(v) for v in z["last_iteration"]],
                received=received,
                applied=applied,
            )
            generation = int(z["generation"])
        path = self._journal_path(generation)
        records: list[Record] = []
        if path.exists():
            records = list(_records(path.read_bytes(), max_bytes))
            with path.open("r+b") as f:  # drop a torn tail: it was never acknowledged
                f.truncate(sum(_HEADER.size + len(r.data) + _CRC.size for r in records))
        self._open(generation)
        self._last_version, self._last_time = state.version, time.monotonic()
        return state, records


def _records(raw: bytes, max_bytes: int) -> Iterator[Record]:
    pos = 0
    while pos + _HEADER.size <= len(raw):
        header = raw[pos : pos + _HEADER.size]
        kind, worker, iteration, computed_on, mode, size = _HEADER.unpack(header)
        end = pos + _HEADER.size + size
        if size > max_bytes or end + _CRC.size > len(raw):
            return
        data = raw[pos + _HEADER.size : end]
        (crc,) = _CRC.unpack(raw[end : end + _CRC.size])
        if crc != zlib.crc32(data, zlib.crc32(header)):
            return
        yield Record(kind, worker, iteration, computed_on, mode, data)
        pos = end + _CRC.size
