"""Durability of a shard: resuming it from its journal, and writing its checkpoints.

The file formats and their checks are :mod:`grpc_ps.checkpoint` and :mod:`grpc_ps.journal`;
this is the shard's side: what its state is, and replaying records through the shard's own
push path, so a resumed shard holds bitwise what the dead one acknowledged.
"""

from __future__ import annotations

import numpy as np

from grpc_ps.checkpoint import CheckpointError, Journal, Shape, State
from grpc_ps.journal import LEAVE, Record
from grpc_ps.updates import DTYPE, MODES
from pslab.policies import PolicyError


class Durable:
    """Mixed into :class:`~grpc_ps.shard.ParameterServerServicer`: its durability methods."""

    def _resume(self, journal: Journal) -> None:
        """Load the last checkpoint and replay the journal: the state the dead server acked.

        Streamed: the parameters, and one record at a time read straight into a buffer of
        the pool, so a resume holds what the shard holds when serving (about 2x the model
        with ASP), however long the journal. Anything that does not prove itself is a
        :class:`CheckpointError`, and the shard is not built.
        """
        shape = Shape(self.length, self.n_workers, self._velocity is not None, self._policy_id())
        state = journal.load(shape)
        with self._cond:
            self._params, self._live = state.params, 1
            if self._velocity is not None and state.velocity is not None:
                self._velocity[:] = state.velocity
            self.policy.version, self.policy.clock = state.version, list(state.clock)
            self.policy.live = set(state.live)
            self._last_iteration = list(state.last_iteration)
            self._received, self._applied = state.received, state.applied
            replayed = self._replay_journal(journal)
            self._pool.clear()  # the replay's buffer: serving allocates again on demand
            self._live = 2 if self._round.open else 1
            if replayed:
                self._checkpoint()  # replayed pushes are in no journal from here on

    def _replay_journal(self, journal: Journal) -> int:
        """Replay every record (holding ``_cond``); return how many there were."""
        nbytes = self.length * DTYPE.itemsize
        held: list[np.ndarray] = []  # the buffer the current record was read into

        def buffer(n: int) -> memoryview:
            held.append(self._new_buffer())
            return memoryview(held[-1]).cast("B")[:n]

        replayed = 0
        for replayed, r in enumerate(journal.replay(nbytes, buffer), 1):
            try:
                self._replay(r, held.pop() if held else None, nbytes)
            except (PolicyError, ValueError) as e:
                raise CheckpointError(
                    f"{journal.directory}: journal record {replayed - 1} does not apply "
                    f"to the checkpoint ({e}); not resumed"
                ) from None
        return replayed

    def _replay(self, r: Record, buf: np.ndarray | None, nbytes: int) -> None:
        if r.kind == LEAVE:
            self._leave(r.worker, record=False)
            return
        if buf is None or len(r.data) != nbytes or r.worker >= self.n_workers:
            raise ValueError(f"a push of {len(r.data)} bytes from worker {r.worker}")
        if r.mode not in MODES:
            raise ValueError(f"push mode {r.mode}")
        self._accept(r.worker, r.iteration, r.computed_on, r.mode, buf, record=False)

    def _policy_id(self) -> str:
        """What a checkpoint must have been written under to be resumed by this shard."""
        return f"aggregate={self.policy.aggregate} bound={self.policy.bound}"

    def _checkpoint(self) -> None:
        """Write a checkpoint (holding ``_cond``), unless a BSP round is open: its pushes
        live in the journal until the round closes."""
        assert self.journal is not None and self._params is not None
        if self._round.open:
            return
        self.journal.checkpoint(
            State(
                self._params,
                self._velocity,
                self.policy.version,
                list(self.policy.clock),
                sorted(self.policy.live),
                list(self._last_iteration),
                self._received,
                self._applied,
                self._policy_id(),
            )
        )

    def checkpoint(self) -> None:
        """A checkpoint now (e.g. on a clean shutdown), if there is a journal and a model."""
        with self._cond:
            if self.journal is not None and self._params is not None:
                self._checkpoint()
