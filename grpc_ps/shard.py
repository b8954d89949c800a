"""The parameter-server shard: one contiguous key range of the model, its policy and books.

The servicer only moves bytes, validates and keeps books: *when* an update happens is decided by
:class:`pslab.policies.StalenessPolicy` (the same object the simulator drives), what a BSP
round sums by :class:`pslab.rounds.RoundSum` (as the simulator's numerics do), and *what* the
update computes by :func:`pslab.rules.server_apply` / :func:`pslab.rules.sgd`.

Memory is bounded by design, because a shard of a 100 MB model must not hold a copy per
request. Each shard owns at most ``max_buffers`` arrays of its size (by default 2, or 3 with
BSP rounds), pooled and reused: the parameters, the open round's sum, push scratch buffers,
and stale parameter versions that pulls are still streaming (plus the momentum buffer, if
any). A push waits for a buffer before reading its stream, so a worker must not leave one of
its own pulls unread while it waits for its push. Pulls never copy: a pull streams the
current array by reference, and an update that finds readers on it writes the new
parameters into the push's own buffer instead (copy-on-write), so every pull sees one
consistent version. gRPC's own buffers are bounded by fixed flow-control windows
(:func:`grpc_ps.server.grpc_options`). The pool is :mod:`grpc_ps.buffers`, durability
:mod:`grpc_ps.durability`.

Pushes are idempotent: ``(worker, iteration)`` names a push, a worker's iterations increase,
and a push not above the worker's last accepted iteration is a retry, acknowledged and not
applied again, so a worker may resend whatever it is unsure of. With a
:class:`~grpc_ps.checkpoint.Journal`, every accepted push is durable before it is
acknowledged, and a restarted server resumes exactly where the dead one acknowledged.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress

import grpc
import numpy as np

from grpc_ps import tensors
from grpc_ps.books import journal_status
from grpc_ps.buffers import Buffers
from grpc_ps.checkpoint import Journal, JournalError
from grpc_ps.durability import Durable
from grpc_ps.journal import LEAVE, MAX_ID, PUSH, Record
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.pb import ps_pb2_grpc as pb_grpc
from grpc_ps.updates import DTYPE, MODES, NonFiniteResult, finite, result_finite, update
from pslab.policies import Apply, PolicyError, StalenessPolicy
from pslab.rounds import RoundSum, Update


class ParameterServerServicer(pb_grpc.ParameterServerServicer, Durable, Buffers):
    """One shard: elements [offset, offset + length) of the flat float32 parameter vector."""

    def __init__(
        self,
        shard_id: int,
        offset: int,
        length: int,
        n_workers: int,
        policy: StalenessPolicy,
        lr: float,
        momentum: float = 0.0,
        *,
        n_shards: int = 1,
        total: int | None = None,
        initial: np.ndarray | None = None,
        max_buffers: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        journal: Journal | None = None,
    ) -> None:
        """``initial``: this shard's starting parameters; None waits for a worker's Init.

        ``journal``: where the shard's state is made durable; if it holds a checkpoint, the
        shard resumes from it (and ``initial`` only gives the shape).

        ``clock`` times each update for :attr:`applies` (a run's shared trace clock).

        ``max_buffers`` bounds the shard's model-sized arrays (see the module docstring). The
        default and least is what the policy needs to make progress: 2 (parameters and one
        push being received), 3 with BSP rounds (plus the round's sum). More lets pushes be
        received concurrently; on a 2-core machine the 100 MB benchmark could not tell 2
        from 3 apart in speed, only in memory (about 2.7x against 3.9x the model).
        """
        if policy.n_workers != n_workers:
            raise ValueError(f"policy has {policy.n_workers} workers, server {n_workers}")
        if length < 1 or not 0 <= shard_id < n_shards:
            raise ValueError(f"bad shard {shard_id} of {n_shards} with {length} elements")
        self.shard_id, self.offset, self.length = shard_id, offset, length
        self.n_workers, self.n_shards = n_workers, n_shards
        self.total = offset + length if total is None else total
        self.policy, self.lr, self.momentum = policy, lr, momentum
        self._velocity = np.zeros(length, DTYPE) if momentum else None
        Buffers.__init__(self, shard_id, length, 3 if policy.aggregate else 2, max_buffers)
        self._params: np.ndarray | None = None
        if initial is not None and np.size(initial) != length:
            raise ValueError(f"initial has {np.size(initial)} elements, shard {length}")
        resuming = journal is not None and journal.exists()
        if initial is not None and not resuming:  # resuming, the checkpoint's are loaded
            self._params = np.array(initial, dtype=DTYPE, copy=True).reshape(-1)
            self._live = 1
        self._round: RoundSum[np.ndarray] = RoundSum(policy.aggregate)  # BSP: the open round
        self._received = 0
        self._applied = 0
        self._staleness: Counter[int] = Counter()
        self._bytes_out = 0
        self.clock = clock
        # start, end, staleness, version, the iteration of the push that made the update
        self.applies: list[tuple[float, float, list[int], int, int]] = []
        self._last_iteration = [-1] * n_workers  # per worker, the last push id accepted
        self._non_finite = 0
        self._duplicates = 0
        self.journal = journal
        if resuming:
            self._resume(journal)
        elif journal is not None and self._params is not None:
            self._checkpoint()

    def _apply(self, due: Update[np.ndarray]) -> None:
        """Apply ``due``, whose total this call then owns."""
        x, total, count, mode, done = self._params, due.total, due.count, due.mode, due.done
        assert x is not None
        start = self.clock()
        if self._readers[id(x)]:
            update(x, total, count, mode, self.lr, self.momentum, self._velocity, out=total)
            self._params = total  # x stays with its readers; the last one releases it
        else:
            update(x, total, count, mode, self.lr, self.momentum, self._velocity, out=x)
            self._release(total)
        self.applies.append(
            (start, self.clock(), list(done.staleness), done.version, due.iteration)
        )
        self._applied += len(done.workers)
        self._staleness.update(done.staleness)
        self._cond.notify_all()

    # -- RPCs -----------------------------------------------------------------------------

    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.ShardMap:
        if request.world != self.n_workers or request.worker >= request.world:
            self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"worker {request.worker} of {request.world}, server expects {self.n_workers}",
            )
        if request.total_elements != self.total or request.dtype != pb.DTYPE_FLOAT32:
            self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"model of {request.total_elements} {pb.DType.Name(request.dtype)}, "
                f"server holds {self.total} float32",
            )
        with self._cond:
            if request.worker not in self.policy.live:
                self._abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"worker {request.worker} has left",
                )
            version = self.policy.version
            next_iteration = self._last_iteration[request.worker] + 1
        return pb.ShardMap(
            shard_id=self.shard_id,
            offset=self.offset,
            length=self.length,
            num_shards=self.n_shards,
            version=version,
            dtype=pb.DTYPE_FLOAT32,
            next_iteration=next_iteration,
        )

    def Init(self, request_iterator: Iterator[tensors.Chunk], context: grpc.ServicerContext):
        first, rest = self._open(request_iterator, context)
        buf = self._receive(first, rest, context)
        ok = buf is None or finite(buf)
        with self._cond:
            if buf is None:
                return pb.PushReply(version=self.policy.version)
            if not ok:  # a model must start finite, like every update it then gets
                self._non_finite += 1
                self._release(buf)
                self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "NaN or Inf in the model")
            taken = self._params is None
            if taken:
                self._params = buf
                self._cond.notify_all()
                if self.journal is not None:
                    self._checkpoint()
            else:
                self._release(buf)
            return pb.PushReply(version=self.policy.version, applied=taken)

    def Push(self, request_iterator: Iterator[tensors.Chunk], context: grpc.ServicerContext):
        first, rest = self._open(request_iterator, context)
        mode = MODES.get(first.mode)
        if mode is None:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"push mode {first.mode}")
        if first.iteration > MAX_ID:  # before anything is taken: a buffer, a journal record
            self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"push id {first.iteration} is above the largest allowed, {MAX_ID}",
            )
        with self._cond:
            ready = self._params is not None
        if not ready:
            self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, "shard not initialised")
        buf = self._receive(first, rest, context)
        if buf is None:
            return pb.PushReply()
        ok = finite(buf)
        with self._cond:
            if not ok:
                self._non_finite += 1
                self._release(buf)
                self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "NaN or Inf in the push")
            worker, iteration = first.worker, first.iteration
            if worker < self.n_workers and iteration <= self._last_iteration[worker]:
                self._duplicates += 1
                self._release(buf)
                return pb.PushReply(version=self.policy.version, duplicate=True)
            try:
                done = self._accept(worker, iteration, first.computed_on, first.mode, buf)
            except PolicyError as e:
                self._release(buf)
                self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(e))
            except NonFiniteResult as e:
                self._non_finite += 1
                self._release(buf)
                self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
            except JournalError as e:
                self._release(buf)
                self._abort(context, journal_status(e), f"push not applied: {e}")
            return pb.PushReply(version=self.policy.version, applied=done is not None)

    def _accept(
        self,
        worker: int,
        iteration: int,
        computed_on: int,
        mode_code: int,
        buf: np.ndarray,
        record: bool = True,
    ) -> Apply | None:
        """Policy, journal, update: the one path of a push, live or replayed (holds _cond).

        All or nothing: everything that can refuse the push runs before anything changes,
        and what it changed is undone if it refuses: the policy (PolicyError), the result of
        the update it would make (NonFiniteResult), the journal write (JournalError). Then
        it takes ``buf``; after a refusal the caller still owns it.
        """
        mode = MODES[mode_code]
        self._round.check(mode)
        saved = copy.deepcopy(self.policy)  # a few lists of n_workers: cheap
        done = self.policy.on_push(worker, computed_on)
        try:
            if record:  # a replayed push was checked when it was accepted
                self._check_result(buf, mode, done)
            if record and self.journal is not None:
                data = memoryview(buf).cast("B")
                self.journal.append(Record(PUSH, worker, iteration, computed_on, mode_code, data))
        except BaseException:
            vars(self.policy).update(vars(saved))
            raise
        self._last_iteration[worker] = iteration
        self._received += 1
        due, taken = self._round.add(buf, mode, iteration, done)
        if not taken:  # added into the round's sum
            self._release(buf)
        if due is not None:
            self._apply(due)
        if record and done is not None and self.journal and self.journal.due(done.version):
            # a failed checkpoint loses nothing: the push is applied and in the journal, and
            # the next due checkpoint tries again
            with suppress(OSError):
                self._checkpoint()
        return done

    def _check_result(self, buf: np.ndarray, mode: str, done: Apply | None) -> None:
        """Raise NonFiniteResult if accepting ``buf`` would leave a non-finite value."""
        parts, count = self._round.parts(buf)
        x = self._params if done is not None else None
        if not result_finite(x, parts, count, mode, self.lr, self.momentum, self._velocity):
            what = "the round's sum" if x is None else "the parameters"
            raise NonFiniteResult(f"the push would make {what} NaN or Inf (an overflow)")

    def Pull(self, request: pb.PullRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        if request.shard_id != self.shard_id:
            self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"pull of shard {request.shard_id} from shard {self.shard_id}",
            )
        with self._cond:
            try:
                ok = self._wait(
                    context,
                    lambda: self._params is not None and self.policy.may_pull(request.worker),
                )
            except PolicyError as e:
                self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(e))
            if not ok:
                return
            x, version = self._params, self.policy.version
            assert x is not None
            self._readers[id(x)] += 1
        step = tensors.clamp_chunk_bytes(request.chunk_bytes) // x.itemsize * x.itemsize
        sent = 0
        try:
            for chunk in tensors.pull_chunks(x, step, version):
                yield chunk
                sent += step
        finally:
            with self._cond:
                self._bytes_out += min(sent, x.nbytes)
                self._readers[id(x)] -= 1
                if not self._readers[id(x)]:
                    del self._readers[id(x)]
                    if x is not self._params:
                        self._release(x)

    def Leave(self, request: pb.LeaveRequest, context: grpc.ServicerContext) -> pb.LeaveReply:
        if request.worker >= self.n_workers:
            self._abort(
                context, grpc.StatusCode.FAILED_PRECONDITION, f"unknown worker {request.worker}"
            )
        with self._cond:
            try:
                self._leave(request.worker)
            except JournalError as e:
                self._abort(context, journal_status(e), f"leave not recorded: {e}")
            return pb.LeaveReply(version=self.policy.version)

    def _leave(self, worker: int, record: bool = True) -> None:
        if record and self.journal is not None:
            self.journal.append(Record(LEAVE, worker))
        done = self.policy.leave(worker)
        if done is not None:
            self._apply(self._round.close(done))
        self._cond.notify_all()  # pulls waiting on the one who left may go now

    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.StatsReply:
        with self._cond:
            return pb.StatsReply(
                version=self.policy.version,
                pushes_received=self._received,
                pushes_applied=self._applied,
                staleness=dict(self._staleness),
                rejected=dict(self._rejected),
                bytes_received=self._bytes_in,
                bytes_sent=self._bytes_out,
                non_finite=self._non_finite,
                duplicates=self._duplicates,
                checkpoints=self.journal.checkpoints if self.journal else 0,
                checkpoint_seconds=self.journal.checkpoint_seconds if self.journal else 0.0,
                journal_seconds=self.journal.journal_seconds if self.journal else 0.0,
            )
