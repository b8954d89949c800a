"""Where a run's services listen: written by the launcher once servers are up, read by every role.

A multi-host run fills the same structure from flags or the environment
(torchrun, SLURM), so roles never care who started them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pslab.trace import write_json_atomic


@dataclass
class Endpoints:
    servers: list[str] = field(default_factory=list)  # shard k at servers[k]
    registry: str | None = None
    comms: list[str] = field(default_factory=list)  # group g's communicator
    dist_workers: str = ""  # torch.distributed init_method for the workers' world
    dist_comms: str = ""  # ... and for the communicators' world

    def save(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> Endpoints:
        return cls(**json.loads(Path(path).read_text()))
