"""Layered SGD's communicator: shutting down loses no broadcast still on its way."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np

from grpc_ps.communicator import CommunicatorServicer
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.pb import ps_pb2_grpc as pb_grpc
from grpc_ps.server import grpc_options, serve

N = 8 << 20  # 32 MB: far more than the stream's 2 MiB window, so the sender waits on the reader


def test_drain_waits_for_a_broadcast_still_sending() -> None:
    """The last broadcast of a run: the worker has asked (the offer is taken) but reads
    slowly, as on a busy core. The communicator drains, then stops its server with little
    grace; the worker must still get every byte. Draining only until every worker had asked
    lost the stream's tail: UNAVAILABLE, "Cancelling all calls"."""
    comm = CommunicatorServicer([0], max_elements=N, timeout=30.0)
    server, port = serve(comm)
    received: list[int] = []  # bytes of each chunk after the first
    errors: list[BaseException] = []
    try:
        comm.offer(0, "all", np.arange(N, dtype=np.float32))
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=grpc_options()) as channel:
            stub = pb_grpc.CommunicatorStub(channel)
            request = pb.BroadcastRequest(worker=0, iteration=0, key="all", chunk_bytes=1 << 20)
            stream = stub.Broadcast(request)
            first = next(stream)  # asked, and the first chunk is in

            def read_the_rest() -> None:
                try:
                    time.sleep(0.5)  # a reader slower than the server's grace below
                    received.extend(len(chunk.data) for chunk in stream)
                except grpc.RpcError as e:
                    errors.append(e)

            reader = threading.Thread(target=read_the_rest)
            reader.start()
            comm.drain()
            server.stop(0.1).wait()
            reader.join(30)
    finally:
        server.stop(None)
    assert not errors, errors
    assert len(first.data) + sum(received) == 4 * N  # every element
