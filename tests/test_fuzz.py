"""Fuzz every RPC of every servicer over real gRPC on loopback.

Random and malformed messages and streams (protobuf messages with arbitrary fields, raw
bytes, near-valid pushes with NaN/Inf, huge finite values or push ids at the edge of their
range, streams cut off mid-way) go through a generic channel, so nothing client-side filters
them. Four properties hold for every input: the answer is OK or a client-error status
(never INTERNAL or UNKNOWN, which would be a crash in a handler), the server keeps serving,
state is bitwise unchanged by anything rejected, and both workers can still register.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from grpc_ps import tensors
from grpc_ps.communicator import CommunicatorServicer
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.server import LeaderRegistryServicer, ParameterServerServicer, serve
from pslab.policies import StalenessPolicy

N = 16
TIMEOUT = 2.0
BLOCKING = {"Fetch", "FetchOne", "Broadcast", "BroadcastOne"}  # may wait forever: short deadline
CLIENT_ERRORS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
FD = descriptor.FieldDescriptor
METHODS = [
    (service.name, method)
    for service in pb.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
tried: list[str] = []


def _field(f: descriptor.FieldDescriptor) -> st.SearchStrategy:
    near = st.integers(0, 2 * N)
    return {
        FD.TYPE_UINT32: st.one_of(near, st.integers(0, 2**32 - 1)),
        FD.TYPE_UINT64: st.one_of(near, st.integers(0, 2**64 - 1)),
        FD.TYPE_DOUBLE: st.floats(),
        FD.TYPE_STRING: st.sampled_from(["", "global", "all", "0:16", "x" * 40]),
        FD.TYPE_BOOL: st.booleans(),
        FD.TYPE_ENUM: st.integers(0, 5),
        FD.TYPE_BYTES: st.binary(max_size=4 * N + 5),
    }[f.type]


def messages(cls: type) -> st.SearchStrategy[bytes]:
    """Any message of ``cls`` (every field optional and arbitrary), serialised, or raw bytes."""
    fields = {f.name: _field(f) for f in cls.DESCRIPTOR.fields}
    built = st.fixed_dictionaries({}, optional=fields).map(lambda d: cls(**d).SerializeToString())
    return st.one_of(built, st.binary(max_size=80))


# push ids at and past the edge of their range (the journal's signed int64, id + 1 in Register)
EDGE_IDS = [2**63 - 2, 2**63 - 1, 2**63, 2**64 - 1]
HUGE = [3e38, -3e38, 3.4028235e38]  # finite, but two of them overflow float32


@st.composite
def near_valid_push(draw: st.DrawFn) -> list[bytes]:
    """A push that gets far into the handlers: right shape, maybe NaN/Inf or huge finite
    values, maybe a bad field or a push id at the edge of its range."""
    elements = st.one_of(st.floats(width=32), st.sampled_from(HUGE))
    x = draw(arrays(np.float32, N, elements=elements))
    header = {
        "worker": draw(st.integers(0, 2)),
        "shard_id": 0,
        "iteration": draw(st.one_of(st.integers(0, 5), st.sampled_from(EDGE_IDS))),
        "computed_on": draw(st.integers(0, 3)),
        "mode": draw(st.integers(0, 2)),
        "key": draw(st.sampled_from(["global", "all"])),
    }
    chunk = draw(st.sampled_from([4 * N, 4 * N // 2, 12]))
    return list(tensors.push_chunks(x, chunk, **header))


@st.composite
def cut_push(draw: st.DrawFn) -> tuple[list[bytes], bool]:
    """A near-valid push whose sender dies before its last chunk: nothing may be applied.

    (gRPC may show the server a cancelled stream as ended, so cutting a stream that already
    held the whole tensor could legitimately apply it; such a push is retried by its id.)
    """
    items = draw(near_valid_push().filter(lambda items: len(items) > 1))
    return items[: draw(st.integers(0, len(items) - 1))], True


def streams() -> st.SearchStrategy[tuple[list[bytes], bool]]:
    """(items, cut): a stream of chunks, or one cut off by the client after its items."""
    whole = st.one_of(near_valid_push(), st.lists(messages(pb.PushChunk), max_size=3))
    return st.one_of(st.tuples(whole, st.just(False)), cut_push())


def calls() -> st.SearchStrategy:
    options = []
    for service, method in METHODS:
        cls = message_factory.GetMessageClass(method.input_type)
        payload = streams() if method.client_streaming else messages(cls)
        options.append(st.tuples(st.just(service), st.just(method), payload))
    return st.one_of(options)


def _stream(items: list[bytes], cut: bool) -> Iterator[bytes]:
    yield from items
    if cut:
        raise RuntimeError("the worker died mid-stream")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[grpc.Channel, list]]:
    ps = ParameterServerServicer(0, 0, N, 2, StalenessPolicy(2), 0.5, initial=np.arange(N))
    registry = LeaderRegistryServicer([[0, 1]], max_elements=N)
    comm = CommunicatorServicer([0, 1], max_elements=N, timeout=1.0)
    srv, port = serve(ps, registry, comm)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, [ps, registry, comm]
    srv.stop(None)
    print(f"\nfuzz: tried {len(tried)} inputs over {len(METHODS)} RPCs: {dict(Counter(tried))}")


def snapshot(servicers: list) -> tuple:
    """Every tensor the servers hold, as bytes: what no rejected input may change."""
    ps, registry, comm = servicers
    with ps._cond, registry._cond, comm._cond:
        return (
            ps._params.tobytes(),
            ps.policy.version,
            {k: (r, a.tobytes()) for k, (r, a) in registry._published.items()},
            {k: (sorted(w), a.tobytes()) for k, (w, a) in comm._sums.items()},
        )


@pytest.mark.slow  # about 10 s
@settings(
    max_examples=600,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(call=calls())
def test_fuzz_every_rpc(server, call) -> None:
    channel, servicers = server
    service, method, payload = call
    path = f"/pslab.v1.{service}/{method.name}"
    make = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[(method.client_streaming, method.server_streaming)]
    rpc = make(path)  # no serialisers: bytes go out exactly as drawn
    timeout = 0.05 if method.name in BLOCKING else TIMEOUT
    request = _stream(*payload) if method.client_streaming else payload
    before = snapshot(servicers)
    cut = method.client_streaming and payload[1]
    try:
        reply = rpc(request, timeout=timeout)
        if method.server_streaming:
            list(reply)
        code = grpc.StatusCode.OK
    except grpc.RpcError as e:
        code = e.code()
    tried.append(method.name)
    if not cut:  # a client that cut its own stream sees its own cancellation
        assert code in CLIENT_ERRORS, (path, code)
    if code != grpc.StatusCode.OK:
        assert snapshot(servicers) == before, (path, code)
    stats = channel.unary_unary(
        "/pslab.v1.ParameterServer/Stats", response_deserializer=pb.StatsReply.FromString
    )
    assert stats(pb.StatsRequest().SerializeToString(), timeout=TIMEOUT).version >= 0
    register = channel.unary_unary("/pslab.v1.ParameterServer/Register")
    for worker in (0, 1):  # no push id may leave a worker unable to register
        request = pb.RegisterRequest(
            worker=worker, world=2, total_elements=N, dtype=pb.DTYPE_FLOAT32
        )
        try:
            register(request.SerializeToString(), timeout=TIMEOUT)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e  # only: it has left


# -- without the token: large messages to every RPC ------------------------------------------

TOKEN = "fuzz-test-token"
LARGE = [0, 1 << 10, 1 << 20, 8 << 20, tensors.MAX_CHUNK_BYTES + (1 << 20)]  # last: oversized
unauthenticated: list[str] = []


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[grpc.Channel, list]]:
    """The same three servicers behind a token; a channel that sends none, or a wrong one."""
    from grpc_ps.auth import Security

    ps = ParameterServerServicer(0, 0, N, 2, StalenessPolicy(2), 0.5, initial=np.arange(N))
    registry = LeaderRegistryServicer([[0, 1]], max_elements=N)
    comm = CommunicatorServicer([0, 1], max_elements=N, timeout=1.0)
    srv, port = serve(ps, registry, comm, security=Security(token=TOKEN))
    options = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        yield channel, [ps, registry, comm]
    srv.stop(None)
    print(f"\nfuzz: {len(unauthenticated)} unauthenticated inputs, all refused")


@st.composite
def large_unauthenticated(draw: st.DrawFn) -> tuple[str, descriptor.MethodDescriptor, bytes, str]:
    service, method = draw(st.sampled_from(METHODS))
    size = draw(st.sampled_from(LARGE))
    worker, iteration = draw(st.integers(0, 2)), draw(st.sampled_from(EDGE_IDS))
    body = pb.PushChunk(worker=worker, iteration=iteration, data=bytes(size)).SerializeToString()
    token = draw(st.sampled_from(["", "Bearer wrong", f"Bearer {TOKEN}x", TOKEN]))
    return service, method, body, token


@pytest.mark.slow  # about 10 s: some 60 messages of up to 17 MB
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(call=large_unauthenticated())
def test_fuzz_without_the_token(guarded, call) -> None:
    """Refused, whatever the method and however large: UNAUTHENTICATED from the metadata
    (or RESOURCE_EXHAUSTED for a message past the receive limit), nothing changed."""
    channel, servicers = guarded
    service, method, body, token = call
    path = f"/pslab.v1.{service}/{method.name}"
    make = channel.stream_unary if method.client_streaming else channel.unary_unary
    if method.server_streaming:
        make = channel.stream_stream if method.client_streaming else channel.unary_stream
    rpc = make(path)
    metadata = [("authorization", token)] if token else None
    before = snapshot(servicers)
    request = iter([body]) if method.client_streaming else body
    with pytest.raises(grpc.RpcError) as err:
        reply = rpc(request, timeout=TIMEOUT * 5, metadata=metadata)
        if method.server_streaming:
            list(reply)
    refused = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert err.value.code() in refused, (path, err.value.code())
    assert snapshot(servicers) == before
    unauthenticated.append(method.name)
