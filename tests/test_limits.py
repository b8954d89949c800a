"""Stalled or greedy peers cannot starve a server (issue 19), over real gRPC on 127.0.0.1.

Calls that can block or carry data are admitted against per-peer and global limits on
calls in progress and on request bytes held (grpc_ps.limits); past them a call is answered
RESOURCE_EXHAUSTED at once, and health and Stats, which are never admitted, always find a
thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import grpc
import numpy as np
import pytest
from test_hardening import TIMEOUT, N, code_of, push_one, serving, shard

from grpc_ps import tensors
from grpc_ps.auth import Security
from grpc_ps.limits import Admission, Limits
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.server import ParameterServerServicer, run_server

PUSH = "/pslab.v1.ParameterServer/Push"
TOKEN = "limits-test-token"


def stats(channel: grpc.Channel) -> pb.StatsReply:
    rpc = channel.unary_unary(
        "/pslab.v1.ParameterServer/Stats", response_deserializer=pb.StatsReply.FromString
    )
    return rpc(pb.StatsRequest().SerializeToString(), timeout=TIMEOUT)


def channel_to(port: int, security: Security | None = None) -> grpc.Channel:
    """A channel with its own connection (a peer of its own), the token if given."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    if security is not None:
        return security.channel(f"127.0.0.1:{port}", options)
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=options)


def stalled_pushes(channel: grpc.Channel, n: int, release: threading.Event) -> list[grpc.Future]:
    """``n`` pushes that send their first chunk and then stall until ``release``."""

    def chunks() -> Iterator[bytes]:
        x = np.ones(N, np.float32)
        yield next(tensors.push_chunks(x, 2 * N, shard_id=0, worker=0, mode=pb.PUSH_MODE_DELTA))
        release.wait()

    rpc = channel.stream_unary(PUSH, response_deserializer=pb.PushReply.FromString)
    return [rpc.future(chunks(), timeout=60) for _ in range(n)]


def wait_admitted(servicer: ParameterServerServicer, deadline: float = 20.0) -> None:
    """Until the first stalled push holds the shard's buffer (the others wait for it)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with servicer._cond:
            if servicer._live == servicer._max_buffers:  # the first one holds the buffer
                return
        time.sleep(0.01)
    raise AssertionError("the stalled pushes never reached the server")


def refused_once_all_are_in(channel: grpc.Channel) -> grpc.StatusCode:
    """A push's code once the stalled ones are all admitted: until then one may be let in
    and time out waiting for the buffer (DEADLINE_EXCEEDED), so try again."""
    for _ in range(30):
        code = code_of(push_one, channel, np.ones(N), 0, timeout=1.0)
        if code != grpc.StatusCode.DEADLINE_EXCEEDED:
            return code
    return code


def test_sixteen_stalled_authenticated_pushes_leave_health_and_stats_answering() -> None:
    security = Security(token=TOKEN)
    servicer = shard()
    release = threading.Event()
    with ExitStack() as stack:
        _, port = stack.enter_context(run_server(servicer, grace=None, security=security))
        channel = stack.enter_context(channel_to(port, security))
        try:
            futures = stalled_pushes(channel, 16, release)
            wait_admitted(servicer)
            assert serving(channel)  # the health check holds no token and needs none
            assert stats(channel).version == 0
            # the peer's limit is reached (16 = 4 x 2 workers + 8): the next is refused
            assert refused_once_all_are_in(channel) == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            release.set()
        codes = {f.exception().code() if f.exception() else None for f in futures}
        assert grpc.StatusCode.RESOURCE_EXHAUSTED not in codes
        assert stats(channel).rejected["RESOURCE_EXHAUSTED"] == 1


def test_per_peer_and_global_limits_on_calls_in_progress() -> None:
    servicer = shard()
    release = threading.Event()
    limits = Limits(streams=3, streams_per_peer=2, bytes=1 << 20)
    with ExitStack() as stack:
        _, port = stack.enter_context(run_server(servicer, grace=None, limits=limits))
        a, b, c = (stack.enter_context(channel_to(port)) for _ in range(3))
        try:
            held = stalled_pushes(a, 2, release)
            wait_admitted(servicer)
            with pytest.raises(grpc.RpcError) as err:
                push_one(a, np.ones(N), 0)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "from this peer" in (err.value.details() or "")
            held += stalled_pushes(b, 1, release)  # another peer still gets in ...
            assert refused_once_all_are_in(c) == grpc.StatusCode.RESOURCE_EXHAUSTED
            with pytest.raises(grpc.RpcError) as err:  # ... until the server's limit
                push_one(c, np.ones(N), 0)
            assert "calls in progress, its limit" in (err.value.details() or "")
            assert serving(c) and stats(c).version == 0
        finally:
            release.set()
        for f in held:
            f.exception()  # every stalled push ends (its stream was cut short)
        assert push_one(c, np.ones(N), 0).applied  # the limits free up as calls end


def test_a_message_past_the_byte_limit_is_refused_and_the_server_serves() -> None:
    servicer = shard()
    limits = Limits(streams=8, streams_per_peer=8, bytes=4 * N - 1)
    with ExitStack() as stack:
        _, port = stack.enter_context(run_server(servicer, grace=None, limits=limits))
        channel = stack.enter_context(channel_to(port))
        assert code_of(push_one, channel, np.ones(N), 0) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert servicer.policy.version == 0
        assert stats(channel).rejected["RESOURCE_EXHAUSTED"] == 1
        assert serving(channel)


def test_admission_books_balance() -> None:
    admission = Admission(Limits(streams=2, streams_per_peer=1, bytes=10))
    assert admission.enter("p") == ""
    assert "this peer" in admission.enter("p")
    assert admission.enter("q") == ""
    assert "calls in progress" in admission.enter("r")
    assert admission.hold(6) and not admission.hold(5) and admission.hold(4)
    admission.drop(10)
    admission.leave("p")
    admission.leave("q")
    assert admission.snapshot() == (0, 0)
    assert admission.enter("p") == ""
    with pytest.raises(ValueError):
        Limits(streams=0, streams_per_peer=1, bytes=1)
