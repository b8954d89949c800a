"""sweep.png: throughput, the communication breakdown and time to target, per grid point.

Points are grouped along the x axis by the first varied setting and coloured by
the others. The communication panel stacks each point's exposed time (the
worker waits) under its hidden time (communication that overlaps compute), so a
variant that hides its all-reduce shows a tall bar that is mostly pale.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

Row = dict[str, Any]
MAX_LEGEND = 12  # series; a longer legend would cover the bars (the table names every point)


def _text(row: Row, key: str) -> str:
    return str(row.get(key, "—"))


def _bars(
    ax: Axes,
    rows: list[Row],
    keys: list[str],
    value: Callable[[Row], float],
    bottom: Callable[[Row], float] | None = None,
    alpha: float = 1.0,
    legend: bool = True,
) -> None:
    """Grouped bars: one group per value of ``keys[0]``, one series per value of the rest."""
    first, rest = keys[0], keys[1:]
    groups = list(dict.fromkeys(_text(r, first) for r in rows))
    series = list(dict.fromkeys(tuple(_text(r, k) for k in rest) for r in rows))
    width = 0.8 / max(len(series), 1)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, s in enumerate(series):
        mine = [r for r in rows if tuple(_text(r, k) for k in rest) == s]
        xs = [groups.index(_text(r, first)) + j * width for r in mine]
        label = ", ".join(f"{k}={v}" for k, v in zip(rest, s, strict=True)) or None
        ax.bar(
            xs,
            [value(r) for r in mine],
            width=width,
            bottom=[bottom(r) for r in mine] if bottom else None,
            color=colours[j % len(colours)],
            alpha=alpha,
            label=label if legend and len(series) <= MAX_LEGEND else None,
        )
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(groups))], groups)
    ax.set_xlabel(first)


def plot(rows: list[Row], keys: list[str], path: Path) -> None:
    def num(key: str) -> Callable[[Row], float]:
        return lambda r: r.get(key) or 0.0

    def hidden(r: Row) -> float:
        return max(num("comm_time_s")(r) - num("exposed_comm_time_s")(r), 0.0)

    panels = ["throughput", "comm"] + (["tta"] if any(r["time_to_target_s"] for r in rows) else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "throughput":
            _bars(ax, rows, keys, num("throughput_samples_per_s"))
            ax.set_ylabel("throughput (samples/s)")
        elif panel == "comm":
            _bars(ax, rows, keys, num("exposed_comm_time_s"), legend=False)
            _bars(ax, rows, keys, hidden, bottom=num("exposed_comm_time_s"), alpha=0.35)
            ax.set_ylabel("communication per iteration (s): exposed, hidden (pale)")
        else:
            _bars(ax, rows, keys, num("time_to_target_s"))
            ax.set_ylabel("time to target accuracy (s)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
