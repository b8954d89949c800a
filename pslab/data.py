"""scikit-learn's digits (shipped with the package, no download), split and sharded per worker.

The split and every worker's batch order follow from the run seed and the
worker's rank alone, so two runs of different variants see the same data in
the same order: what makes "Layered SGD equals sync SGD" testable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

TEST_FRACTION = 0.2


@dataclass
class Digits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load(seed: int, device: torch.device) -> Digits:
    # scikit-learn takes seconds to import: only a worker that trains on digits pays it,
    # not every role process of every run
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(len(y) * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]

    def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    return Digits(
        t(x[train], torch.float32),
        t(y[train], torch.long),
        t(x[test], torch.float32),
        t(y[test], torch.long),
    )


class Batches:
    """Worker ``rank``'s shard of the training set, reshuffled every epoch (seeded)."""

    def __init__(self, data: Digits, rank: int, world: int, batch_size: int, seed: int) -> None:
        self.data = data
        self.shard = np.arange(rank, len(data.y_train), world)
        self.batch_size = min(batch_size, len(self.shard))
        self.rng = np.random.default_rng([seed, rank])
        self.per_epoch = len(self.shard) // self.batch_size
        self._order = np.empty(0, dtype=np.intp)
        self._epoch = -1

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, k = divmod(i, self.per_epoch)
        while self._epoch < epoch:
            self._order = self.rng.permutation(self.shard)
            self._epoch += 1
        idx = torch.as_tensor(self._order[k * self.batch_size : (k + 1) * self.batch_size])
        idx = idx.to(self.data.x_train.device)
        return self.data.x_train[idx], self.data.y_train[idx]
