"""Unary twins of the server streams (PullOne, FetchOne, BroadcastOne) over real gRPC.

grpcio's client starts a thread to drive a server-streaming call on an idle channel; a pull
that fits one chunk goes unary instead, with the same answers as the stream.
"""

from __future__ import annotations

from contextlib import ExitStack
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from grpc_ps import tensors
from grpc_ps.client import PSClient, receive_tensor
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.pb import ps_pb2_grpc as pb_grpc
from grpc_ps.peers import RegistryClient
from grpc_ps.server import LeaderRegistryServicer, ParameterServerServicer, run_server
from pslab.policies import StalenessPolicy

N = 10_000
TIMEOUT = 20.0
X0 = np.arange(N, dtype=np.float32)


def test_a_pull_that_fits_one_chunk_goes_unary_and_a_larger_one_streams() -> None:
    calls: list[str] = []

    def record(name: str) -> object:
        def call(request: object, **kw: object) -> object:
            calls.append(name)
            return iter(()) if name == "Pull" else tensors.decode_pull(b"")

        return call

    service = SimpleNamespace(Pull=record("Pull"), PullOne=record("PullOne"))
    req = pb.PullRequest()
    assert receive_tensor(service, "Pull", req, np.empty(1024, np.float32), 4096, None) is None
    assert receive_tensor(service, "Pull", req, np.empty(1025, np.float32), 4096, None) is None
    assert calls == ["PullOne", "Pull"]


def test_unary_and_streamed_pulls_return_the_same_bits() -> None:
    servicer = ParameterServerServicer(0, 0, N, 1, StalenessPolicy(1), 0.5, initial=X0)
    results = []
    with run_server(servicer, grace=None) as (_, port):
        for chunk_bytes in (4096, N * 4):  # three chunks streamed, then one unary reply
            with ExitStack() as stack:
                c = stack.enter_context(
                    PSClient([f"127.0.0.1:{port}"], 0, 1, N, chunk_bytes, timeout=TIMEOUT)
                )
                c.register()
                out = np.empty(N, np.float32)
                results.append((c.pull(out), out))
    (v0, a), (v1, b) = results
    assert v0 == v1 == 0
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    assert np.array_equal(b, X0)


def test_pull_one_of_a_tensor_over_one_chunk_is_refused_and_the_server_keeps_serving() -> None:
    servicer = ParameterServerServicer(0, 0, N, 1, StalenessPolicy(1), 0.5, initial=X0)
    with run_server(servicer, grace=None) as (_, port):
        stub = pb_grpc.ParameterServerStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        with pytest.raises(grpc.RpcError) as err:
            stub.PullOne(pb.PullRequest(worker=0, chunk_bytes=4096), timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as err:
            stub.PullOne(pb.PullRequest(worker=0, shard_id=3), timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        reply = stub.PullOne(pb.PullRequest(worker=0, chunk_bytes=N * 4), timeout=TIMEOUT)
        assert reply.total_elements == N
        assert np.array_equal(np.frombuffer(reply.data, np.float32), X0)


def test_fetch_one_says_nothing_was_published_then_reads_what_was() -> None:
    with run_server(LeaderRegistryServicer([[0, 1]], 64), grace=None) as (_, port):
        client = RegistryClient(f"127.0.0.1:{port}", 1 << 20, TIMEOUT)
        out = np.zeros(64, np.float32)
        assert client.fetch("worker-0", 0, False, out) is False
        client.publish("worker-0", 3, np.full(64, 2.5, np.float32))
        assert client.fetch("worker-0", 1, False, out) is True
        assert np.array_equal(out, np.full(64, 2.5, np.float32))
        client.close()
