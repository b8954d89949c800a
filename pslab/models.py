"""The models workers train, with parameters and gradients living in two flat tensors.

Every parameter is a view into one flat ``params`` tensor and every gradient
a view into one flat ``grad`` tensor. Update rules, pushes, pulls and
collectives then work on a single contiguous buffer (as the parameter server
shards it), and autograd writes gradients straight into the buffer the
worker pushes: no gather, no copy.
"""

from __future__ import annotations

import torch
from torch import nn

from pslab.catalogue import CATALOGUE


def digits_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def digits_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 10),
    )


MODELS = {"digits_mlp": digits_mlp, "digits_cnn": digits_cnn}


class FlatModel:
    """A module whose parameters and gradients are views of two flat tensors.

    ``seed`` fixes the initial parameters, so every process of a run starts
    from the same point without shipping them.
    """

    def __init__(self, name: str, seed: int, device: torch.device) -> None:
        torch.manual_seed(seed)
        self.module = MODELS[name]().to(device)
        sizes = [p.numel() for p in self.module.parameters()]
        if sizes != CATALOGUE[name]():
            raise AssertionError(f"{name}: catalogue sizes {CATALOGUE[name]()} != module {sizes}")
        self.sizes = sizes
        self.params = torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])
        self.grad = torch.zeros_like(self.params)
        start = 0
        for p, n in zip(self.module.parameters(), sizes, strict=True):
            p.data = self.params[start : start + n].view_as(p)
            p.grad = self.grad[start : start + n].view_as(p)
            start += n
        self.loss_fn = nn.CrossEntropyLoss()

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Gradient of the batch loss into ``grad``; returns the loss."""
        self.grad.zero_()
        loss = self.loss_fn(self.module(x), y)
        loss.backward()
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(
        self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[float, float]:
        """(loss, accuracy) of ``params`` on a data set, leaving the model's own params alone."""
        saved = self.params.clone()
        self.params.copy_(params)
        logits = self.module(x)
        loss = float(self.loss_fn(logits, y))
        acc = float((logits.argmax(1) == y).float().mean())
        self.params.copy_(saved)
        return loss, acc


def initial_params(model: str, n_params: int, seed: int) -> torch.Tensor:
    """Every process's starting point, derived from the seed alone (servers and workers agree).

    A synthetic model is small noise of the workload's size; a real one is
    the module's own seeded initialisation.
    """
    if model == "synthetic":
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(n_params, generator=gen) * 0.01
    return FlatModel(model, seed, torch.device("cpu")).params
