"""What a crafted or unlucky push must not do, over real gRPC on 127.0.0.1 (issue 19).

Each test names one way a server could be wedged, fooled or filled: push ids past their
wire range, a journal write that fails, an update that overflows, and messages larger than
a chunk; the property is always the same: the push is refused with a status, the state is
as before, and the server keeps serving.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grpc_ps import checkpoint, tensors
from grpc_ps.checkpoint import MAX_ID, Journal
from grpc_ps.client import PSClient
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.server import MAX_RECEIVE_BYTES, ParameterServerServicer, run_server
from pslab.policies import StalenessPolicy

N = 64
TIMEOUT = 5.0


def shard(journal: Journal | None = None, **kw: object) -> ParameterServerServicer:
    policy = StalenessPolicy(2)
    return ParameterServerServicer(
        0, 0, N, 2, policy, 0.5, initial=np.zeros(N), journal=journal, **kw
    )


@contextmanager
def served(servicer: ParameterServerServicer) -> Iterator[grpc.Channel]:
    with run_server(servicer, grace=None) as (_, port):
        options = [("grpc.max_send_message_length", 64 << 20)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            yield channel


def push_one(
    channel: grpc.Channel,
    x: np.ndarray,
    iteration: int,
    mode: int = pb.PUSH_MODE_DELTA,
    timeout: float = TIMEOUT,
    **kw: object,
) -> pb.PushReply:
    """A push as one raw PushOne message: nothing client-side checks or clamps it."""
    x = np.asarray(x, np.float32)
    header = {"worker": 0, "shard_id": 0, "computed_on": 0, **kw}
    header.update(iteration=iteration, mode=mode, total_elements=len(x), dtype=pb.DTYPE_FLOAT32)
    message = tensors.encode(pb.PushChunk(**header), memoryview(x).cast("B"))
    rpc = channel.unary_unary(
        "/pslab.v1.ParameterServer/PushOne", response_deserializer=pb.PushReply.FromString
    )
    return rpc(message, timeout=timeout)


def code_of(call, *args, **kw) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call(*args, **kw)
    return err.value.code()


def params(servicer: ParameterServerServicer) -> tuple[bytes, int]:
    with servicer._cond:
        assert servicer._params is not None
        return servicer._params.tobytes(), servicer.policy.version


def serving(channel: grpc.Channel) -> bool:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def register_next(channel: grpc.Channel, worker: int = 0) -> int:
    rpc = channel.unary_unary(
        "/pslab.v1.ParameterServer/Register",
        request_serializer=pb.RegisterRequest.SerializeToString,
        response_deserializer=pb.ShardMap.FromString,
    )
    request = pb.RegisterRequest(worker=worker, world=2, total_elements=N, dtype=pb.DTYPE_FLOAT32)
    return rpc(request, timeout=TIMEOUT).next_iteration


@pytest.mark.parametrize("journaled", [False, True])
@pytest.mark.parametrize("iteration", [MAX_ID + 1, 2**63, 2**64 - 1])
def test_push_ids_past_their_range_change_nothing(tmp_path, journaled, iteration) -> None:
    journal = Journal(tmp_path) if journaled else None
    servicer = shard(journal)
    with served(servicer) as channel:
        before = params(servicer)
        code = code_of(push_one, channel, np.ones(N), iteration)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert params(servicer) == before
        assert register_next(channel) == 0  # not poisoned: the worker carries on
        assert push_one(channel, np.ones(N), MAX_ID).applied  # the largest id still works
        assert register_next(channel) == MAX_ID + 1
        assert push_one(channel, np.ones(N), 0).duplicate
        assert push_one(channel, np.ones(N), 1, worker=1).applied  # and later pushes
        assert serving(channel)
    if journal is not None:
        journal.close()
        resumed = shard(Journal(tmp_path))
        assert params(resumed) == params(servicer)


def test_a_failed_journal_write_refuses_the_push_and_the_server_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path)
    servicer = shard(journal)
    real_fsync = checkpoint.os.fsync
    failures = [OSError(errno.ENOSPC, "No space left on device")]

    def fsync(fd: int) -> None:
        if failures:
            raise failures.pop()
        real_fsync(fd)

    with served(servicer) as channel:
        assert push_one(channel, np.ones(N), 0).applied
        before = params(servicer)
        size = (tmp_path / f"journal-{journal.generation}.log").stat().st_size
        monkeypatch.setattr(checkpoint.os, "fsync", fsync)
        code = code_of(push_one, channel, np.full(N, 2.0), 1)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert params(servicer) == before  # version, parameters: as before
        assert (tmp_path / f"journal-{journal.generation}.log").stat().st_size == size
        assert register_next(channel) == 1  # the refused id is free to be sent again
        assert push_one(channel, np.full(N, 2.0), 1).applied  # its retry goes through
        assert push_one(channel, np.full(N, 3.0), 2).applied  # and so do later ones
        assert serving(channel)
        live = params(servicer)
    journal.close()
    assert params(shard(Journal(tmp_path))) == live  # the journal holds what was acked


def test_an_update_that_would_overflow_is_refused_and_counted() -> None:
    servicer = shard()
    with served(servicer) as channel:
        assert push_one(channel, np.full(N, 3e38), 0).applied
        before = params(servicer)
        code = code_of(push_one, channel, np.full(N, 3e38), 1)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert params(servicer) == before
        assert np.isfinite(np.frombuffer(before[0], np.float32)).all()
        assert servicer._non_finite == 1
        assert push_one(channel, np.full(N, -3e38), 1).applied  # the id was not used up
        assert serving(channel)


def test_a_bsp_round_whose_sum_would_overflow_is_refused() -> None:
    policy = StalenessPolicy(2, aggregate=True)
    servicer = ParameterServerServicer(0, 0, N, 2, policy, 0.5, initial=np.zeros(N))
    with served(servicer) as channel:
        assert not push_one(channel, np.full(N, 3e38), 0).applied  # the round stays open
        code = code_of(push_one, channel, np.full(N, 3e38), 0, worker=1)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert servicer._non_finite == 1 and servicer.policy.version == 0
        assert push_one(channel, np.full(N, 1.0), 0, worker=1).applied  # closes the round
        assert servicer.policy.version == 1


def test_a_message_larger_than_a_chunk_is_refused_unread() -> None:
    big = MAX_RECEIVE_BYTES // 4 + 1  # elements: one message just over the bound
    servicer = ParameterServerServicer(0, 0, big, 1, StalenessPolicy(1), 0.5, initial=np.zeros(big))
    with served(servicer) as channel:
        code = code_of(push_one, channel, np.ones(big), 0)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert serving(channel)
    # the client never sends such a message: it chunks at most MAX_CHUNK_BYTES
    with (
        run_server(servicer, grace=None) as (_, port),
        PSClient([f"127.0.0.1:{port}"], 0, 1, big, chunk_bytes=64 << 20) as client,
    ):
        client.register()
        assert all(r.applied for r in client.push(np.ones(big, np.float32), 0))


def test_chunks_never_exceed_the_bound_whatever_is_asked() -> None:
    x = np.zeros((tensors.MAX_CHUNK_BYTES // 4) * 3, np.float32)
    sizes = [len(m) for m in tensors.push_chunks(x, 1 << 40, worker=0, key="x" * 100)]
    assert len(sizes) == 3 and max(sizes) <= MAX_RECEIVE_BYTES


# A server in its own process, so its memory is its own: a 64 MB shard behind a token.
SERVER = """
import sys
import numpy as np
from grpc_ps.auth import Security
from grpc_ps.server import ParameterServerServicer, serve
from pslab.policies import StalenessPolicy
n = int(sys.argv[1])
ps = ParameterServerServicer(0, 0, n, 1, StalenessPolicy(1), 0.1, initial=np.zeros(n, np.float32))
server, port = serve(ps, security=Security(token="flood-test-token"))
print(port, flush=True)
sys.stdin.read()  # until the test closes our stdin
server.stop(None)
"""


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_an_unauthenticated_flood_leaves_the_server_memory_as_it_was() -> None:
    """40 concurrent oversized and 16 in-bound PushOne calls without a token: all refused,
    the server's peak RSS within 1.2x of its idle RSS, and it still serves."""
    import subprocess
    import sys
    import threading
    from concurrent.futures import ThreadPoolExecutor

    n = 16 << 20  # elements: a 64 MB shard
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        address = f"127.0.0.1:{int(proc.stdout.readline())}"
        options = [("grpc.max_send_message_length", 64 << 20)]
        with grpc.insecure_channel(address, options=options) as channel:
            assert serving(channel)
            idle = _kib(proc.pid, "VmRSS")
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            peak = [0]
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.005):
                    peak[0] = max(peak[0], _kib(proc.pid, "VmRSS"))

            sampler = threading.Thread(target=sample)
            sampler.start()
            oversized = np.zeros(MAX_RECEIVE_BYTES // 4 + (1 << 20), np.float32)  # 20 MB
            inbound = np.zeros(tensors.MAX_CHUNK_BYTES // 4 - 16, np.float32)  # 16 MB
            calls = [oversized] * 40 + [inbound] * 16
            with ThreadPoolExecutor(len(calls)) as pool:
                # a generous deadline: on a busy 2-core machine sending 1 GB takes a while
                codes = list(
                    pool.map(lambda x: code_of(push_one, channel, x, 0, timeout=60), calls)
                )
            done.set()
            sampler.join()
            peak[0] = max(peak[0], _kib(proc.pid, "VmHWM"))
            print(f"\nflood: idle RSS {idle / 1024:.0f} MiB, peak {peak[0] / 1024:.0f} MiB")
            refused = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert set(codes) <= refused, codes
            assert peak[0] <= 1.2 * idle
            assert serving(channel)
            stats = channel.unary_unary(
                "/pslab.v1.ParameterServer/Stats",
                response_deserializer=pb.StatsReply.FromString,
            )
            with pytest.raises(grpc.RpcError) as err:  # still no token, still refused
                stats(pb.StatsRequest().SerializeToString(), timeout=TIMEOUT)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_non_finite_model_is_refused_at_init() -> None:
    servicer = ParameterServerServicer(0, 0, N, 2, StalenessPolicy(2), 0.5)
    init = "/pslab.v1.ParameterServer/Init"
    with served(servicer) as channel:
        stream = channel.stream_unary(init, response_deserializer=pb.PushReply.FromString)

        def rpc(message: bytes, timeout: float) -> pb.PushReply:
            return stream(iter([message]), timeout=timeout)

        bad = np.full(N, np.inf, np.float32)
        (message,) = tensors.push_chunks(bad, bad.nbytes, shard_id=0)
        with pytest.raises(grpc.RpcError) as err:
            rpc(message, timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert servicer._params is None and servicer._non_finite == 1
        (message,) = tensors.push_chunks(np.ones(N, np.float32), 4 * N, shard_id=0)
        assert rpc(message, timeout=TIMEOUT).applied
