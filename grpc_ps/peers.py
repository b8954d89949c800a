"""Clients of the leader registry and of a Layered SGD communicator.

Thin by design: every tensor goes through :mod:`grpc_ps.tensors` chunk
streams, the same path the parameter-server client uses.
"""

from __future__ import annotations

import numpy as np

from grpc_ps import tensors
from grpc_ps.auth import Security
from grpc_ps.client import receive_tensor, send_tensor, stub
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.server import grpc_options


class _Peer:
    """A stub of one service, with the token and TLS of ``security`` (default: the env)."""

    SERVICE = ""

    def __init__(
        self,
        address: str,
        chunk_bytes: int,
        timeout: float | None,
        security: Security | None = None,
    ) -> None:
        security = Security.from_env() if security is None else security
        self.channel = security.channel(address, grpc_options())
        self.stub = stub(self.channel, self.SERVICE)
        self.chunk_bytes, self.timeout = chunk_bytes, timeout

    def close(self) -> None:
        self.channel.close()


class RegistryClient(_Peer):
    SERVICE = "LeaderRegistry"

    def report(self, worker: int, loss: float, round_: int) -> tuple[int, int]:
        reply = self.stub.ReportLoss(
            pb.LossReport(worker=worker, loss=loss, round=round_),
            timeout=self.timeout,
            wait_for_ready=True,
        )
        return reply.local_leader, reply.global_leader

    def publish(self, key: str, round_: int, arr: np.ndarray) -> None:
        send_tensor(
            self.stub, "Publish", arr, self.chunk_bytes, self.timeout, key=key, round=round_
        )

    def fetch(self, key: str, min_round: int, wait: bool, out: np.ndarray) -> bool:
        """Read ``key`` into ``out``; False when ``wait`` is off and nothing was published."""
        req = pb.FetchRequest(key=key, min_round=min_round, chunk_bytes=self.chunk_bytes, wait=wait)
        return (
            receive_tensor(self.stub, "Fetch", req, out, self.chunk_bytes, self.timeout) is not None
        )


class CommClient(_Peer):
    SERVICE = "Communicator"

    def reduce(self, arr: np.ndarray, iteration: int, key: str, worker: int) -> None:
        send_tensor(
            self.stub,
            "Reduce",
            arr,
            self.chunk_bytes,
            self.timeout,
            key=key,
            iteration=iteration,
            worker=worker,
        )

    def broadcast(self, out: np.ndarray, iteration: int, key: str, worker: int) -> None:
        req = pb.BroadcastRequest(
            worker=worker, iteration=iteration, key=key, chunk_bytes=self.chunk_bytes
        )
        if receive_tensor(self.stub, "Broadcast", req, out, self.chunk_bytes, self.timeout) is None:
            raise tensors.ChunkError(f"broadcast of {key!r} at iteration {iteration} sent nothing")
