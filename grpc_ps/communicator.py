"""Layered SGD's communicator service: a group's workers reduce to it and receive from it.

The communicator's own program runs in its main thread and meets the RPC
threads here: ``collect`` blocks until every worker of the group has pushed
its gradient slice for an iteration and returns their sum; ``offer`` makes
the averaged slice available to the group's ``Broadcast`` calls. Slices are
named by an iteration and a key (a parameter tensor's element range), since
the paper's collectives run per tensor.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
from google.protobuf import empty_pb2

from grpc_ps import tensors
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.pb import ps_pb2_grpc as pb_grpc
from grpc_ps.server import Books

Key = tuple[int, str]


class CommunicatorServicer(pb_grpc.CommunicatorServicer, Books):
    def __init__(self, group: list[int], max_elements: int, timeout: float) -> None:
        Books.__init__(self)
        self.group = set(group)
        self.n_workers = len(group)
        self.max_elements = max_elements
        self.timeout = timeout
        self._sums: dict[Key, tuple[set[int], np.ndarray]] = {}
        self._offers: dict[Key, tuple[np.ndarray, set[int]]] = {}
        self._streaming = 0  # Broadcast calls still sending their chunks

    # ------------------------------------------------------------------ RPCs

    def Reduce(self, request_iterator: Iterator[tensors.Chunk], context: grpc.ServicerContext):
        first, rest = self._open(request_iterator, context)
        if first.worker not in self.group:
            self._abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"worker {first.worker} is not in this group",
            )
        arr = self._receive_finite(first, rest, self.max_elements, context)
        key = (first.iteration, first.key)
        with self._cond:
            seen, total = self._sums.get(key, (set(), None))
            if first.worker in seen:
                self._abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"worker {first.worker} already reduced {key}",
                )
            if total is None:
                total = arr
            elif total.shape != arr.shape:
                self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"size mismatch for {key}")
            else:
                total += arr
                self._spares.give(arr)  # summed: the next part's stream can reuse it
            seen.add(first.worker)
            self._sums[key] = (seen, total)
            self._cond.notify_all()
        return empty_pb2.Empty()

    def Broadcast(
        self, request: pb.BroadcastRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        key = (request.iteration, request.key)
        with self._cond:
            if not self._wait(context, lambda: key in self._offers):
                return
            arr, waiting = self._offers[key]
            waiting.discard(request.worker)
            if not waiting:
                del self._offers[key]
            self._streaming += 1
        try:
            yield from tensors.pull_chunks(
                arr, tensors.clamp_chunk_bytes(request.chunk_bytes), request.iteration
            )
        finally:  # sent, or the worker went away: either way no longer in flight
            with self._cond:
                self._streaming -= 1
                self._cond.notify_all()

    # ------------------------------------------------- the communicator's side

    def collect(self, iteration: int, key: str, count: int) -> np.ndarray:
        """Block until ``count`` workers reduced slice ``key`` of ``iteration``; return the sum."""
        k = (iteration, key)
        with self._cond:
            if not self._cond.wait_for(
                lambda: len(self._sums.get(k, ((),))[0]) >= count, timeout=self.timeout
            ):
                raise TimeoutError(f"communicator: {k} not reduced by all workers in time")
            return self._sums.pop(k)[1]

    def offer(self, iteration: int, key: str, arr: np.ndarray) -> None:
        """Make slice ``key`` of ``iteration`` available to the group's next broadcast."""
        with self._cond:
            self._offers[(iteration, key)] = (arr, set(self.group))
            self._cond.notify_all()

    def drain(self) -> None:
        """Wait until the group has received every offered slice, so shutting down loses none.

        Received, not only asked for: the server's stop cancels the streams still sending
        after its grace (1 s), and a group of three pulling a 76 MB slice on two busy
        cores took longer than that (a worker died of UNAVAILABLE, "Cancelling all calls")."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: not self._offers and not self._streaming, timeout=self.timeout
            ):
                what = sorted(self._offers) or f"{self._streaming} broadcasts still sending"
                raise TimeoutError(f"communicator: {what} never fetched")
