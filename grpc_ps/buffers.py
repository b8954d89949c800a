"""A shard's pool of model-sized arrays, and receiving a push stream into one of them.

A shard of a 100 MB model must not hold a copy per request, so it owns at most
``max_buffers`` arrays of its size, pooled and reused (see :mod:`grpc_ps.shard`). A push
waits for a buffer before reading its stream; an array that pulls are still streaming
returns to the pool when the last of them ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import grpc
import numpy as np

from grpc_ps import tensors
from grpc_ps.books import Books
from grpc_ps.updates import DTYPE


class Buffers(Books):
    """The pool (all under ``_cond``) and the receive path of a push or an Init."""

    def __init__(self, shard_id: int, length: int, least: int, max_buffers: int | None) -> None:
        """``least``: the buffers the policy needs to make progress; ``max_buffers`` more."""
        Books.__init__(self)
        self.shard_id, self.length = shard_id, length
        self._max_buffers = max(max_buffers or least, least)
        self._live = 0  # model-sized arrays allocated, all kinds
        self._pool: list[np.ndarray] = []  # allocated and idle
        self._readers: Counter[int] = Counter()  # id(array) -> pulls streaming it
        self._bytes_in = 0

    def _take_buffer(self, context: grpc.ServicerContext) -> np.ndarray | None:
        if not self._wait(context, lambda: bool(self._pool) or self._live < self._max_buffers):
            return None
        return self._new_buffer()

    def _new_buffer(self) -> np.ndarray:
        if self._pool:
            return self._pool.pop()
        self._live += 1
        return np.empty(self.length, DTYPE)

    def _release(self, buf: np.ndarray) -> None:
        """Back to the pool, unless pulls still stream it (the last one returns it)."""
        if not self._readers[id(buf)]:
            self._pool.append(buf)
            self._cond.notify_all()

    def _receive(
        self, first: tensors.Chunk, rest: Iterator[tensors.Chunk], context: grpc.ServicerContext
    ) -> np.ndarray | None:
        """Validate the header, take a buffer and fill it; None if the caller went away."""
        if first.shard_id != self.shard_id:
            self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"shard {first.shard_id} sent to shard {self.shard_id}",
            )
        try:
            tensors.check_header(first.total_elements, first.dtype, DTYPE, self.length)
            if first.total_elements != self.length:
                raise tensors.ChunkError(
                    f"{first.total_elements} elements for a shard of {self.length}"
                )
        except tensors.ChunkError as e:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        with self._cond:
            buf = self._take_buffer(context)
        if buf is None:
            return None
        try:
            tensors.receive_into(first, rest, buf)
        except tensors.ChunkError as e:
            with self._cond:
                self._release(buf)
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except BaseException:
            with self._cond:
                self._release(buf)
            raise
        with self._cond:
            self._bytes_in += buf.nbytes  # whole: receive_into wrote every element once
        return buf
