"""Pictures of a comparison: what people would rather see than read.

A timeline of one steady-state iteration, simulated above measured, lane by
lane; and per-worker bars splitting an iteration into compute, loading,
exposed and overlapped communication. Written as PNGs with the Agg backend,
so they work on machines without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pslab.trace import Trace

COLOURS = {"compute": "#4c72b0", "io": "#dd8452", "comm": "#c44e52", "server": "#8172b3"}


def _lanes(trace: Trace, iteration: int, max_lanes: int) -> dict[str, list]:
    lanes: dict[str, list] = {}
    for s in trace.spans:
        if s.iteration == iteration and s.cat != "iteration":
            lanes.setdefault(s.role, []).append(s)
    return dict(sorted(lanes.items())[:max_lanes])


def timeline(predicted: Trace, measured: Trace, iteration: int, path: Path, max_lanes: int = 12):
    """One iteration's spans per role: simulated on top, measured below, each from its start."""
    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    for ax, trace, title in ((axes[0], predicted, "simulated"), (axes[1], measured, "measured")):
        lanes = _lanes(trace, iteration, max_lanes)
        t0 = min((s.start for spans in lanes.values() for s in spans), default=0.0)
        for y, spans in enumerate(lanes.values()):
            for s in spans:
                ax.barh(
                    y,
                    (s.end - s.start) * 1e3,
                    left=(s.start - t0) * 1e3,
                    color=COLOURS.get(s.cat, "grey"),
                    alpha=1.0 if s.blocking else 0.45,
                    edgecolor="black",
                    linewidth=0.3,
                )
        ax.set_yticks(range(len(lanes)), list(lanes))
        ax.invert_yaxis()
        ax.set_title(f"{title}: iteration {iteration}")
    axes[1].set_xlabel("ms from the iteration's first op")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    fig.legend(handles, list(COLOURS), loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def breakdown(predicted: dict[str, Any], measured: dict[str, Any], path: Path) -> None:
    """An average worker iteration split into its parts, predicted beside measured."""
    parts = ["compute_time_s", "io_time_s", "exposed_comm_time_s", "overlapped"]
    labels = ["compute", "I/O", "exposed comm", "overlapped comm"]
    colours = [COLOURS["compute"], COLOURS["io"], COLOURS["comm"], "#e6a0a2"]

    def values(m: dict[str, Any]) -> list[float]:
        overlapped = max(m["comm_time_s"] - m["exposed_comm_time_s"], 0.0)
        return [1e3 * (m[p] if p != "overlapped" else overlapped) for p in parts]

    fig, ax = plt.subplots(figsize=(7, 4))
    for x, m in enumerate((predicted, measured)):
        bottom = 0.0
        for v, colour, label in zip(values(m), colours, labels, strict=True):
            ax.bar(x, v, bottom=bottom, color=colour, label=label if x == 0 else None)
            bottom += v
        ax.plot([x - 0.4, x + 0.4], [1e3 * m["iteration_time_s"]] * 2, "k--", linewidth=1)
    ax.set_xticks([0, 1], ["simulated", "measured"])
    ax.set_ylabel("ms per worker iteration (dashed: iteration time)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
