"""Runs one role's program for real: ops become tensors, RPCs and collectives, timed.

The emulator's half of "one definition, two executors". Each op is performed
and recorded as a span on the same clock every process of the run shares
(``CLOCK_MONOTONIC`` through ``perf_counter_ns``, from the launcher's start),
so the traces of all processes line up without further alignment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from grpc_ps import peers
from grpc_ps.client import PSClient
from grpc_ps.communicator import CommunicatorServicer
from grpc_ps.endpoints import Endpoints
from grpc_ps.pb import ps_pb2 as pb
from pslab import ops, rules
from pslab.algorithms.base import Plan, Role, worker_name
from pslab.data import Batches, load
from pslab.distributions import draw, role_rng
from pslab.driver import Handler, Run, drive, finish
from pslab.models import FlatModel, initial_params
from pslab.smoothing import smooth_segments
from pslab.trace import Trace

MODES = {"grad": pb.PUSH_MODE_GRAD, "delta": pb.PUSH_MODE_DELTA}


def pick_device(choice: str, local_rank: int) -> torch.device:
    """``auto`` takes this worker's GPU (one per local rank) when CUDA is there, else the CPU."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("emulation.device is 'cuda' but torch sees no CUDA device")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


class EmuExecutor:
    """One role process: its buffers, its peers, and the loop that runs its program."""

    def __init__(
        self,
        plan: Plan,
        role: Role,
        endpoints: Endpoints,
        t0_ns: int,
        host: str = "localhost",
        comm_servicer: CommunicatorServicer | None = None,
    ) -> None:
        self.plan, self.role, self.endpoints, self.t0_ns = plan, role, endpoints, t0_ns
        self.scenario = scenario = plan.scenario
        self.emu = scenario.emulation
        self.host = host
        self.trace = Trace("emu", meta={"scenario": scenario.name})
        self.rng = role_rng(scenario.run.seed, role.name)
        self.n_workers = len(plan.workers)
        self.device = (
            pick_device(self.emu.device, role.device or role.rank)
            if role.kind == "worker"
            else torch.device("cpu")
        )
        self.model: FlatModel | None = None
        self.batches: Batches | None = None
        self.loaded: dict[int, Any] = {}
        self.sizes = plan.model.layers or [plan.model.params]
        self.bufs: dict[str, torch.Tensor] = {}
        self._setup_tensors()
        self.comm_servicer = comm_servicer
        self.ps: PSClient | None = None
        self.registry: peers.RegistryClient | None = None
        self.comm: peers.CommClient | None = None
        self._connect()
        self.on_iteration: Callable[[int], None] | None = None  # progress reporting
        self._pools = {
            "io": ThreadPoolExecutor(1, thread_name_prefix="load"),
            "comm": ThreadPoolExecutor(1, thread_name_prefix="comm"),
        }

    # ----------------------------------------------------------------- set-up

    def _setup_tensors(self) -> None:
        n = self.plan.model.params
        if self.role.kind == "worker" and self.emu.model != "synthetic":
            self.model = FlatModel(self.emu.model, self.scenario.run.seed, self.device)
            self.bufs["params"], self.bufs["grad"] = self.model.params, self.model.grad
            if self.emu.compute == "real":
                data = load(self.scenario.run.seed, self.device)
                self.batches = Batches(
                    data,
                    self.role.rank,
                    self.n_workers,
                    self.scenario.workload.batch_size,
                    self.scenario.run.seed,
                )
            return
        self.bufs["params"] = initial_params(self.emu.model, n, self.scenario.run.seed).to(
            self.device
        )
        # Emulated compute produces no gradient; any fixed tensor of the right size moves the
        # same bytes, and a constant one keeps the parameters finite over long runs.
        self.bufs["grad"] = torch.full((n,), 1e-3, device=self.device)

    def _connect(self) -> None:
        ep = self.endpoints
        timeout = self.emu.rpc_timeout
        if self.role.kind == "worker":
            if self.plan.server is not None:
                self.ps = PSClient(
                    ep.servers,
                    self.role.rank,
                    self.n_workers,
                    self.plan.model.params,
                    chunk_bytes=self.emu.chunk_bytes,
                    timeout=timeout,
                )
                self.ps.register()
            if self.plan.registry is not None and ep.registry:
                self.registry = peers.RegistryClient(ep.registry, self.emu.chunk_bytes, timeout)
            if self.plan.comms:
                group = next(i for i, g in enumerate(self.plan.groups) if self.role.rank in g)
                self.comm = peers.CommClient(ep.comms[group], self.emu.chunk_bytes, timeout)
        world = self._dist_world()
        if world is not None:
            members, address = world
            dist.init_process_group(
                "nccl" if self.device.type == "cuda" else "gloo",
                init_method=address,
                rank=members.index(self.role.name),
                world_size=len(members),
            )

    def _dist_world(self) -> tuple[list[str], str] | None:
        """The torch.distributed world this role joins, and where it meets, if any."""
        world = [r.name for r in self.plan.collective_world]
        if self.role.name not in world:
            return None
        address = (
            self.endpoints.dist_workers if self.role.kind == "worker" else self.endpoints.dist_comms
        )
        return world, address

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True)
        for client in (self.ps, self.registry, self.comm):
            if client is not None:
                client.close()
        if dist.is_initialized():
            dist.destroy_process_group()

    # ------------------------------------------------------------------ running

    @property
    def now(self) -> float:
        """Seconds on the run's shared clock (the driver's :class:`pslab.driver.Clock`)."""
        return (time.perf_counter_ns() - self.t0_ns) / 1e9

    def run(self) -> Trace:
        finish(
            drive(
                self.role.program(),
                handler=self._handler,
                spawn=self._spawn,
                join=_join,
                clock=self,
                trace=self.trace,
                role=self.role.name,
                host=self.host,
                on_iteration=self.on_iteration,
            )
        )
        return self.trace

    def _handler(self, name: str) -> Handler:
        """The ``_op_<name>`` method as the driver's handler: it blocks, and never yields."""
        method = getattr(self, f"_op_{name}")

        def handler(op: ops.Op) -> Generator[Any, Any, tuple[Any, int]]:
            return method(op)
            yield  # a generator that returns at once

        return handler

    def _spawn(self, run: Run, cat: str) -> Future:
        """A started op runs on its own thread (loads apart from transfers), to its end."""
        return self._pools["io" if cat == "io" else "comm"].submit(finish, run)

    # ------------------------------------------------------------- local work

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def _op_load(self, op: ops.Load) -> tuple[Any, int]:
        self._sleep(draw(self.scenario.workload.io_time, self.rng))
        if self.batches is not None:
            self.loaded[op.iteration] = self.batches.batch(op.iteration)
        return None, 0

    def _op_compute(self, op: ops.Compute) -> tuple[Any, int]:
        if self.emu.compute == "emulated" or self.model is None:
            self._sleep(draw(self.scenario.workload.compute_time, self.rng) * op.fraction)
            return None, 0
        if op.phase == "backward":
            return None, 0  # the whole backward ran with the forward phase
        x, y = self.loaded.pop(op.iteration)
        loss = self.model.forward_backward(x, y)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return loss, 0

    def _op_update(self, op: ops.Update) -> tuple[Any, int]:
        rules.apply_rule(op.rule, self.bufs, **op.kwargs)
        return None, 0

    def _op_smooth(self, op: ops.Smooth) -> tuple[Any, int]:
        sigma = self.scenario.algorithm.smoothing
        smooth_segments(self.bufs[op.buf], self.sizes, sigma.sigma, sigma.order)
        return None, 0

    # ------------------------------------------------------------- transfers

    def _host_array(self, name: str) -> np.ndarray:
        """A float32 numpy view of a buffer (a CPU copy of a GPU one)."""
        t = self.bufs.get(name)
        if t is None:
            t = self.bufs[name] = torch.zeros(self.plan.model.params, device=self.device)
        return t.detach().cpu().numpy() if t.device.type != "cpu" else t.numpy()

    def _into(self, name: str, fill: Any) -> Any:
        """Receive into a buffer through a host array (and back to the GPU if needed)."""
        if name not in self.bufs:
            self.bufs[name] = torch.zeros(self.plan.model.params, device=self.device)
        t = self.bufs[name]
        host = t.numpy() if t.device.type == "cpu" else np.empty(t.shape[0], np.float32)
        result = fill(host)
        if t.device.type != "cpu":
            t.copy_(torch.from_numpy(host))
        return result

    def _op_push(self, op: ops.Push) -> tuple[Any, int]:
        assert self.ps is not None
        arr = self._host_array(op.buf)
        self.ps.push(arr, op.iteration, computed_on=op.version, mode=MODES[op.mode])
        return None, arr.nbytes

    def _op_pull(self, op: ops.Pull) -> tuple[Any, int]:
        assert self.ps is not None
        version = self._into(op.buf, lambda host: self.ps.pull(host, op.iteration))
        return version, self.plan.model.nbytes

    def _view(self, name: str, span: ops.Span) -> torch.Tensor:
        t = self.bufs[name]
        return t if span is None else t[span[0] : span[1]]

    def _op_allreduce(self, op: ops.AllReduce) -> tuple[Any, int]:
        view = self._view(op.buf, op.span)
        if len(op.group) > 1:
            contiguous = view.contiguous()
            dist.all_reduce(contiguous)
            if op.average:
                contiguous /= len(op.group)
            if contiguous.data_ptr() != view.data_ptr():
                view.copy_(contiguous)
        return None, view.numel() * view.element_size()

    def _op_reduce(self, op: ops.Reduce) -> tuple[Any, int]:
        view = self._view(op.buf, op.span)
        key = _span_key(op.span)
        if self.role.name == op.root:
            assert self.comm_servicer is not None
            total = self.comm_servicer.collect(op.iteration, key, len(op.group) - 1)
            view.copy_(torch.from_numpy(total))
        else:
            assert self.comm is not None
            self.comm.reduce(view.detach().cpu().numpy(), op.iteration, key, self.role.rank)
        return None, view.numel() * view.element_size()

    def _op_broadcast(self, op: ops.Broadcast) -> tuple[Any, int]:
        view = self._view(op.buf, op.span)
        key = _span_key(op.span)
        if self.role.name == op.root:
            assert self.comm_servicer is not None
            self.comm_servicer.offer(op.iteration, key, view.numpy().copy())
        else:  # into the buffer itself where it is on the host, as a pull is (_into)
            assert self.comm is not None
            direct = view.device.type == "cpu" and view.is_contiguous()
            host = view.numpy() if direct else np.empty(view.numel(), np.float32)
            self.comm.broadcast(host, op.iteration, key, self.role.rank)
            if not direct:
                view.copy_(torch.from_numpy(host))
        return None, view.numel() * view.element_size()

    # -------------------------------------------------------- leader registry

    def _op_report_loss(self, op: ops.ReportLoss) -> tuple[Any, int]:
        assert self.registry is not None
        local, best = self.registry.report(self.role.rank, op.loss, op.iteration)
        return ops.Leaders(worker_name(local), worker_name(best)), 0

    def _op_publish(self, op: ops.Publish) -> tuple[Any, int]:
        assert self.registry is not None
        arr = self._host_array(op.buf)
        self.registry.publish(op.key, op.round, arr)
        return None, arr.nbytes

    def _op_fetch(self, op: ops.Fetch) -> tuple[Any, int]:
        assert self.registry is not None
        found = self._into(
            op.buf, lambda host: self.registry.fetch(op.key, op.round, op.wait, host)
        )
        return found, self.plan.model.nbytes if found else 0


def _join(futures: list[Future]) -> Run:
    """The started ops' results, in order (blocking: the driver's generator never yields)."""
    return [f.result() for f in futures]
    yield


def _span_key(span: ops.Span) -> str:
    return "all" if span is None else f"{span[0]}:{span[1]}"
