"""gRPC servicers: a parameter-server shard, the leader registry, and the server wrapper.

The servicers only move bytes, validate and keep books: *when* an update happens is decided by
:class:`pslab.policies.StalenessPolicy` (the same object the simulator drives), and *what* the
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
(:func:`grpc_options`).

Pushes are idempotent: ``(worker, iteration)`` names a push, a worker's iterations increase,
and a push not above the worker's last accepted iteration is a retry, acknowledged and not
applied again, so a worker may resend whatever it is unsure of. With a
:class:`~grpc_ps.checkpoint.Journal`, every accepted push is durable before it is
acknowledged, and a restarted server resumes exactly where the dead one acknowledged.
"""

from __future__ import annotations

import copy
import errno
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager, suppress
from typing import NoReturn

import grpc
import numpy as np
from google.protobuf import empty_pb2, message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from grpc_ps import tensors
from grpc_ps.auth import Security, check_bind
from grpc_ps.checkpoint import LEAVE, MAX_ID, PUSH, Journal, JournalError, Record, State
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.pb import ps_pb2_grpc as pb_grpc
from pslab import rules
from pslab.policies import Apply, LeaderBoard, PolicyError, StalenessPolicy

DTYPE = np.dtype(np.float32)
MAX_MESSAGE_BYTES = 64 << 20
# The largest message a server receives: one chunk (a stream's message, or a *One twin's
# whole request) and its header. A larger one is refused by gRPC before it is buffered, so
# what a peer, authenticated or not, can make the server hold is bounded per call.
MAX_RECEIVE_BYTES = tensors.MAX_CHUNK_BYTES + tensors.HEADER_ROOM
WINDOW_BYTES = 2 << 20


def grpc_options(
    max_message_bytes: int = MAX_MESSAGE_BYTES, extra: Sequence[tuple[str, int | str]] = ()
) -> list[tuple[str, int | str]]:
    """gRPC channel arguments for servers and clients alike (``extra`` overrides).

    The 4 MiB default receive limit would reject any chunk size above it, so it is raised.
    HTTP/2 flow control gets a fixed 2 MiB window per stream instead of gRPC's adaptive
    (BDP-probed) one: a server is the bottleneck, and with adaptive windows the pushes
    waiting for it, and the pulls it streams, pile up tens of MB each in gRPC's buffers.
    Measured with 100 MB, 4 workers and 2 shards: servers' RSS 3.3x the model adaptive,
    2.9x with 4 MiB windows, 2.7x with 2 MiB, 2.5x with 1 MiB. 2 MiB still covers a
    2 GB/s x 1 ms bandwidth-delay product.
    """
    args: dict[str, int | str] = {
        "grpc.max_receive_message_length": max_message_bytes,
        "grpc.max_send_message_length": max_message_bytes,
        "grpc.http2.bdp_probe": 0,
        "grpc.http2.lookahead_bytes": WINDOW_BYTES,
        **dict(extra),
    }
    return list(args.items())


_POLL_S = 0.1  # how often a blocked RPC checks that its caller is still there
_BLOCK = 1 << 18  # elements per update block: temporaries stay in cache, never model-sized
_MODES = {pb.PUSH_MODE_GRAD: "grad", pb.PUSH_MODE_DELTA: "delta"}


class NonFiniteResult(ValueError):
    """An update of finite pushes that would leave a parameter NaN or Inf (an overflow)."""


def finite(arr: np.ndarray) -> bool:
    """No NaN or Inf: one pass, no temporary (a float64 sum of float32 cannot overflow)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, which is the answer
        return math.isfinite(arr.sum(dtype=np.float64))


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


def _update(
    x: np.ndarray,
    total: np.ndarray,
    count: int,
    mode: str,
    lr: float,
    momentum: float,
    velocity: np.ndarray | None,
    out: np.ndarray,
) -> None:
    """``out`` ← x updated by ``count`` pushes summing to ``total``; ``out`` is x or total.

    Runs the shared rules block by block on views, so their temporaries are small and
    cache-resident, and so the result can land in ``total``'s buffer (copy-on-write) without
    a third model-sized array.
    """
    tmp = None if out is x else np.empty(min(_BLOCK, len(x)), x.dtype)
    for a in range(0, len(x), _BLOCK):
        b = min(a + _BLOCK, len(x))
        dst = x[a:b]
        if tmp is not None:
            dst = tmp[: b - a]
            np.copyto(dst, x[a:b])
        block_velocity = None if velocity is None else velocity[a:b]
        rules.server_update(dst, total[a:b], count, mode, lr, momentum, block_velocity)
        if tmp is not None:
            out[a:b] = dst


_SAFE = float(np.finfo(DTYPE).max) / 4  # below this, a bound's rounding cannot reach inf


def _magnitude(a: np.ndarray) -> float:
    """The largest |element|: two reductions, no temporary."""
    return max(float(a.max()), -float(a.min())) if len(a) else 0.0


def _surely_finite(
    x: np.ndarray | None,
    parts: Sequence[np.ndarray],
    count: int,
    mode: str,
    lr: float,
    momentum: float,
    velocity: np.ndarray | None,
) -> bool:
    """True when bounds on the magnitudes already prove the update finite (the usual case,
    at a quarter of the exact check's cost); False means: check exactly."""
    total = sum(_magnitude(p) for p in parts)
    if total >= _SAFE:
        return False
    if x is None:
        return True
    if mode == "delta":
        return _magnitude(x) + total < _SAFE
    step = total / count
    if velocity is not None:
        step = abs(momentum) * _magnitude(velocity) + step
    return step < _SAFE and _magnitude(x) + abs(lr) * step < _SAFE


def result_finite(
    x: np.ndarray | None,
    parts: Sequence[np.ndarray],
    count: int,
    mode: str,
    lr: float,
    momentum: float,
    velocity: np.ndarray | None,
) -> bool:
    """Would the update of ``x`` by ``parts`` (summed) be finite? Nothing is written.

    The same block-wise operations as :func:`_update` and the round sum, on block-sized
    copies, so the answer is the one the real update will give, bit for bit, and the check
    costs no model-sized memory. ``x`` None: only the sum is checked (a BSP round that
    stays open must not hold an overflowed sum either).
    """
    if _surely_finite(x, parts, count, mode, lr, momentum, velocity):
        return True
    n = len(parts[0])
    size = min(_BLOCK, n)
    total, params = np.empty(size, DTYPE), np.empty(size, DTYPE)
    vel = None if velocity is None else np.empty(size, DTYPE)
    flags = np.empty(size, bool)

    def ok(block: np.ndarray) -> bool:  # in cache, isfinite beats finite()'s float64 sum 4x
        return bool(np.isfinite(block, out=flags[: len(block)]).all())

    with np.errstate(over="ignore", invalid="ignore"):
        for a in range(0, n, _BLOCK):
            b = min(a + _BLOCK, n)
            t = total[: b - a]
            np.copyto(t, parts[0][a:b])
            for part in parts[1:]:
                t += part[a:b]
            if x is None:
                if not ok(t):
                    return False
                continue
            p = params[: b - a]
            np.copyto(p, x[a:b])
            v = None
            if vel is not None and velocity is not None:
                v = vel[: b - a]
                np.copyto(v, velocity[a:b])
            rules.server_update(p, t, count, mode, lr, momentum, v)
            if not ok(p) or (v is not None and not ok(v)):
                return False
    return True


class ParameterServerServicer(pb_grpc.ParameterServerServicer, Books):
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
        Books.__init__(self)
        if policy.n_workers != n_workers:
            raise ValueError(f"policy has {policy.n_workers} workers, server {n_workers}")
        if length < 1 or not 0 <= shard_id < n_shards:
            raise ValueError(f"bad shard {shard_id} of {n_shards} with {length} elements")
        self.shard_id, self.offset, self.length = shard_id, offset, length
        self.n_workers, self.n_shards = n_workers, n_shards
        self.total = offset + length if total is None else total
        self.policy, self.lr, self.momentum = policy, lr, momentum
        self._velocity = np.zeros(length, DTYPE) if momentum else None
        least = 3 if policy.aggregate else 2
        self._max_buffers = max(max_buffers or least, least)
        self._live = 0  # model-sized arrays allocated, all kinds
        self._pool: list[np.ndarray] = []  # allocated and idle
        self._readers: Counter[int] = Counter()  # id(array) -> pulls streaming it
        self._params: np.ndarray | None = None
        if initial is not None:
            self._params = np.array(initial, dtype=DTYPE, copy=True).reshape(-1)
            if len(self._params) != length:
                raise ValueError(f"initial has {len(self._params)} elements, shard {length}")
            self._live = 1
        self._round_sum: np.ndarray | None = None  # BSP: sum of this round's pushes
        self._round_mode = ""
        self._round_count = 0
        self._round_iteration = -1  # the iteration the open round's pushes were computed in
        self._received = 0
        self._applied = 0
        self._staleness: Counter[int] = Counter()
        self._bytes_in = 0
        self._bytes_out = 0
        self.clock = clock
        # start, end, staleness, version, the iteration of the push that made the update
        self.applies: list[tuple[float, float, list[int], int, int]] = []
        self._last_iteration = [-1] * n_workers  # per worker, the last push id accepted
        self._non_finite = 0
        self._duplicates = 0
        self.journal = journal
        if journal is not None and journal.exists():
            self._resume(journal)
        elif journal is not None and self._params is not None:
            self._checkpoint()

    # -- durability -----------------------------------------------------------------------

    def _resume(self, journal: Journal) -> None:
        """Load the last checkpoint and replay the journal: the state the dead server acked."""
        state, records = journal.load(self.length * DTYPE.itemsize)
        if len(state.params) != self.length or len(state.clock) != self.n_workers:
            raise ValueError(
                f"{journal.directory} holds a shard of {len(state.params)} elements and "
                f"{len(state.clock)} workers, not {self.length} and {self.n_workers}"
            )
        if (state.velocity is None) != (self._velocity is None):
            raise ValueError(f"{journal.directory}: momentum does not match the checkpoint")
        with self._cond:
            self._params = state.params.astype(DTYPE, copy=False)
            self._live = max(self._live, 1)
            if self._velocity is not None and state.velocity is not None:
                self._velocity[:] = state.velocity
            self.policy.version, self.policy.clock = state.version, list(state.clock)
            self.policy.live = set(state.live)
            self._last_iteration = list(state.last_iteration)
            self._received, self._applied = state.received, state.applied
            for r in records:
                if r.kind == LEAVE:
                    self._leave(r.worker, record=False)
                else:
                    buf = self._new_buffer()
                    buf[:] = np.frombuffer(r.data, DTYPE)
                    self._accept(r.worker, r.iteration, r.computed_on, r.mode, buf, record=False)
            if records:
                self._checkpoint()  # replayed pushes are in no journal from here on

    def _checkpoint(self) -> None:
        """Write a checkpoint (holding ``_cond``), unless a BSP round is open: its pushes
        live in the journal until the round closes."""
        assert self.journal is not None and self._params is not None
        if self._round_sum is not None:
            return
        self.journal.checkpoint(
            State(
                self._params,
                self._velocity,
                self.policy.version,
                list(self.policy.clock),
                sorted(self.policy.live),
                list(self._last_iteration),
                self._received,
                self._applied,
            )
        )

    def checkpoint(self) -> None:
        """A checkpoint now (e.g. on a clean shutdown), if there is a journal and a model."""
        with self._cond:
            if self.journal is not None and self._params is not None:
                self._checkpoint()

    # -- buffers (all under _cond) --------------------------------------------------------

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

    def _apply(self, total: np.ndarray, count: int, mode: str, done: Apply, iteration: int) -> None:
        """Apply ``count`` pushes summing to ``total``, which this call then owns."""
        x = self._params
        assert x is not None
        start = self.clock()
        if self._readers[id(x)]:
            _update(x, total, count, mode, self.lr, self.momentum, self._velocity, out=total)
            self._params = total  # x stays with its readers; the last one releases it
        else:
            _update(x, total, count, mode, self.lr, self.momentum, self._velocity, out=x)
            self._release(total)
        self.applies.append((start, self.clock(), list(done.staleness), done.version, iteration))
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
            asm = tensors.Reassembler(buf)
            asm.feed(first.offset, first.data)
            for chunk in rest:
                asm.feed(chunk.offset, chunk.data)
            asm.finish()
        except tensors.ChunkError as e:
            with self._cond:
                self._release(buf)
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except BaseException:
            with self._cond:
                self._release(buf)
            raise
        with self._cond:
            self._bytes_in += asm.bytes
        return buf

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
        mode = _MODES.get(first.mode)
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
                self._abort(context, _journal_status(e), f"push not applied: {e}")
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
        mode = _MODES[mode_code]
        if self._round_mode and mode != self._round_mode:
            raise PolicyError(f"a {mode} push in a round of {self._round_mode} pushes")
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
        if not self.policy.aggregate:
            assert done is not None
            self._apply(buf, 1, mode, done, iteration)
        elif self._round_sum is None:
            self._round_sum, self._round_mode, self._round_count = buf, mode, 1
            self._round_iteration = iteration
        else:
            self._round_sum += buf
            self._round_count += 1
            self._release(buf)
        if self.policy.aggregate and done is not None:
            self._close_round(done)
        if record and done is not None and self.journal and self.journal.due(done.version):
            # a failed checkpoint loses nothing: the push is applied and in the journal, and
            # the next due checkpoint tries again
            with suppress(OSError):
                self._checkpoint()
        return done

    def _check_result(self, buf: np.ndarray, mode: str, done: Apply | None) -> None:
        """Raise NonFiniteResult if accepting ``buf`` would leave a non-finite value."""
        parts = [buf] if self._round_sum is None else [self._round_sum, buf]
        count = 1 if self._round_sum is None else self._round_count + 1
        x = self._params if done is not None else None
        if not result_finite(x, parts, count, mode, self.lr, self.momentum, self._velocity):
            what = "the round's sum" if x is None else "the parameters"
            raise NonFiniteResult(f"the push would make {what} NaN or Inf (an overflow)")

    def _close_round(self, done: Apply) -> None:
        total, count, mode = self._round_sum, self._round_count, self._round_mode
        assert total is not None
        self._round_sum, self._round_mode, self._round_count = None, "", 0
        self._apply(total, count, mode, done, self._round_iteration)

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
                self._abort(context, _journal_status(e), f"leave not recorded: {e}")
            return pb.LeaveReply(version=self.policy.version)

    def _leave(self, worker: int, record: bool = True) -> None:
        if record and self.journal is not None:
            self.journal.append(Record(LEAVE, worker))
        done = self.policy.leave(worker)
        if done is not None:
            self._close_round(done)
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


def _journal_status(e: JournalError) -> grpc.StatusCode:
    """A full disk is RESOURCE_EXHAUSTED (it may pass); any other I/O failure INTERNAL."""
    cause = e.__cause__
    full = isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)
    return grpc.StatusCode.RESOURCE_EXHAUSTED if full else grpc.StatusCode.INTERNAL


_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class _Malformed:
    """A request that did not parse; the handler answers INVALID_ARGUMENT, not INTERNAL."""

    def __init__(self, error: str) -> None:
        self.error = error


def _lenient(cls: type[Message]) -> Callable[[bytes], Message | _Malformed]:
    def parse(raw: bytes) -> Message | _Malformed:
        try:
            return cls.FromString(raw)
        except Exception as e:  # the sender's error, reported as such
            return _Malformed(f"malformed {cls.__name__}: {e}")

    return parse


def _checked_unary(servicer: Books, fn: Callable) -> Callable:
    def handle(request: Message | _Malformed, context: grpc.ServicerContext) -> object:
        if isinstance(request, _Malformed):
            servicer._abort(context, grpc.StatusCode.INVALID_ARGUMENT, request.error)
        return fn(request, context)

    return handle


def _one_chunk(stream_fn: Callable) -> Callable:
    def handle(chunk: tensors.Chunk, context: grpc.ServicerContext) -> object:
        return stream_fn(iter((chunk,)), context)

    return handle


def service_handler(servicer: Books, service: str) -> grpc.GenericRpcHandler:
    """The handler of one ``pslab.v1`` service, built from the proto's descriptor.

    Unlike the generated ``add_*_to_server``, chunk messages go through the codec of
    :mod:`grpc_ps.tensors`: handlers receive :class:`tensors.Chunk` objects (PushChunk's
    fields, ``data`` a memoryview into the received message) and may yield PullChunks
    pre-encoded as ``bytes``. Peers see plain protobuf either way. A request that does not
    parse is answered INVALID_ARGUMENT (grpcio's own answer would be INTERNAL). A unary
    ``XOne`` method taking a PushChunk is served by ``X``'s handler, as a one-chunk stream.
    """
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name[service].methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        kind = _KINDS[(method.client_streaming, method.server_streaming)]
        if method.client_streaming:
            fn = getattr(servicer, method.name)
        elif request is pb.PushChunk:  # a *One twin: its stream's handler, fed one chunk
            fn = _one_chunk(getattr(servicer, method.name.removesuffix("One")))
        else:
            fn = _checked_unary(servicer, getattr(servicer, method.name))
        handlers[method.name] = kind(
            fn,
            request_deserializer=(
                tensors.decode_push if request is pb.PushChunk else _lenient(request)
            ),
            response_serializer=tensors.as_bytes
            if response is pb.PullChunk
            else response.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(f"pslab.v1.{service}", handlers)


_SERVICES = [
    (pb_grpc.ParameterServerServicer, "ParameterServer"),
    (pb_grpc.LeaderRegistryServicer, "LeaderRegistry"),
    (pb_grpc.CommunicatorServicer, "Communicator"),
]


def serve(
    *servicers: object,
    port: int = 0,
    host: str = "127.0.0.1",
    threads: int | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    options: Sequence[tuple[str, int | str]] = (),
    security: Security | None = None,
    insecure: bool = False,
    max_receive_bytes: int = MAX_RECEIVE_BYTES,
) -> tuple[grpc.Server, int]:
    """Start a server for these servicers (any of the three services); return it and its port.

    Every blocking RPC (a pull waiting for the policy, a push waiting for a buffer) holds a
    thread, so the pool defaults to two per worker plus slack. Channel arguments come from
    :func:`grpc_options` (``options`` override them). The standard health service reports
    SERVING for the server and each service.

    A received message is at most ``max_receive_bytes`` (one chunk and its header, see
    :data:`MAX_RECEIVE_BYTES`): gRPC answers a larger one RESOURCE_EXHAUSTED from its length
    prefix, before buffering it. With the token checked from the metadata before any message
    is read (:class:`grpc_ps.auth.TokenCheck`), a peer without the token can make the server
    hold no request at all.

    ``security`` (default: from the environment, see :mod:`grpc_ps.auth`) sets the token
    every call must carry and TLS; a host other than loopback needs both, or ``insecure``.
    """
    security = Security.from_env() if security is None else security
    check_bind(host, security.tls, bool(security.token), insecure)
    n_workers = max((getattr(s, "n_workers", 1) for s in servicers), default=1)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads or n_workers * 2 + 8),
        options=grpc_options(
            max_message_bytes, [("grpc.max_receive_message_length", max_receive_bytes), *options]
        ),
        interceptors=security.server_interceptors(),
    )
    status = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(status, server)
    status.set("", health_pb2.HealthCheckResponse.SERVING)
    for servicer in servicers:
        for base, name in _SERVICES:
            if isinstance(servicer, base):
                server.add_generic_rpc_handlers((service_handler(servicer, name),))
                status.set(f"pslab.v1.{name}", health_pb2.HealthCheckResponse.SERVING)
                break
        else:
            raise TypeError(f"{type(servicer).__name__} implements no pslab.v1 service")
    creds = security.server_credentials()
    address = f"{host}:{port}"  # an IPv6 host comes bracketed: [::1]
    bound = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    if bound == 0:
        raise RuntimeError(f"could not bind {host}:{port}")
    server.start()
    return server, bound


@contextmanager
def run_server(
    *servicers: object,
    port: int = 0,
    host: str = "127.0.0.1",
    threads: int | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    options: Sequence[tuple[str, int | str]] = (),
    grace: float | None = 1.0,
    security: Security | None = None,
) -> Iterator[tuple[grpc.Server, int]]:
    """:func:`serve` as a context manager: yields ``(server, port)`` and stops it on exit."""
    server, bound = serve(
        *servicers,
        port=port,
        host=host,
        threads=threads,
        max_message_bytes=max_message_bytes,
        options=options,
        security=security,
    )
    try:
        yield server, bound
    finally:
        server.stop(grace).wait()
