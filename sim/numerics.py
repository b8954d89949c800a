"""Real tensors carried through a simulated run: time to accuracy on a simulated clock.

With a scenario's ``numerics`` section the simulator does the math the
emulator does — the same seeded model and data shards, the same update
rules, the same server policy deciding what is applied when — at the
simulated instants the ops complete. Stale gradients, leader pulls and
elastic averaging then change the loss exactly as they would in a run, and
the loss can be read against simulated time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pslab import rules
from pslab.algorithms.base import Plan
from pslab.data import Batches, load
from pslab.models import FlatModel, initial_params
from pslab.ops import Span
from pslab.policies import Apply
from pslab.rounds import RoundSum, Update
from pslab.smoothing import smooth_segments

CPU = torch.device("cpu")


class Numerics:
    """Every role's buffers and the servers' parameters (the registry's copies are the
    executor's :class:`pslab.rounds.Publications`, whose round logic the registry shares)."""

    def __init__(self, plan: Plan, shard_ranges: list[tuple[int, int]]) -> None:
        scenario = plan.scenario
        assert scenario.numerics is not None
        self.model_name = scenario.numerics.model
        self.target = scenario.numerics.target_accuracy
        seed = scenario.run.seed
        self.algo = scenario.algorithm
        self.data = load(seed, CPU)
        n = len(plan.workers)
        self.models = {w.name: FlatModel(self.model_name, seed, CPU) for w in plan.workers}
        self.bufs: dict[str, dict[str, Any]] = {
            name: {"params": m.params, "grad": m.grad} for name, m in self.models.items()
        }
        self.batches = {
            w.name: Batches(self.data, w.rank, n, scenario.workload.batch_size, seed)
            for w in plan.workers
        }
        size = plan.model.params
        for c in plan.comms:
            self.bufs[c.name] = {"params": initial_params(self.model_name, size, seed).clone()}
            self.bufs[c.name]["grad"] = torch.zeros(size)
        init = initial_params(self.model_name, size, seed)
        momentum = self.algo.momentum if plan.server and plan.server.mode == "grad" else 0.0
        aggregate = plan.server is not None and plan.server.aggregate
        self.shards = [
            {
                "params": init[off : off + length].clone(),
                "round": RoundSum[torch.Tensor](aggregate),
                "velocity": torch.zeros(length) if momentum else None,
                "range": (off, off + length),
            }
            for off, length in shard_ranges
        ]
        self.server_momentum = momentum
        self.sizes = plan.model.layers or [size]
        self.loaded: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.time_to_target: float | None = None
        self.curve: list[tuple[float, int, float, float]] = []  # (t, iteration, loss, accuracy)

    def _buf(self, role: str, name: str) -> torch.Tensor:
        bufs = self.bufs[role]
        if name not in bufs:
            bufs[name] = torch.zeros_like(bufs["params"])
        return bufs[name]

    def _view(self, role: str, name: str, span: tuple[int, int] | None) -> torch.Tensor:
        t = self._buf(role, name)
        return t if span is None else t[span[0] : span[1]]

    # ------------------------------------------------------------- local work

    def load(self, role: str, iteration: int) -> None:
        self.loaded[(role, iteration)] = self.batches[role].batch(iteration)

    def compute(self, role: str, iteration: int, phase: str) -> float | None:
        if phase == "backward":
            return None  # the whole backward ran with the forward phase, as in the emulator
        x, y = self.loaded.pop((role, iteration))
        return self.models[role].forward_backward(x, y)

    def update(self, role: str, rule: str, kwargs: dict[str, Any]) -> None:
        rules.apply_rule(rule, self.bufs[role], **kwargs)

    def smooth(self, role: str, buf: str) -> None:
        s = self.algo.smoothing
        smooth_segments(self._buf(role, buf), self.sizes, s.sigma, s.order)

    # ---------------------------------------------------------- parameter server

    def pushed(
        self, shard: int, role: str, buf: str, mode: str, iteration: int, done: Apply | None
    ) -> Update[torch.Tensor] | None:
        """The server receives a copy of the worker's slice (``done``: the policy's answer);
        the update it makes, if one is due now, as the gRPC shard sums it."""
        a, b = self.shards[shard]["range"]
        got = self._buf(role, buf)[a:b].clone()
        update, _ = self.shards[shard]["round"].add(got, mode, iteration, done)
        return update

    def apply(self, shard: int, update: Update[torch.Tensor]) -> None:
        s = self.shards[shard]
        rules.server_update(
            s["params"],
            update.total,
            update.count,
            update.mode,
            self.algo.lr,
            self.server_momentum,
            s["velocity"],
        )

    def pulled(self, shard: int, role: str, buf: str) -> None:
        a, b = self.shards[shard]["range"]
        self._buf(role, buf)[a:b] = self.shards[shard]["params"]

    # ------------------------------------------------------------- collectives

    def allreduce(self, group: tuple[str, ...], buf: str, span: Span, average: bool) -> None:
        views = [self._view(m, buf, span) for m in group]
        total = torch.stack(views).sum(0)
        if average:
            total /= len(group)
        for v in views:
            v.copy_(total)

    def reduce(self, group: tuple[str, ...], root: str, buf: str, span: Span) -> None:
        others = [self._view(m, buf, span) for m in group if m != root]
        self._view(root, buf, span).copy_(torch.stack(others).sum(0))

    def broadcast(self, group: tuple[str, ...], root: str, buf: str, span: Span) -> None:
        src = self._view(root, buf, span)
        for m in group:
            if m != root:
                self._view(m, buf, span).copy_(src)

    # ------------------------------------------------------------------ registry

    def copy(self, role: str, buf: str) -> torch.Tensor:
        """What a publication stores: the registry holds its own copy."""
        return self._buf(role, buf).clone()

    def into(self, role: str, buf: str, value: torch.Tensor) -> None:
        self._buf(role, buf).copy_(value)

    # --------------------------------------------------------------- accuracy

    def average_params(self) -> np.ndarray:
        return torch.stack([m.params for m in self.models.values()]).mean(0).numpy()

    def evaluate(self, now: float, iteration: int) -> tuple[float, float]:
        """Test loss and accuracy of the workers' average model; notes when it hits the target."""
        model = next(iter(self.models.values()))
        loss, acc = model.evaluate(
            torch.from_numpy(self.average_params()), self.data.x_test, self.data.y_test
        )
        self.curve.append((now, iteration, loss, acc))
        if self.time_to_target is None and acc >= self.target:
            self.time_to_target = now
        return loss, acc

    def metrics(self) -> dict[str, Any]:
        _, _, loss, acc = self.curve[-1] if self.curve else (0, 0, float("nan"), 0.0)
        return {
            "final_loss": loss,
            "test_accuracy": acc,
            "time_to_target_s": self.time_to_target,
            "target_accuracy": self.target,
        }
