"""torch on one thread for a block of code, whoever runs it.

A launched worker runs torch with one thread (the launcher sets OMP_NUM_THREADS=1), so
calibration times torch that way; and the simulator's numerics, which train tiny models,
gain nothing from torch's pool but contention (runs on a loaded 2-core machine swung from
1 s to 25 s with it). torch is imported only when the block runs, so the core stays free
of it for timing-only simulations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_torch_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
