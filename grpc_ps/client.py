"""A worker's view of a sharded parameter server: one flat array in, one flat array out.

The worker never sees shards: :class:`PSClient` cuts its flat gradient by the ranges the
servers announced at registration, streams every shard's slice concurrently, and pulls every
shard concurrently straight into the caller's array.

It rides out a server restart: a call that fails UNAVAILABLE (the server died under it) is
retried with exponential backoff until ``retry_for`` seconds have passed, and a new call
waits for the server to be back (``wait_for_ready``) within its deadline. Retrying a push is
safe because the server applies a ``(worker, iteration)`` only once.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf import message_factory
from google.protobuf.message import Message

from grpc_ps import tensors
from grpc_ps.auth import Security
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.server import DTYPE, grpc_options

T = TypeVar("T")
_KINDS = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
DEFAULT_RETRY_S = 60.0
_BACKOFF_S = (0.05, 2.0)  # first and longest pause between attempts


class Retrying:
    """Retries calls that failed UNAVAILABLE, with jittered exponential backoff.

    Counts every failure it saw by status code (``errors``), retried or not.
    """

    def __init__(self, retry_for: float) -> None:
        self.retry_for = retry_for
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, call: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.retry_for
        pause = _BACKOFF_S[0]
        while True:
            try:
                return call()
            except grpc.RpcError as e:
                code = e.code()
                with self._lock:
                    self.errors[code.name] += 1
                if code not in RETRYABLE or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, _BACKOFF_S[1])


def stub(channel: grpc.Channel, service: str) -> SimpleNamespace:
    """A stub of one ``pslab.v1`` service whose chunk streams use :mod:`grpc_ps.tensors`' codec.

    Use it instead of the generated ``*Stub``: PushChunk requests may be the pre-encoded
    ``bytes`` that :func:`tensors.push_chunks` yields (the generated stub would insist on
    messages, and pay ~2 ms per MiB to build them), and PullChunk replies arrive as
    :class:`tensors.Chunk` with ``data`` a view into the received message.
    """
    calls = {}
    for method in pb.DESCRIPTOR.services_by_name[service].methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        make = getattr(channel, _KINDS[(method.client_streaming, method.server_streaming)])
        calls[method.name] = make(
            f"/pslab.v1.{service}/{method.name}",
            request_serializer=(
                tensors.as_bytes if request is pb.PushChunk else request.SerializeToString
            ),
            response_deserializer=(
                tensors.decode_pull if response is pb.PullChunk else response.FromString
            ),
        )
    return SimpleNamespace(**calls)


def send_tensor(
    service: SimpleNamespace,
    method: str,
    flat: np.ndarray,
    chunk_bytes: int,
    timeout: float | None,
    **header: object,
) -> Any:
    """Send ``flat`` to a chunk-streaming ``method``, or to its unary twin ``{method}One``
    when it fits one chunk: grpcio would start a thread to feed the stream, and for a small
    tensor that thread costs more than the send (see the proto). Chunks are at most
    :data:`tensors.MAX_CHUNK_BYTES`, whatever is asked: servers refuse larger messages."""
    chunk_bytes = min(chunk_bytes, tensors.MAX_CHUNK_BYTES)
    chunks = tensors.push_chunks(flat, chunk_bytes, **header)
    if flat.nbytes <= chunk_bytes:
        call, request = getattr(service, f"{method}One"), next(chunks)
    else:
        call, request = getattr(service, method), chunks
    return call(request, timeout=timeout, wait_for_ready=True)


def receive_tensor(
    service: SimpleNamespace,
    method: str,
    request: Message,
    out: np.ndarray,
    chunk_bytes: int,
    timeout: float | None,
) -> int | None:
    """Read a chunk-streaming ``method``'s reply into ``out``, or its unary twin's
    ``{method}One`` when ``out`` fits one chunk (a stream would cost a thread start, see the
    proto); return the header's version, or None when there was nothing to send."""
    step = tensors.clamp_chunk_bytes(chunk_bytes) // out.itemsize * out.itemsize
    if 0 < out.nbytes <= step:
        reply = getattr(service, f"{method}One")(request, timeout=timeout, wait_for_ready=True)
        if not reply.error and reply.total_elements == 0:
            return None
        return tensors.receive_pull([reply], out)
    stream = iter(getattr(service, method)(request, timeout=timeout, wait_for_ready=True))
    first = next(stream, None)
    if first is None:
        return None
    return tensors.receive_pull(itertools.chain([first], stream), out)


class PSClient:
    """One worker's connection to every shard (``addresses[k]`` serves shard k)."""

    def __init__(
        self,
        addresses: list[str],
        worker: int,
        world: int,
        total: int,
        chunk_bytes: int = tensors.DEFAULT_CHUNK_BYTES,
        timeout: float | None = None,
        security: Security | None = None,
        retry_for: float | None = None,
    ) -> None:
        """``timeout``: per-RPC deadline in seconds (None: none, blocking pulls may wait long).

        ``security``: token and TLS (default: from the environment). ``retry_for``: how long
        to keep retrying a call through a server restart (default: ``timeout``, or 60 s).
        """
        self.worker, self.world, self.total = worker, world, total
        self.chunk_bytes, self.timeout = chunk_bytes, timeout
        security = Security.from_env() if security is None else security
        self._channels = [security.channel(a, grpc_options()) for a in addresses]
        self.retry = Retrying(retry_for or timeout or DEFAULT_RETRY_S)
        self._stubs = [stub(c, "ParameterServer") for c in self._channels]
        self._pool = ThreadPoolExecutor(max_workers=len(addresses), thread_name_prefix="ps-shard")
        self.shards: list[pb.ShardMap] = []
        self.versions: list[int] = [0] * len(addresses)  # per shard, from the last pull

    def _each(self, fn: Callable[[int], T]) -> list[T]:
        """Run ``fn(k)`` (retrying) for every shard concurrently; re-raise the first failure."""

        def retried(k: int) -> T:
            return self.retry(lambda: fn(k))

        if len(self._stubs) == 1:
            return [retried(0)]
        return list(self._pool.map(retried, range(len(self._stubs))))

    def _slice(self, flat: np.ndarray, k: int) -> np.ndarray:
        s = self.shards[k]
        return flat[s.offset : s.offset + s.length]

    def _check(self, flat: np.ndarray) -> None:
        if not self.shards:
            raise RuntimeError("register() first")
        if flat.shape != (self.total,) or flat.dtype != DTYPE or not flat.flags.c_contiguous:
            raise ValueError(f"expected a contiguous float32 array of {self.total} elements")

    def register(self) -> list[pb.ShardMap]:
        """Announce this worker to every shard; check their ranges tile the model exactly."""
        req = pb.RegisterRequest(
            worker=self.worker, world=self.world, total_elements=self.total, dtype=pb.DTYPE_FLOAT32
        )
        maps = self._each(
            lambda k: self._stubs[k].Register(req, timeout=self.timeout, wait_for_ready=True)
        )
        start = 0
        for k, m in enumerate(maps):
            if m.shard_id != k or m.num_shards != len(maps) or m.offset != start:
                raise RuntimeError(f"address {k} serves shard {m.shard_id}: maps do not tile")
            start += m.length
        if start != self.total:
            raise RuntimeError(f"shards hold {start} elements, model has {self.total}")
        self.shards = maps
        self.versions = [m.version for m in maps]
        return maps

    def init(self, flat: np.ndarray) -> bool:
        """Offer initial parameters; True if every shard took them (first offer wins).

        Let one worker (rank 0) do this, so that all shards start from the same model.
        """
        self._check(flat)
        replies = self._each(
            lambda k: self._stubs[k].Init(
                tensors.push_chunks(self._slice(flat, k), self.chunk_bytes, shard_id=k),
                timeout=self.timeout,
                wait_for_ready=True,
            )
        )
        return all(r.applied for r in replies)

    def push(
        self,
        flat: np.ndarray,
        iteration: int,
        computed_on: int | None = None,
        mode: int = pb.PUSH_MODE_GRAD,
    ) -> list[pb.PushReply]:
        """Push a gradient (or delta) to every shard concurrently.

        ``computed_on`` defaults to each shard's version from the last pull, which is what
        staleness must be measured against when shards advance independently (ASP).
        """
        self._check(flat)

        def one(k: int) -> pb.PushReply:
            return send_tensor(
                self._stubs[k],
                "Push",
                self._slice(flat, k),
                self.chunk_bytes,
                self.timeout,
                worker=self.worker,
                shard_id=k,
                iteration=iteration,
                computed_on=self.versions[k] if computed_on is None else computed_on,
                mode=mode,
            )

        return self._each(one)

    def pull(self, out: np.ndarray, iteration: int = 0) -> int:
        """Pull every shard concurrently into ``out``; return the lowest shard version.

        Blocks while the consistency policy holds this worker back (BSP, SSP).
        """
        self._check(out)

        def one(k: int) -> int:
            req = pb.PullRequest(
                worker=self.worker, shard_id=k, iteration=iteration, chunk_bytes=self.chunk_bytes
            )
            part = self._slice(out, k)
            version = receive_tensor(
                self._stubs[k], "Pull", req, part, req.chunk_bytes, self.timeout
            )
            if version is None:
                raise tensors.ChunkError(f"shard {k} sent nothing")
            return version

        versions = self._each(one)
        if any(new < old for new, old in zip(versions, self.versions, strict=True)):
            raise RuntimeError(f"shard versions went backward: {self.versions} -> {versions}")
        self.versions = versions
        return min(versions)

    def leave(self) -> None:
        """Tell every shard this worker is gone, so it no longer holds a round or others back."""
        req = pb.LeaveRequest(worker=self.worker)
        self._each(lambda k: self._stubs[k].Leave(req, timeout=self.timeout, wait_for_ready=True))

    def stats(self) -> list[pb.StatsReply]:
        return self._each(
            lambda k: self._stubs[k].Stats(
                pb.StatsRequest(), timeout=self.timeout, wait_for_ready=True
            )
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for c in self._channels:
            c.close()

    def __enter__(self) -> PSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
