"""The leader registry (Leader SGD): who leads, and the leaders' published parameters."""

from __future__ import annotations

import math
from collections.abc import Iterator

import grpc
import numpy as np
from google.protobuf import empty_pb2

from grpc_ps import tensors
from grpc_ps.books import Books
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.pb import ps_pb2_grpc as pb_grpc
from pslab.policies import LeaderBoard, PolicyError


class LeaderRegistryServicer(pb_grpc.LeaderRegistryServicer, Books):
    """Who leads (lowest running-mean loss) and the leaders' published parameters.

    ``sync``: every ReportLoss is a barrier over all workers for its round, and everyone gets
    the leaders of that round's reports (synchronous Leader SGD); otherwise each report is
    answered at once from the latest losses. Published arrays are never modified (a newer
    publication replaces them), so fetches stream them by reference without a copy.
    """

    def __init__(self, groups: list[list[int]], max_elements: int, sync: bool = False) -> None:
        Books.__init__(self)
        self.board = LeaderBoard(groups)
        self.n_workers = sum(len(g) for g in groups)
        self.max_elements, self.sync = max_elements, sync
        self._reported: dict[int, set[int]] = {}  # sync: round -> workers that reported
        self._answers: dict[int, dict[int, tuple[int, int]]] = {}  # round -> worker -> leaders
        self._published: dict[str, tuple[int, np.ndarray]] = {}

    def ReportLoss(self, request: pb.LossReport, context: grpc.ServicerContext) -> pb.Leaders:
        worker, rnd = request.worker, request.round
        if not math.isfinite(request.loss):
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"loss {request.loss}")
        with self._cond:
            try:
                local, best = self.board.report(worker, request.loss)
            except PolicyError as e:
                self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(e))
            if self.sync:
                reported = self._reported.setdefault(rnd, set())
                reported.add(worker)
                if len(reported) == self.n_workers:
                    del self._reported[rnd]
                    self._answers[rnd] = {w: self.board.leaders(w) for w in reported}
                    self._cond.notify_all()
                if not self._wait(context, lambda: rnd in self._answers):
                    return pb.Leaders()
                answers = self._answers[rnd]
                local, best = answers.pop(worker)
                if not answers:
                    del self._answers[rnd]
        return pb.Leaders(local_leader=local, global_leader=best)

    def Publish(self, request_iterator: Iterator[tensors.Chunk], context: grpc.ServicerContext):
        first, rest = self._open(request_iterator, context)
        if not first.key:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "a publication needs a key")
        arr = self._receive_finite(first, rest, self.max_elements, context)
        with self._cond:
            held = self._published.get(first.key)
            if held is None or first.round >= held[0]:
                self._published[first.key] = (first.round, arr)
                self._cond.notify_all()
        return empty_pb2.Empty()

    def Fetch(self, request: pb.FetchRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Stream the publication of ``key`` at round >= min_round; none and no wait: nothing."""

        def ready() -> bool:
            held = self._published.get(request.key)
            return held is not None and held[0] >= request.min_round

        with self._cond:
            if not ready() and not (request.wait and self._wait(context, ready)):
                return
            round_, arr = self._published[request.key]
        yield from tensors.pull_chunks(arr, tensors.clamp_chunk_bytes(request.chunk_bytes), round_)
