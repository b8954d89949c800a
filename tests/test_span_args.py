"""Packed span args read back as recorded, whatever their shape."""

from __future__ import annotations

from typing import Any

from pslab.span_args import SpanArgs
from pslab.trace import Trace


def _recorded() -> list[dict[str, Any] | None]:
    return [
        None,
        {"staleness": [0], "version": 1},
        {"staleness": [2, 0, 1], "version": 2},
        {"staleness": [], "version": 3},  # an empty list packs too
        {"version": 4, "staleness": [1]},  # other key order: another shape
        {"loss": 0.25, "version": 5},  # a float: kept as it is
        {"name": "x"},
        {},
        {"flag": True},  # a bool is not an int here
        {"big": 2**70, "staleness": [3]},  # beyond 64 bits: kept
        None,
        {"staleness": [5], "version": -(2**63)},
    ]


def test_every_shape_reads_back_as_recorded_and_values_keep_span_order() -> None:
    recorded = _recorded()
    args = SpanArgs()
    args.extend(recorded[:5])
    args.extend(recorded[5:])
    assert [args.get(i) for i in range(len(recorded))] == recorded
    assert len(args) == sum(a is not None for a in recorded)
    assert args.values("staleness") == [0, 2, 0, 1, 1, 3, 5]
    assert args.values("version") == [1, 2, 3, 4, 5, -(2**63)]
    assert args.values("absent") == []


def test_one_shape_is_read_column_wise() -> None:
    args = SpanArgs()
    args.extend([{"staleness": [k % 3], "version": k} if k % 2 else None for k in range(1000)])
    assert args.values("staleness") == [k % 3 for k in range(1, 1000, 2)]
    assert args.get(7) == {"staleness": [1], "version": 7} and args.get(8) is None


def test_a_trace_keeps_its_spans_args_across_packed_chunks() -> None:
    trace = Trace("sim")
    recorded = _recorded() * 1500  # more spans than one packed chunk
    for k, one in enumerate(recorded):
        trace.record("ps-0", "ps0", "apply", "server", k, k + 0.5, k, args=one)
    assert [s.args for s in trace.spans] == recorded
    assert len(trace.columns().args) == 1500 * sum(a is not None for a in _recorded())
