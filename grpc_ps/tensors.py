"""Flat tensors as chunk streams: the one place that turns arrays into messages and back.

Sending costs exactly one copy per chunk (array slice -> the encoded message); receiving
writes each chunk straight from the received message into its slice of a preallocated array
through ``np.frombuffer`` (one copy, no intermediate array or ``bytes``). Everything a peer
declares is checked before it is trusted: the dtype, the declared size (against a bound,
before any allocation), that chunks arrive in order without gaps or overlaps, and that the
byte count matches exactly. Offsets are in elements.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from google.protobuf.message import Message

from grpc_ps.pb import ps_pb2 as pb

DEFAULT_CHUNK_BYTES = 1 << 20
MIN_CHUNK_BYTES = 4 << 10
MAX_CHUNK_BYTES = 16 << 20
# What a chunk message may hold besides its data: the header's varints and its key string.
# Servers refuse any message above MAX_CHUNK_BYTES + HEADER_ROOM before buffering it.
HEADER_ROOM = 64 << 10

# Wire dtypes are little-endian; on little-endian hosts these equal the native dtypes.
_DTYPES: dict[int, np.dtype] = {
    pb.DTYPE_FLOAT32: np.dtype("<f4"),
    pb.DTYPE_FLOAT64: np.dtype("<f8"),
    pb.DTYPE_FLOAT16: np.dtype("<f2"),
}


class ChunkError(ValueError):
    """A stream that does not match what it declared (maps to INVALID_ARGUMENT)."""


def dtype_of(code: int) -> np.dtype:
    """The numpy dtype of a wire ``DType`` code."""
    try:
        return _DTYPES[code]
    except KeyError:
        raise ChunkError(
            f"unsupported dtype {pb.DType.Name(code) if code in pb.DType.values() else code}"
        ) from None


def code_of(dtype: np.dtype) -> int:
    """The wire ``DType`` code of a numpy dtype."""
    for code, dt in _DTYPES.items():
        if dt == dtype:
            return code
    raise ChunkError(f"dtype {dtype} has no wire code")


def clamp_chunk_bytes(requested: int) -> int:
    """A peer's requested chunk size, kept where grpcio is fast and messages stay small."""
    if requested <= 0:
        return DEFAULT_CHUNK_BYTES
    return min(max(requested, MIN_CHUNK_BYTES), MAX_CHUNK_BYTES)


def slices(flat: np.ndarray, chunk_bytes: int) -> Iterator[tuple[int, memoryview]]:
    """Yield ``(element offset, byte view)`` covering a flat contiguous array; no copies."""
    if flat.ndim != 1 or not flat.flags.c_contiguous:
        raise ValueError("expected a flat, contiguous array")
    step = max(1, chunk_bytes // flat.itemsize)
    view = memoryview(flat).cast("B")
    size = flat.itemsize
    for start in range(0, len(flat), step):
        stop = min(start + step, len(flat))
        yield start, view[start * size : stop * size]


# -- the chunk codec ---------------------------------------------------------------------
# grpcio's protobuf (upb) path costs about 2 ms per 1 MiB chunk to build and serialise a
# message with a fresh bytes field, and another copy to read ``.data`` back: more than the
# transport itself. The codec below writes and reads the *same protobuf wire format* by hand
# for the two chunk messages: the small header is serialised by protobuf, the data field is
# appended as tag + length + raw bytes with one join (one copy), and on receipt ``data`` is a
# memoryview into the received buffer (no copy). Any protobuf peer reads and writes it.


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ChunkError("truncated or oversized varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


_DATA_FIELD = {
    cls: cls.DESCRIPTOR.fields_by_name["data"].number for cls in (pb.PushChunk, pb.PullChunk)
}


class Chunk:
    """A received chunk message: header fields as on the protobuf message, ``data`` a view.

    A message that does not parse becomes a Chunk with ``error`` set rather than an exception
    in the deserialiser, which grpcio would turn into INTERNAL; :func:`checked` raises it as
    a :class:`ChunkError` (INVALID_ARGUMENT) where the handler reads it.
    """

    __slots__ = ("data", "error", "meta")

    def __init__(
        self, meta: pb.PushChunk | pb.PullChunk, data: memoryview, error: str = ""
    ) -> None:
        self.meta, self.data, self.error = meta, data, error

    def __getattr__(self, name: str) -> object:
        return getattr(self.meta, name)


def encode(meta: pb.PushChunk | pb.PullChunk, data: memoryview | bytes) -> bytes:
    """The wire bytes of ``meta`` with its data field set to ``data``: one copy of the data."""
    tag = _varint(_DATA_FIELD[type(meta)] << 3 | 2)
    return b"".join((meta.SerializeToString(), tag, _varint(len(data)), data))


def decode(raw: bytes, cls: type[pb.PushChunk] | type[pb.PullChunk]) -> Chunk:
    """Parse wire bytes of a chunk message, leaving its data (the last occurrence) in place."""
    field, pos, span = _DATA_FIELD[cls], 0, (0, 0, 0)
    try:
        while pos < len(raw):
            start = pos
            key, pos = _read_varint(raw, pos)
            wire = key & 7
            if wire == 0:
                _, pos = _read_varint(raw, pos)
            elif wire == 1 or wire == 5:
                pos += 8 if wire == 1 else 4
            elif wire == 2:
                length, pos = _read_varint(raw, pos)
                if key >> 3 == field:
                    span = (start, pos, pos + length)
                pos += length
            else:
                raise ChunkError(f"unsupported wire type {wire}")
        if pos != len(raw):
            raise ChunkError("truncated message")
        start, a, b = span
        meta = cls.FromString(raw[:start] + raw[b:] if b else raw)
    except Exception as e:  # a malformed message is the sender's error, reported as such
        return Chunk(cls(), memoryview(b""), f"malformed {cls.__name__}: {e}")
    return Chunk(meta, memoryview(raw)[a:b])


def as_bytes(message: bytes | Message) -> bytes:
    """Serialiser for chunk streams: pre-encoded chunks pass through, messages serialise."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def decode_push(raw: bytes) -> Chunk:
    return decode(raw, pb.PushChunk)


def decode_pull(raw: bytes) -> Chunk:
    return decode(raw, pb.PullChunk)


def checked(chunks: Iterable[Chunk]) -> Iterator[Chunk]:
    """Pass chunks through, raising ChunkError on one that did not parse."""
    for chunk in chunks:
        if getattr(chunk, "error", ""):
            raise ChunkError(chunk.error)
        yield chunk


def _chunks(
    first: pb.PushChunk | pb.PullChunk, flat: np.ndarray, chunk_bytes: int
) -> Iterator[bytes]:
    """Encoded chunks of ``flat``; the first carries ``first``'s header fields.

    An empty array still yields one (empty) chunk, so the receiver always sees the header.
    Chunks never exceed :data:`MAX_CHUNK_BYTES` of data, whatever is asked: a server refuses
    larger messages (see :func:`grpc_ps.server.serve`).
    """
    meta, sent = first, False
    for offset, data in slices(flat, min(chunk_bytes, MAX_CHUNK_BYTES)):
        meta.offset = offset
        yield encode(meta, data)
        meta, sent = type(first)(), True
    if not sent:
        yield encode(meta, b"")


def push_chunks(flat: np.ndarray, chunk_bytes: int, **header: object) -> Iterator[bytes]:
    """Chunks for Push/Init/Publish/Reduce; the first carries ``header``, size and dtype."""
    first = pb.PushChunk(**header, total_elements=len(flat), dtype=code_of(flat.dtype))
    return _chunks(first, flat, chunk_bytes)


def pull_chunks(flat: np.ndarray, chunk_bytes: int, version: int) -> Iterator[bytes]:
    """Chunks for Pull/Fetch/Broadcast; the first carries version, size and dtype."""
    first = pb.PullChunk(version=version, total_elements=len(flat), dtype=code_of(flat.dtype))
    return _chunks(first, flat, chunk_bytes)


def check_header(total_elements: int, dtype: int, expected_dtype: np.dtype, limit: int) -> None:
    """Reject a declared size above ``limit`` or a dtype other than expected, before allocating."""
    if dtype_of(dtype) != expected_dtype:
        raise ChunkError(f"dtype {pb.DType.Name(dtype)}, expected {expected_dtype}")
    if total_elements > limit:
        raise ChunkError(f"declared {total_elements} elements, at most {limit} allowed")


class Reassembler:
    """Writes a chunk stream into ``out`` (preallocated), checking order, bounds and the total.

    Chunks must arrive in order and contiguously (as the senders here produce them): then
    "every byte written exactly once" reduces to one running offset.
    """

    def __init__(self, out: np.ndarray) -> None:
        self.out = out
        self.filled = 0

    def feed(self, offset: int, data: bytes | memoryview) -> None:
        itemsize = self.out.itemsize
        if len(data) % itemsize:
            raise ChunkError(f"chunk of {len(data)} bytes is not whole {self.out.dtype} elements")
        count = len(data) // itemsize
        if offset != self.filled:
            raise ChunkError(f"chunk at element {offset}, expected {self.filled}")
        if offset + count > len(self.out):
            raise ChunkError(f"chunk [{offset}, {offset + count}) beyond {len(self.out)} elements")
        self.out[offset : offset + count] = np.frombuffer(data, dtype=self.out.dtype)
        self.filled += count

    def finish(self) -> np.ndarray:
        if self.filled != len(self.out):
            raise ChunkError(f"stream ended at element {self.filled} of {len(self.out)}")
        return self.out


def receive_pull(chunks: Iterable[Chunk | pb.PullChunk], out: np.ndarray) -> int:
    """Reassemble a Pull/Fetch/Broadcast stream into ``out``; return the header's version."""
    it = checked(chunks)
    first = next(it, None)
    if first is None:
        raise ChunkError("empty stream")
    check_header(first.total_elements, first.dtype, out.dtype, len(out))
    if first.total_elements != len(out):
        raise ChunkError(f"stream holds {first.total_elements} elements, expected {len(out)}")
    receive_into(first, it, out)
    return first.version


def receive_into(
    first: Chunk | pb.PullChunk, rest: Iterable[Chunk | pb.PullChunk], out: np.ndarray
) -> np.ndarray:
    """A whole stream into ``out``, which the header's size was checked against; every
    element written exactly once, or ChunkError."""
    asm = Reassembler(out)
    asm.feed(first.offset, first.data)
    for chunk in rest:
        asm.feed(chunk.offset, chunk.data)
    return asm.finish()
