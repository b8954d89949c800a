"""The leader registry (Leader SGD): who leads, and the leaders' published parameters."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import grpc
import numpy as np
from google.protobuf import empty_pb2

from grpc_ps import tensors
from grpc_ps.books import Books
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.pb import ps_pb2_grpc as pb_grpc
from pslab.policies import PolicyError
from pslab.rounds import LeaderRounds, Publications


class LeaderRegistryServicer(pb_grpc.LeaderRegistryServicer, Books):
    """Who leads (lowest running-mean loss) and the leaders' published parameters.

    ``sync``: every ReportLoss is a barrier over all workers for its round, and everyone gets
    the leaders of that round's reports (synchronous Leader SGD); otherwise each report is
    answered at once from the latest losses. Who leads and which publication is kept are
    :mod:`pslab.rounds`' (the simulator's answers too). Published arrays are never modified
    (a newer publication replaces them), so fetches stream them by reference without a copy;
    one replaced and no longer streamed becomes a spare for the next publication.
    """

    def __init__(self, groups: list[list[int]], max_elements: int, sync: bool = False) -> None:
        Books.__init__(self)
        self.leaders = LeaderRounds(groups, sync)
        self.max_elements = max_elements
        self._published: Publications[np.ndarray] = Publications()
        self._readers: Counter[int] = Counter()  # id(publication) -> fetches streaming it

    def ReportLoss(self, request: pb.LossReport, context: grpc.ServicerContext) -> pb.Leaders:
        worker, rnd = request.worker, request.round
        if not math.isfinite(request.loss):
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"loss {request.loss}")
        with self._cond:
            try:
                decided = self.leaders.report(worker, rnd, request.loss)
            except PolicyError as e:
                self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(e))
            if decided and self.leaders.sync:  # the round's last report: wake the others
                self._cond.notify_all()
            if not self._wait(context, lambda: self.leaders.ready(worker, rnd)):
                return pb.Leaders()
            local, best = self.leaders.answer(worker, rnd)
        return pb.Leaders(local_leader=local, global_leader=best)

    def Publish(self, request_iterator: Iterator[tensors.Chunk], context: grpc.ServicerContext):
        first, rest = self._open(request_iterator, context)
        if not first.key:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "a publication needs a key")
        arr = self._receive_finite(first, rest, self.max_elements, context)
        with self._cond:
            held = self._published.held.get(first.key)
            if self._published.publish(first.key, first.round, arr):
                self._cond.notify_all()
                if held is not None:
                    self._done_with(held[1])
            else:  # a newer round is held: this one was never anyone's
                self._spares.give(arr)
        return empty_pb2.Empty()

    def Fetch(self, request: pb.FetchRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Stream the publication of ``key`` at round >= min_round; none and no wait: nothing."""

        def ready() -> bool:
            return self._published.ready(request.key, request.min_round)

        with self._cond:
            if not ready() and not (request.wait and self._wait(context, ready)):
                return
            round_, arr = self._published.get(request.key)
            self._readers[id(arr)] += 1
        try:
            chunk_bytes = tensors.clamp_chunk_bytes(request.chunk_bytes)
            yield from tensors.pull_chunks(arr, chunk_bytes, round_)
        finally:  # sent, or the caller went away
            with self._cond:
                self._readers[id(arr)] -= 1
                self._done_with(arr)

    def _done_with(self, arr: np.ndarray) -> None:
        """A publication replaced, or a fetch of it over: spare once no one holds it."""
        if self._readers[id(arr)]:
            return
        del self._readers[id(arr)]
        if all(held is not arr for _, (_, held) in self._published.items()):
            self._spares.give(arr)
