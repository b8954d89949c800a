"""The journal's record format: sequence-numbered, checksummed, read back as a stream.

A record is a header (sequence number, kind, worker, push id, computed-on version, mode,
data size) with its own CRC32, then the data with its CRC32. The header's CRC is checked
before its size is trusted, so a corrupt length can neither make a reader allocate nor
skip records unnoticed. Sequence numbers run on across checkpoints (the checkpoint names
the first one its journal holds), so a missing record is a gap, not silence.

Reading proves the journal or names what is wrong with it: a record cut short at the end
of the file (or a tail of zeros) is a push whose write a crash interrupted, never
acknowledged, and is skipped;
anything else (a bad CRC, a gap, a record that does not parse) raises
:class:`JournalCorrupt` with the file, the record, and the acknowledged pushes that would
be lost, and nothing is replayed past it unless the operator says up to where
(``discard_after``). Records are read one at a time, their data straight into a buffer the
caller gives, so a resume holds one record, never the whole journal.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PUSH, LEAVE = 1, 2
HEADER = struct.Struct("<QBIqQBQ")  # seq, kind, worker, iteration, computed_on, mode, size
CRC = struct.Struct("<I")
MAX_ID = 2**63 - 2  # push ids: the header's signed int64, and id + 1 still a valid int64
MAX_WORKER = 2**32 - 1


class JournalCorrupt(ValueError):
    """A journal that does not prove itself: resuming from it would lose acknowledged pushes."""


@dataclass
class Record:
    kind: int
    worker: int
    iteration: int = 0
    computed_on: int = 0
    mode: int = 0
    data: bytes | memoryview = b""


def check_record(record: Record) -> None:
    """Refuse a record whose fields do not fit the header, before anything is written."""
    if not 0 <= record.worker <= MAX_WORKER:
        raise ValueError(f"worker {record.worker} is not in 0..{MAX_WORKER}")
    if not 0 <= record.iteration <= MAX_ID:
        raise ValueError(f"push id {record.iteration} is not in 0..{MAX_ID}")
    if not 0 <= record.computed_on < 2**64:
        raise ValueError(f"computed_on {record.computed_on} is not a uint64")


def encode(seq: int, record: Record) -> tuple[bytes, bytes]:
    """The bytes before and after the record's data: header and its CRC; the data's CRC."""
    header = HEADER.pack(
        seq,
        record.kind,
        record.worker,
        record.iteration,
        record.computed_on,
        record.mode,
        len(record.data),
    )
    return header + CRC.pack(zlib.crc32(header)), CRC.pack(zlib.crc32(record.data))


HEAD = HEADER.size + CRC.size  # bytes before a record's data


def _read_into(f: BinaryIO, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def read(
    path: Path,
    first_seq: int,
    max_bytes: int,
    buffer: Callable[[int], memoryview],
    discard_after: int | None = None,
) -> Iterator[Record]:
    """The records of ``path``, in order, checked; see the module docstring.

    ``first_seq``: the sequence number the checkpoint says the journal starts at.
    ``buffer(n)``: a writable view of ``n`` bytes to read a record's data into (the record
    yielded holds it until the next one is asked for). ``discard_after``: replay records
    0..N only and ignore what follows, whatever it holds (the operator's decision, after
    an error named N + 1).
    """
    size = path.stat().st_size
    with path.open("rb", buffering=1 << 16) as f:
        index, pos = 0, 0
        while pos < size:
            if discard_after is not None and index > discard_after:
                return
            problem, record = _next(f, size - pos, first_seq + index, max_bytes, buffer)
            if record is None and not problem:  # cut short by a crash: never acknowledged
                return
            if problem and _zeros(f, pos):  # a zero-filled tail: a write the crash cut short
                return
            if problem:
                raise JournalCorrupt(_lost(path, index, pos, size, max_bytes, problem))
            assert record is not None
            yield record
            pos += HEAD + len(record.data) + CRC.size
            index += 1


def _next(
    f: BinaryIO, left: int, seq: int, max_bytes: int, buffer: Callable[[int], memoryview]
) -> tuple[str, Record | None]:
    """One record: ("", record); ("", None) if the file ends inside it; (problem, None)."""
    head = f.read(HEAD)
    if len(head) < HEAD:
        return "", None
    header, (crc,) = head[: HEADER.size], CRC.unpack(head[HEADER.size :])
    if crc != zlib.crc32(header):
        return "its header fails its CRC", None
    got_seq, kind, worker, iteration, computed_on, mode, n = HEADER.unpack(header)
    if kind not in (PUSH, LEAVE) or n > max_bytes:
        return f"kind {kind} with {n} bytes of data is not a record of this shard", None
    if HEAD + n + CRC.size > left:  # a sound header whose data the file lacks: cut short
        return "", None
    if got_seq != seq:
        missing = f"records {seq}..{got_seq - 1} are missing" if got_seq > seq else "out of order"
        return f"it has sequence number {got_seq}, expected {seq}: {missing}", None
    data = buffer(n) if n else memoryview(b"")
    tail = bytearray(CRC.size)
    if _read_into(f, data) < n or _read_into(f, memoryview(tail)) < CRC.size:
        return "", None
    if CRC.unpack(tail)[0] != zlib.crc32(data):
        return "its data fails its CRC", None
    return "", Record(kind, worker, iteration, computed_on, mode, data)


def _zeros(f: BinaryIO, pos: int) -> bool:
    """Is the file all zeros from ``pos`` on? (Read in blocks: only on a bad record.)"""
    f.seek(pos)
    while block := f.read(1 << 20):
        if block.count(0) != len(block):
            return False
    return True


def _lost(path: Path, index: int, pos: int, size: int, max_bytes: int, problem: str) -> str:
    after = size - pos
    pushes = max(1, round(after / (HEAD + max_bytes + CRC.size)))
    keep = (
        f"--resume --discard-after {index - 1} resumes from records 0..{index - 1} and drops "
        "the rest"
        if index
        else "--resume --discard-after -1 resumes from the checkpoint alone"
    )
    return (
        f"{path}: record {index} (at byte {pos}) is bad: {problem}. The {after} bytes from "
        f"there on (about {pushes} pushes of this shard) hold acknowledged pushes that a resume "
        "would lose, so none is replayed and "
        f"nothing was changed; {keep}."
    )


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until all of ``data`` is written (a write may be short)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]
