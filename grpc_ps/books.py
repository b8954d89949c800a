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
from grpc_ps.updates import finite

_POLL_S = 0.1  # how often a blocked RPC checks that its caller is still there


class Books:
    """Shared by the servicers: one lock/condition, rejection counts, waiting on a condition."""

    def __init__(self) -> None:
        self._cond = threading.Condition()  # an RLock inside: helpers may nest
        self._rejected: Counter[str] = Counter()

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
        """A whole stream into a new array (size checked first); NaN or Inf: rejected."""
        try:
            arr = tensors.receive_new(first, rest, limit)
        except tensors.ChunkError as e:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if not finite(arr):
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "NaN or Inf in the tensor")
        return arr

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
