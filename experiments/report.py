"""What every experiment shares in presenting: the JSON last line, tables, figures, flags.

The contract of an experiment is that its last stdout line is one JSON object
with every figure, so a script (or a test) can read the numbers without parsing
the tables above it.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def rounded(obj: Any, digits: int = 6) -> Any:
    """Floats to ``digits`` significant digits, non-finite ones to None.

    The JSON line stays readable and diffable, and valid JSON (which has no NaN).
    """
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    return obj


def print_json_last(summary: dict[str, Any]) -> None:
    """The summary as the last stdout line, after whatever rich or print wrote before it."""
    sys.stdout.flush()
    print(json.dumps(summary, separators=(",", ":")), flush=True)


def present(
    banner: str, settings: dict[str, Any], experiment: Callable[[Any, Any], dict], width: int
) -> int:
    """A CLI's whole output: the banner and the settings, the tables, then the JSON last line.

    ``experiment(console, progress_console)`` prints its tables on the first
    console (stdout) and its progress bar on the second (stderr, so stdout
    stays tables + JSON) and returns the summary.
    """
    from rich.console import Console

    console = Console(width=width)
    console.print(f"{banner}\n{json.dumps(settings)}")
    print_json_last(experiment(console, Console(stderr=True)))
    return 0


def out_dir(text: str) -> Path | None:
    """An ``--out`` flag: a directory for PNGs and curves, or None for ``''``."""
    return Path(text) if text else None


def floats(text: str) -> list[float]:
    """A comma-separated flag (``"0,50,100"``) as floats; empty items are skipped."""
    return [float(v) for v in text.split(",") if v.strip()]


def ints(text: str) -> list[int]:
    """A comma-separated flag (``"1,2,4"``) as ints; empty items are skipped."""
    return [int(v) for v in text.split(",") if v.strip()]


def names(text: str) -> list[str]:
    """A comma-separated flag of names (``"csgd,sync_ps"``); empty items are skipped."""
    return [v.strip() for v in text.split(",") if v.strip()]


def new_table(title: str, columns: Iterable[str], left: Iterable[str] = ("variant",)) -> Any:
    """A rich Table whose ``left`` columns are left-justified and the numbers right-justified."""
    from rich.table import Table

    t = Table(title=title)
    left = set(left)
    for col in columns:
        t.add_column(col, justify="left" if col in left else "right")
    return t


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend: experiments write PNGs, never open windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 110) -> str:
    """Lay out, write ``path`` atomically (a reader never sees half a PNG) and close ``fig``."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
    os.replace(tmp, path)
    return str(path)
