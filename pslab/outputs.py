"""Where a run's results go, checked before the run starts.

A 22 s emulation whose ``-o`` named an existing file, or a directory that
could not be written, used to fail after the run with a traceback and the
results gone; ``-o ""`` wrote nothing silently (issue 19). So the place is
checked first: not empty, not an existing file, and writable: the directory
is made and a scratch file written and removed in it before the run starts.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pslab.schema_errors import ScenarioError


def check_out_dir(text: str | os.PathLike[str], flag: str = "-o") -> Path:
    """The output directory ``text`` names, or a ScenarioError saying why it cannot be."""
    if not str(text).strip():
        raise ScenarioError(f"{flag} is empty: name the directory to write results to")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ScenarioError(
            f"{flag} {path}: an existing file, not a directory; name a directory "
            "(results are metrics.json, trace.json and scenario.yaml inside it)"
        )
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ScenarioError(f"{flag} {path}: {parent} is a file, so {path} cannot be made")
    try:  # made now, and a file written and removed: permission bits do not bind root
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ScenarioError(f"{flag} {path}: cannot write there ({e.strerror})") from None
    return path
