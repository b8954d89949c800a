"""Every worker begins its first iteration together, once all of them are set up.

ps-lite's ``ps::Start`` "will block until every nodes are started" (its ``ps.h``), and a
collective's ``init_process_group`` waits for every rank; the simulator starts every worker
at once too. Without a gate the launcher's workers began whenever their imports, data and
connections were done: on the 2-core machine a real-compute async_ps run's four workers
started 0, 208, 497 and 625 ms in (validation 28), each ran about 600 ms, and no moment
held all four in their counted iterations, while the late ones' torch imports took the
cores from the early ones' iterations. That is neither the run the scenario describes nor
one a prediction can be compared with.

The gate is the launcher's: a worker it starts (``GATE_ENV`` set) prints ``ready`` once
its executor is built and waits for a line on its stdin; the launcher writes that line to
every worker once each is ready or gone (an asynchronous run outlives a lost worker).
Workers started by torchrun, srun or mpirun (``pslab worker``) have no such launcher and
start as they come.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterable
from typing import IO

GATE_ENV = "PSLAB_START_GATE"
READY = "ready"


def wait_at_gate() -> None:
    """In a worker the launcher gates: say so, and block until it opens."""
    if os.environ.get(GATE_ENV) != "1":
        return
    print(READY, flush=True)
    if not sys.stdin.readline():
        raise SystemExit("the launcher closed the start gate without opening it")


class StartGate:
    """The launcher's side: opens once every worker named is ready or gone.

    Called from the launcher's stdout readers (``ready``) and its main loop (``gone``)."""

    def __init__(self, names: Iterable[str]) -> None:
        self._waiting = set(names)
        self._stdins: dict[str, IO[str]] = {}
        self._lock = threading.Lock()
        self.is_open = not self._waiting

    def add(self, name: str, stdin: IO[str]) -> None:
        with self._lock:
            self._stdins[name] = stdin

    def ready(self, name: str) -> None:
        self._account(name)

    def gone(self, name: str) -> None:
        self._account(name)

    def _account(self, name: str) -> None:
        with self._lock:
            self._waiting.discard(name)
            if self._waiting or self.is_open:
                return
            self.is_open = True
            stdins = list(self._stdins.values())
        for stdin in stdins:  # a worker that died meanwhile has no reader: nothing lost
            with contextlib.suppress(BrokenPipeError, ValueError, OSError):
                stdin.write("go\n")
                stdin.flush()
                stdin.close()
