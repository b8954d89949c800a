"""Serving the pslab.v1 services: channel arguments, handlers, admission, the server itself.

The servicers live in their own modules (:mod:`grpc_ps.shard`, :mod:`grpc_ps.registry`,
:mod:`grpc_ps.communicator`); this module turns them into a gRPC server: handlers built from
the proto's descriptor around the zero-copy chunk codec of :mod:`grpc_ps.tensors`, calls
admitted against :class:`grpc_ps.limits.Limits`, the token checked before any message is
read, and the standard health service. The servicers are re-exported here, the one place
that starts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager

import grpc
from google.protobuf import message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from grpc_ps import tensors
from grpc_ps.auth import Security, check_bind
from grpc_ps.books import Books
from grpc_ps.limits import RESERVE, Admission, Limits
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.pb import ps_pb2_grpc as pb_grpc
from grpc_ps.registry import LeaderRegistryServicer
from grpc_ps.shard import ParameterServerServicer
from grpc_ps.updates import DTYPE, result_finite

__all__ = [
    "DTYPE",
    "MAX_RECEIVE_BYTES",
    "Books",
    "LeaderRegistryServicer",
    "Limits",
    "ParameterServerServicer",
    "grpc_options",
    "result_finite",
    "run_server",
    "serve",
]

MAX_MESSAGE_BYTES = 64 << 20
# The largest message a server receives: one chunk (a stream's message, or a *One twin's
# whole request) and its header. A larger one is refused by gRPC before it is buffered, so
# what a peer, authenticated or not, can make the server hold is bounded per call.
MAX_RECEIVE_BYTES = tensors.MAX_CHUNK_BYTES + tensors.HEADER_ROOM
WINDOW_BYTES = 2 << 20
CHEAP = frozenset({"Register", "Leave", "Stats"})  # never block, carry no data: not admitted


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


def _single_chunk(servicer: Books, stream_fn: Callable) -> Callable:
    """A unary twin of a server stream (``PullOne`` of ``Pull``): its one chunk, or an empty
    PullChunk where the stream would have sent nothing."""

    def handle(request: Message | _Malformed, context: grpc.ServicerContext) -> object:
        if isinstance(request, _Malformed):
            servicer._abort(context, grpc.StatusCode.INVALID_ARGUMENT, request.error)
        chunks = iter(stream_fn(request, context))
        first = next(chunks, None)
        extra = next(chunks, None) if first is not None else None
        if extra is not None:
            chunks.close()  # type: ignore[attr-defined]  # releases what the stream held
            servicer._abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "the tensor does not fit one chunk: use the streaming call",
            )
        return pb.PullChunk() if first is None else first

    return handle


def _admitted(servicer: Books, admission: Admission, fn: Callable, streaming: bool) -> Callable:
    """``fn`` run only once :class:`Admission` lets its call in (RESOURCE_EXHAUSTED if not),
    its request chunks' bytes held while the handler works on them."""

    def enter(context: grpc.ServicerContext) -> str:
        peer = context.peer()
        refused = admission.enter(peer)
        if refused:
            servicer._abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        return peer

    def held(chunks: Iterator, context: grpc.ServicerContext) -> Iterator:
        for chunk in chunks:  # waiting for the next chunk, the call holds none
            size = len(chunk.data) if isinstance(chunk, tensors.Chunk) else 0
            if not admission.hold(size):
                servicer._abort(
                    context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the server holds its limit of {admission.limits.bytes} request bytes",
                )
            try:
                yield chunk
            finally:
                admission.drop(size)

    def wrap(req: object, context: grpc.ServicerContext) -> object:
        return held(req, context) if isinstance(req, Iterator) else req

    if streaming:  # a response stream: admitted when grpc asks for its first message

        def stream(req: object, context: grpc.ServicerContext) -> Iterator:
            peer = enter(context)
            try:
                yield from fn(wrap(req, context), context)
            finally:
                admission.leave(peer)

        return stream

    def unary(req: object, context: grpc.ServicerContext) -> object:
        peer = enter(context)
        try:
            return fn(wrap(req, context), context)
        finally:
            admission.leave(peer)

    return unary


def service_handler(
    servicer: Books, service: str, admission: Admission | None = None
) -> grpc.GenericRpcHandler:
    """The handler of one ``pslab.v1`` service, built from the proto's descriptor.

    Unlike the generated ``add_*_to_server``, chunk messages go through the codec of
    :mod:`grpc_ps.tensors`: handlers receive :class:`tensors.Chunk` objects (PushChunk's
    fields, ``data`` a memoryview into the received message) and may yield PullChunks
    pre-encoded as ``bytes``. Peers see plain protobuf either way. A request that does not
    parse is answered INVALID_ARGUMENT (grpcio's own answer would be INTERNAL). A unary
    ``XOne`` method taking a PushChunk is served by ``X``'s handler, as a one-chunk stream;
    one answering a PullChunk by ``X``'s handler, as its stream's single chunk.
    Every method but the :data:`CHEAP` ones is admitted by ``admission`` (None: all are).
    """
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name[service].methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        kind = _KINDS[(method.client_streaming, method.server_streaming)]
        one = not method.client_streaming and request is pb.PushChunk  # a *One twin
        single = response is pb.PullChunk and not method.server_streaming  # PullOne and kin
        name = method.name.removesuffix("One") if one or single else method.name
        fn = getattr(servicer, name)
        if admission is not None and method.name not in CHEAP:
            fn = _admitted(servicer, admission, fn, method.server_streaming or single)
        if one:  # its stream's handler, fed one chunk
            fn = _one_chunk(fn)
        elif single:  # its stream's handler, answered by the stream's only chunk
            fn = _single_chunk(servicer, fn)
        elif not method.client_streaming:
            fn = _checked_unary(servicer, fn)
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
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    options: Sequence[tuple[str, int | str]] = (),
    security: Security | None = None,
    insecure: bool = False,
    max_receive_bytes: int = MAX_RECEIVE_BYTES,
    limits: Limits | None = None,
) -> tuple[grpc.Server, int]:
    """Start a server for these servicers (any of the three services); return it and its port.

    Every blocking RPC (a pull waiting for the policy, a push waiting for a buffer) holds a
    thread. Such calls are admitted against ``limits`` (default: room for the servicers'
    workers, :meth:`Limits.for_workers`), and the pool has :data:`~grpc_ps.limits.RESERVE`
    threads more, so stalled peers cannot starve health and Stats. Channel arguments come
    from :func:`grpc_options` (``options`` override them). The standard health service
    reports SERVING for the server and each service.

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
    limits = limits or Limits.for_workers(n_workers, max_receive_bytes)
    admission = Admission(limits)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.streams + RESERVE),
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
                assert isinstance(servicer, Books)
                server.add_generic_rpc_handlers((service_handler(servicer, name, admission),))
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
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    options: Sequence[tuple[str, int | str]] = (),
    grace: float | None = 1.0,
    security: Security | None = None,
    limits: Limits | None = None,
) -> Iterator[tuple[grpc.Server, int]]:
    """:func:`serve` as a context manager: yields ``(server, port)`` and stops it on exit."""
    server, bound = serve(
        *servicers,
        port=port,
        host=host,
        max_message_bytes=max_message_bytes,
        options=options,
        security=security,
        limits=limits,
    )
    try:
        yield server, bound
    finally:
        server.stop(grace).wait()
