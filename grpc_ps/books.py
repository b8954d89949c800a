"""What every servicer shares: one lock and condition, rejection counts, waiting.

A servicer's RPCs block on one condition (a pull waiting for the policy, a push for a
buffer); :meth:`Books._wait` is that wait, which also notices a caller that went away.
Every refusal goes through :meth:`Books._abort`, so Stats can count it by status code.
"""

from __future__ import annotations

import errno
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import NoReturn

import grpc
import numpy as np

from grpc_ps import tensors
from grpc_ps.checkpoint import JournalError
from grpc_ps.updates import DTYPE, finite

_POLL_S = 0.1  # how often a blocked RPC checks that its caller is still there


class Spares:
    """Arrays a servicer received a stream into and is done with, kept for the next stream.

    The registry took a fresh array for every publication, and a publication then cost
    twice what a shard's push of the same 8 MB does (handler CPU 8.6 against 4.1 ms, 121
    minor page faults against 9: the allocator returns big freed blocks' pages, and the
    kernel zeroes new ones at their first touch), where a shard reuses its own buffers
    (:mod:`grpc_ps.buffers`). Used under the servicer's ``_cond``.
    """

    def __init__(self, keep: int = 2) -> None:
        # the most kept idle, each one a model's size held beyond what grpc_ps.fit counts:
        # two cover a synchronous round's two local leaders replaced together
        self.keep = keep
        self._idle: list[np.ndarray] = []

    def take(self, elements: int) -> np.ndarray:
        """An idle array of ``elements`` float32s (the last given: its pages are likeliest to
        be in cache), or a new one."""
        for i in range(len(self._idle) - 1, -1, -1):
            if len(self._idle[i]) == elements:
                return self._idle.pop(i)
        return np.empty(elements, DTYPE)

    def give(self, arr: np.ndarray) -> None:
        """``arr`` is no one's any more: keep it for a later :meth:`take` (the newest few)."""
        self._idle.append(arr)
        del self._idle[: -self.keep]


class Books:
    """Shared by the servicers: one lock/condition, rejection counts, waiting on a condition,
    spare arrays for received streams."""

    def __init__(self) -> None:
        self._cond = threading.Condition()  # an RLock inside: helpers may nest
        self._rejected: Counter[str] = Counter()
        self._spares = Spares()

    def _abort(self, context: grpc.ServicerContext, code: grpc.StatusCode, msg: str) -> NoReturn:
        with self._cond:
            self._rejected[code.name] += 1
        context.abort(code, msg)
        raise AssertionError("unreachable: context.abort raises")

    def _open(
        self, request_iterator: Iterator[tensors.Chunk], context: grpc.ServicerContext
    ) -> tuple[tensors.Chunk, Iterator[tensors.Chunk]]:
        """The first chunk of a stream (which carries the header) and the checked rest."""
        chunks = tensors.checked(request_iterator)
        try:
            first = next(chunks, None)
        except tensors.ChunkError as e:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if first is None:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "empty stream")
        return first, chunks

    def _receive_finite(
        self,
        first: tensors.Chunk,
        rest: Iterator[tensors.Chunk],
        limit: int,
        context: grpc.ServicerContext,
    ) -> np.ndarray:
        """A whole stream into an array of its own (size checked first, taken from
        ``_spares``); NaN or Inf: rejected. The caller gives it back when done with it."""
        try:
            tensors.check_header(first.total_elements, first.dtype, DTYPE, limit)
        except tensors.ChunkError as e:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        with self._cond:
            out = self._spares.take(first.total_elements)
        try:
            tensors.receive_into(first, rest, out)
        except tensors.ChunkError as e:
            with self._cond:
                self._spares.give(out)
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except BaseException:
            with self._cond:
                self._spares.give(out)
            raise
        if not finite(out):
            with self._cond:
                self._spares.give(out)
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "NaN or Inf in the tensor")
        return out

    def _wait(self, context: grpc.ServicerContext, ready: Callable[[], bool]) -> bool:
        """Wait (holding ``_cond``) until ``ready()``; False once the caller has gone away.

        State changes ``notify_all``; the short poll only notices a cancelled caller. A wait
        that outlives the RPC's deadline ends it with DEADLINE_EXCEEDED, never with an empty
        OK stream.
        """
        while not ready():
            if not context.is_active():
                return False
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed while waiting")
            self._cond.wait(_POLL_S if remaining is None else min(_POLL_S, remaining))
        return True


def journal_status(e: JournalError) -> grpc.StatusCode:
    """A full disk is RESOURCE_EXHAUSTED (it may pass); any other I/O failure INTERNAL."""
    cause = e.__cause__
    full = isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)
    return grpc.StatusCode.RESOURCE_EXHAUSTED if full else grpc.StatusCode.INTERNAL
