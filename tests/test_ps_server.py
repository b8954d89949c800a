"""The parameter server over real gRPC on 127.0.0.1: consistency policies, sharding, validation."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grpc_ps import tensors
from grpc_ps.client import PSClient, send_tensor
from grpc_ps.client import stub as client_stub
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.pb import ps_pb2_grpc as pb_grpc
from grpc_ps.server import LeaderRegistryServicer, ParameterServerServicer, run_server
from pslab.policies import StalenessPolicy
from pslab.shards import shard_ranges

N = 10_000  # elements: several 4 KiB chunks per stream
CHUNK = 4096
LR = 0.5
TIMEOUT = 20.0
X0 = np.arange(N, dtype=np.float32)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


@contextmanager
def shard(
    n_workers: int, policy: StalenessPolicy, *, initial: np.ndarray | None = X0, **kw: object
) -> Iterator[tuple[ParameterServerServicer, str]]:
    servicer = ParameterServerServicer(0, 0, N, n_workers, policy, LR, initial=initial, **kw)
    with run_server(servicer, grace=None) as (_, port):
        yield servicer, f"127.0.0.1:{port}"


@contextmanager
def clients(addresses: list[str], n: int, total: int = N) -> Iterator[list[PSClient]]:
    with ExitStack() as stack:
        cs = [
            stack.enter_context(
                PSClient(addresses, w, n, total, chunk_bytes=CHUNK, timeout=TIMEOUT)
            )
            for w in range(n)
        ]
        for c in cs:
            c.register()
        yield cs


def pulled(c: PSClient) -> np.ndarray:
    out = np.empty(c.total, np.float32)
    c.pull(out)
    return out


def in_threads(fns: list) -> list:
    results: list = [None] * len(fns)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = fns[i]()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors, errors
    return results


def grad(value: float) -> np.ndarray:
    return np.full(N, value, np.float32)


def test_bsp_applies_the_mean_once_all_workers_pushed() -> None:
    with shard(3, StalenessPolicy(3, aggregate=True)) as (server, addr), clients([addr], 3) as cs:

        def step(c: PSClient) -> np.ndarray:
            c.push(grad(c.worker + 1), iteration=0)  # mean gradient 2
            return pulled(c)

        results = in_threads([lambda c=c: step(c) for c in cs])
        for out in results:
            assert np.array_equal(out, X0 - LR * 2)
        assert [c.versions for c in cs] == [[1]] * 3
        stats = server.Stats(pb.StatsRequest(), None)
        assert (stats.version, stats.pushes_applied, dict(stats.staleness)) == (1, 3, {0: 3})


def test_bsp_round_closes_when_a_worker_leaves() -> None:
    with shard(2, StalenessPolicy(2, aggregate=True)) as (_, addr), clients([addr], 2) as cs:
        reply = cs[0].push(grad(4.0), iteration=0)[0]
        assert not reply.applied
        cs[1].leave()
        assert np.array_equal(pulled(cs[0]), X0 - LR * 4)


def test_bsp_sums_deltas() -> None:
    with shard(2, StalenessPolicy(2, aggregate=True)) as (_, addr), clients([addr], 2) as cs:
        for c in cs:
            c.push(grad(c.worker + 1), iteration=0, mode=pb.PUSH_MODE_DELTA)
        assert np.array_equal(pulled(cs[0]), X0 + 3)


def test_asp_applies_each_push_at_once_and_records_staleness() -> None:
    # lock-step with FIFO service: all computed on version 0, applied in turn: 0, 1, 2
    with shard(3, StalenessPolicy(3)) as (server, addr), clients([addr], 3) as cs:
        x = X0.copy()
        for c in cs:
            reply = c.push(grad(c.worker + 1), iteration=0)[0]
            assert reply.applied
            x -= np.float32(LR) * grad(c.worker + 1)
            assert np.array_equal(pulled(c), x)
        assert dict(server.Stats(pb.StatsRequest(), None).staleness) == {0: 1, 1: 1, 2: 1}


def test_asp_staleness_is_measured_against_the_pulled_version() -> None:
    # offset phases: each worker pushes on the version it pulled, one behind the other
    with shard(2, StalenessPolicy(2)) as (server, addr), clients([addr], 2) as (a, b):
        for c in (a, b):
            pulled(c)
        for i in range(3):  # a worker's push ids (iterations) increase
            for c in (a, b):
                c.push(grad(1.0), iteration=i)
                pulled(c)
        hist = dict(server.Stats(pb.StatsRequest(), None).staleness)
        assert hist == {0: 1, 1: 5}


def test_momentum_on_the_server() -> None:
    with shard(1, StalenessPolicy(1), momentum=0.5) as (_, addr), clients([addr], 1) as (c,):
        c.push(grad(1.0), iteration=0)
        c.push(grad(1.0), iteration=1)
        # v1 = 1, v2 = 0.5 * 1 + 1 = 1.5; x = x0 - lr * (1 + 1.5)
        assert np.array_equal(pulled(c), X0 - LR * 2.5)


def test_ssp_blocks_a_worker_more_than_s_ahead_until_the_slow_one_pushes() -> None:
    with shard(2, StalenessPolicy(2, bound=1)) as (_, addr), clients([addr], 2) as (fast, slow):
        fast.push(grad(1.0), iteration=0, computed_on=0)
        assert np.array_equal(pulled(fast), X0 - LR)  # 1 ahead: allowed
        fast.push(grad(1.0), iteration=1, computed_on=1)  # now 2 ahead
        released = threading.Event()
        result: list[np.ndarray] = []

        def pull_fast() -> None:
            result.append(pulled(fast))
            released.set()

        t = threading.Thread(target=pull_fast)
        t.start()
        assert not released.wait(0.5), "the fast worker must wait for the slow one"
        slow.push(grad(1.0), iteration=0, computed_on=0)
        assert released.wait(TIMEOUT)
        t.join()
        assert np.array_equal(result[0], X0 - 3 * LR)


def test_blocked_pull_respects_its_deadline_and_the_server_keeps_serving() -> None:
    with shard(2, StalenessPolicy(2, bound=0)) as (_, addr), clients([addr], 2) as (a, b):
        a.push(grad(1.0), iteration=0)
        stub = pb_grpc.ParameterServerStub(grpc.insecure_channel(addr))
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Pull(pb.PullRequest(worker=0, shard_id=0), timeout=0.3))
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        b.push(grad(1.0), iteration=0)
        assert np.array_equal(pulled(a), X0 - 2 * LR)


def test_a_pull_sees_one_version_while_an_update_lands() -> None:
    # copy-on-write: an update must not tear a pull that is halfway through its stream. The
    # shard is far bigger than gRPC's flow-control windows, so the stream is really half-sent.
    n = 1 << 22
    x0 = np.arange(n, dtype=np.float32)
    servicer = ParameterServerServicer(0, 0, n, 2, StalenessPolicy(2), LR, initial=x0)
    with run_server(servicer, grace=None) as (_, port), clients([f"127.0.0.1:{port}"], 2, n) as cs:
        stub = pb_grpc.ParameterServerStub(cs[0]._channels[0])
        stream = stub.Pull(pb.PullRequest(worker=0, shard_id=0, chunk_bytes=4096), timeout=TIMEOUT)
        first = next(stream)
        assert cs[1].push(np.ones(n, np.float32), iteration=0)[0].applied  # lands mid-stream
        out = np.empty(n, np.float32)
        assert tensors.receive_pull(iter([first, *stream]), out) == 0
        assert np.array_equal(out, x0)
        assert np.array_equal(pulled(cs[0]), x0 - LR)
        assert servicer._live == 2  # parameters + one push buffer: the stale copy went back


def test_sharding_over_two_servers_reassembles_exactly() -> None:
    total = 10_001
    ranges = shard_ranges(total, 2, partition_bytes=8192)
    x0 = np.random.default_rng(0).standard_normal(total).astype(np.float32)
    g = np.random.default_rng(1).standard_normal(total).astype(np.float32)
    servicers = [
        ParameterServerServicer(k, off, n, 1, StalenessPolicy(1), LR, n_shards=2, total=total)
        for k, (off, n) in enumerate(ranges)
    ]
    with ExitStack() as stack:
        addrs = [
            f"127.0.0.1:{stack.enter_context(run_server(s, grace=None))[1]}" for s in servicers
        ]
        (c,) = stack.enter_context(clients(addrs, 1, total))
        assert [(m.offset, m.length) for m in c.shards] == ranges
        assert c.init(x0)
        assert np.array_equal(pulled(c), x0)
        assert not c.init(np.zeros(total, np.float32))  # first offer wins
        c.push(g, iteration=0)
        assert np.array_equal(pulled(c), x0 - np.float32(LR) * g)
        assert c.versions == [1, 1]


def test_pull_waits_for_init() -> None:
    with shard(2, StalenessPolicy(2), initial=None) as (_, addr), clients([addr], 2) as (a, b):
        got = in_threads([lambda: pulled(b), lambda: a.init(X0)])
        assert np.array_equal(got[0], X0)


@pytest.mark.parametrize(
    ("total", "n_shards", "partition_bytes", "expected"),
    [
        (10, 3, 4, [(0, 4), (4, 3), (7, 3)]),  # 10 partitions of 1: 4, 3, 3
        (10, 2, 12, [(0, 6), (6, 4)]),  # partitions of 3: 3+1 | 3+3 -> 2 and 2 partitions
        (5, 4, 4096, [(0, 2), (2, 1), (3, 1), (4, 1)]),  # smaller than a partition per shard
    ],
)
def test_shard_ranges(
    total: int, n_shards: int, partition_bytes: int, expected: list[tuple[int, int]]
) -> None:
    assert shard_ranges(total, n_shards, partition_bytes) == expected


def test_shard_ranges_tile_and_align() -> None:
    for total in (1, 7, 1000, 1_024_001, 25_000_000):
        for n in (1, 2, 3, 8):
            if total < n:
                continue
            ranges = shard_ranges(total, n)
            assert ranges[0][0] == 0
            assert all(a + la == b for (a, la), (b, _) in itertools.pairwise(ranges))
            assert sum(length for _, length in ranges) == total
            assert all(length > 0 for _, length in ranges)
    with pytest.raises(ValueError):
        shard_ranges(1, 2)


def _chunk(data: np.ndarray | bytes, offset: int = 0, **header: object) -> pb.PushChunk:
    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    return pb.PushChunk(offset=offset, data=raw, **header)


_HEADER = {"worker": 0, "shard_id": 0, "mode": pb.PUSH_MODE_GRAD, "dtype": pb.DTYPE_FLOAT32}
_ONES = np.ones(N, np.float32)


def _cut_off() -> Iterator[pb.PushChunk]:
    yield _chunk(_ONES[:100], total_elements=N, **_HEADER)
    raise RuntimeError("worker died mid-push")


BAD_PUSHES = {
    "empty stream": ([], grpc.StatusCode.INVALID_ARGUMENT),
    "wrong shard id": (
        [_chunk(_ONES, total_elements=N, **{**_HEADER, "shard_id": 1})],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "offset out of range": (
        [_chunk(_ONES[:10], offset=N - 5, total_elements=N, **_HEADER)],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "gap between chunks": (
        [
            _chunk(_ONES[:10], total_elements=N, **_HEADER),
            _chunk(_ONES[10:], offset=11),
        ],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "wrong dtype": (
        [_chunk(_ONES.astype(np.float64), total_elements=N, **{**_HEADER, "dtype": 2})],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "unspecified dtype": (
        [_chunk(_ONES, total_elements=N, **{**_HEADER, "dtype": 0})],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "declared total mismatch": (
        [_chunk(_ONES[:-1], total_elements=N - 1, **_HEADER)],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "fewer bytes than declared": (
        [_chunk(_ONES[:-1], total_elements=N, **_HEADER)],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "ragged bytes": (
        [_chunk(_ONES.tobytes() + b"\0", total_elements=N, **_HEADER)],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "oversized declared size": (
        [_chunk(_ONES[:10], total_elements=1 << 40, **_HEADER)],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "no push mode": (
        [_chunk(_ONES, total_elements=N, **{**_HEADER, "mode": 0})],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "unknown worker": (
        [_chunk(_ONES, total_elements=N, **{**_HEADER, "worker": 7})],
        grpc.StatusCode.FAILED_PRECONDITION,
    ),
    "computed on a future version": (
        [_chunk(_ONES, total_elements=N, computed_on=5, **_HEADER)],
        grpc.StatusCode.FAILED_PRECONDITION,
    ),
    "cut off mid-stream": (_cut_off, None),
}


def test_bad_pushes_are_rejected_and_change_nothing() -> None:
    with shard(2, StalenessPolicy(2)) as (server, addr), clients([addr], 2) as (c, _):
        stub = pb_grpc.ParameterServerStub(grpc.insecure_channel(addr))
        for name, (chunks, code) in BAD_PUSHES.items():
            with pytest.raises(grpc.RpcError) as err:
                stub.Push(chunks() if callable(chunks) else iter(chunks), timeout=TIMEOUT)
            if code is not None:
                assert err.value.code() == code, name
            assert np.array_equal(_bits(pulled(c)), _bits(X0)), name
        stats = server.Stats(pb.StatsRequest(), None)
        assert (stats.version, stats.pushes_received) == (0, 0)
        # the cut-off stream is counted too if the server saw its end before the cancel
        assert stats.rejected["INVALID_ARGUMENT"] in (11, 12)
        assert stats.rejected["FAILED_PRECONDITION"] == 2
        c.push(grad(1.0), iteration=0)  # still serving, all buffers back in the pool
        assert np.array_equal(pulled(c), X0 - LR)


def test_bad_one_chunk_pushes_are_rejected_like_streamed_ones() -> None:
    single = {
        name: (chunks[0], code)
        for name, (chunks, code) in BAD_PUSHES.items()
        if isinstance(chunks, list) and len(chunks) == 1
    }
    assert len(single) >= 8
    with shard(2, StalenessPolicy(2)) as (server, addr), clients([addr], 2) as (c, _):
        stub = pb_grpc.ParameterServerStub(grpc.insecure_channel(addr))
        for name, (chunk, code) in single.items():
            with pytest.raises(grpc.RpcError) as err:
                stub.PushOne(chunk, timeout=TIMEOUT)
            assert err.value.code() == code, name
        stats = server.Stats(pb.StatsRequest(), None)
        assert (stats.version, stats.pushes_received) == (0, 0)
        assert sum(stats.rejected.values()) == len(single)
        stub.PushOne(_chunk(_ONES, total_elements=N, **_HEADER), timeout=TIMEOUT)
        assert np.array_equal(pulled(c), X0 - LR)  # still serving, every buffer back


def test_a_tensor_that_fits_one_chunk_goes_unary_with_the_same_effect() -> None:
    """grpcio starts a thread per client-streaming call: a small push must not pay for one."""
    calls: list[str] = []

    def record(name: str) -> object:
        return lambda request, **kw: calls.append(name)

    service = SimpleNamespace(Push=record("Push"), PushOne=record("PushOne"))
    send_tensor(service, "Push", np.ones(1024, np.float32), 4096, None, worker=0)
    send_tensor(service, "Push", np.ones(1025, np.float32), 4096, None, worker=0)
    assert calls == ["PushOne", "Push"]
    results = []
    for chunk_bytes in (CHUNK, N * 4):  # streamed in three chunks, then one unary message
        with shard(1, StalenessPolicy(1)) as (_, addr), ExitStack() as stack:
            c = stack.enter_context(PSClient([addr], 0, 1, N, chunk_bytes, timeout=TIMEOUT))
            c.register()
            c.push(grad(1.0), iteration=0)
            results.append(pulled(c))
    assert np.array_equal(_bits(results[0]), _bits(results[1]))
    assert np.array_equal(results[1], X0 - LR)


def test_bad_pulls_and_registrations_are_rejected() -> None:
    with shard(2, StalenessPolicy(2)) as (_, addr):
        stub = pb_grpc.ParameterServerStub(grpc.insecure_channel(addr))
        bad = [
            (lambda: list(stub.Pull(pb.PullRequest(worker=0, shard_id=3))), "INVALID_ARGUMENT"),
            (lambda: list(stub.Pull(pb.PullRequest(worker=9))), "FAILED_PRECONDITION"),
            (lambda: stub.Leave(pb.LeaveRequest(worker=9)), "FAILED_PRECONDITION"),
            (lambda: stub.Register(pb.RegisterRequest(worker=0, world=3)), "INVALID_ARGUMENT"),
            (
                lambda: stub.Register(
                    pb.RegisterRequest(worker=0, world=2, total_elements=N, dtype=2)
                ),
                "INVALID_ARGUMENT",
            ),
        ]
        for call, code in bad:
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code().name == code
        good = pb.RegisterRequest(worker=1, world=2, total_elements=N, dtype=pb.DTYPE_FLOAT32)
        assert stub.Register(good).length == N


def test_health_check_reports_serving() -> None:
    with shard(1, StalenessPolicy(1)) as (_, addr):
        stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(addr))
        for service in ("", "pslab.v1.ParameterServer"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_leader_registry_elects_the_lowest_loss_and_serves_its_parameters() -> None:
    registry = LeaderRegistryServicer([[0, 1], [2, 3]], max_elements=N)
    with run_server(registry, grace=None) as (_, port):
        stub = client_stub(grpc.insecure_channel(f"127.0.0.1:{port}"), "LeaderRegistry")
        for worker, loss in [(0, 0.9), (1, 0.5), (2, 0.7), (3, 0.2)]:
            leaders = stub.ReportLoss(pb.LossReport(worker=worker, loss=loss), timeout=TIMEOUT)
        assert (leaders.local_leader, leaders.global_leader) == (3, 3)
        leaders = stub.ReportLoss(pb.LossReport(worker=0, loss=0.1), timeout=TIMEOUT)
        assert (leaders.local_leader, leaders.global_leader) == (0, 0)
        with pytest.raises(grpc.RpcError) as err:
            stub.ReportLoss(pb.LossReport(worker=8, loss=0.1), timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        def publish(x: np.ndarray, round_: int) -> None:
            stub.Publish(tensors.push_chunks(x, CHUNK, key="global", round=round_), timeout=TIMEOUT)

        def fetch(min_round: int) -> tuple[int, np.ndarray]:
            out = np.empty(N, np.float32)
            req = pb.FetchRequest(key="global", min_round=min_round, wait=True)
            return tensors.receive_pull(stub.Fetch(req, timeout=TIMEOUT), out), out

        nothing = pb.FetchRequest(key="global", min_round=0, wait=False)
        assert list(stub.Fetch(nothing, timeout=TIMEOUT)) == []  # not published, no wait
        publish(X0, 1)
        assert fetch(1)[0] == 1
        waited: list[tuple[int, np.ndarray]] = []
        t = threading.Thread(target=lambda: waited.append(fetch(2)))
        t.start()
        t.join(0.3)
        assert not waited, "round 2 is not published yet"
        publish(X0 + 1, 2)
        t.join(TIMEOUT)
        assert waited[0][0] == 2 and np.array_equal(waited[0][1], X0 + 1)
        with pytest.raises(grpc.RpcError) as err:
            publish(np.zeros(N + 1, np.float32), 3)  # above max_elements
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_publication_still_fetched_is_not_reused_and_a_replaced_one_is() -> None:
    n = 1 << 22  # 16 MB: beyond grpc's flow-control windows, so an unread fetch waits mid-way
    registry = LeaderRegistryServicer([[0]], max_elements=n)
    with run_server(registry, grace=None) as (_, port):
        stub = client_stub(grpc.insecure_channel(f"127.0.0.1:{port}"), "LeaderRegistry")

        def publish(x: np.ndarray, round_: int, key: str = "k") -> None:
            chunks = tensors.push_chunks(x, 1 << 20, key=key, round=round_)
            stub.Publish(chunks, timeout=TIMEOUT)

        first = np.arange(n, dtype=np.float32)
        publish(first, 1)
        req = pb.FetchRequest(key="k", min_round=1, chunk_bytes=1 << 20)
        stream = stub.Fetch(req, timeout=TIMEOUT)
        head = next(stream)  # the fetch holds round 1's array from here to its last chunk
        for round_ in (2, 3, 4):  # each replaces the last: spares go round
            publish(first + round_, round_)
        out = np.empty(n, np.float32)
        assert tensors.receive_pull(itertools.chain([head], stream), out) == 1
        assert np.array_equal(out, first), "a newer publication was written into a fetched one"
        fourth = registry._published.get("k")[1]
        publish(first + 5, 5)  # replaces round 4, whose array no fetch streams: a spare
        publish(first + 6, 6)
        assert registry._published.get("k")[1] is fourth
        req = pb.FetchRequest(key="k", min_round=6, chunk_bytes=1 << 20)
        assert tensors.receive_pull(stub.Fetch(req, timeout=TIMEOUT), out) == 6
        publish(first + 7, 7, "other")  # the fetched round 6 is still held: not a spare
        publish(first + 8, 8, "other")
        assert tensors.receive_pull(stub.Fetch(req, timeout=TIMEOUT), out) == 6
        assert np.array_equal(out, first + 6), "a held publication was taken as a spare"


def test_synchronous_registry_answers_a_round_once_everyone_reported() -> None:
    registry = LeaderRegistryServicer([[0, 1], [2]], max_elements=N, sync=True)
    with run_server(registry, grace=None) as (_, port):
        stub = client_stub(grpc.insecure_channel(f"127.0.0.1:{port}"), "LeaderRegistry")

        def report(worker: int, loss: float) -> tuple[int, int]:
            got = stub.ReportLoss(pb.LossReport(worker=worker, loss=loss, round=1), timeout=TIMEOUT)
            return got.local_leader, got.global_leader

        answers: dict[int, tuple[int, int]] = {}
        early = [
            threading.Thread(target=lambda w=w, x=x: answers.__setitem__(w, report(w, x)))
            for w, x in [(0, 0.5), (1, 0.4)]
        ]
        for t in early:
            t.start()
        for t in early:
            t.join(0.3)
        assert not answers, "nobody is answered before the whole round reported"
        answers[2] = report(2, 0.3)
        for t in early:
            t.join(TIMEOUT)
        assert answers == {0: (1, 2), 1: (1, 2), 2: (2, 2)}
