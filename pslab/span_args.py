"""Spans' ``args``, packed: one small integer per span, the args themselves in columns.

A simulated async_ps server records an apply span per push, each with its staleness and
version: at 10,240 workers x 100 iterations, a million dicts (and as many one-element
lists) that live as long as the trace. Kept as objects they took 400 MB, and scattered
through the heap among the simulation's own objects they made the whole run 31 % slower
(89 against 68 s with the args left out as a trial; 71 s packed). So args whose values
are all integers or lists of integers are stored by *shape* (their keys and which values
are lists), each shape's values in arrays; anything else is kept as the dict it was.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from itertools import compress, repeat
from operator import is_not
from typing import Any

_LOW, _HIGH = -(2**63), 2**63  # what an array("q") holds
_NONE = array("i", [-1]).tobytes()  # a span without args
# A shape: the args' keys, and for each whether its value is a list of integers.
_Shape = tuple[tuple[str, ...], tuple[bool, ...]]


def _shape(args: dict[str, Any]) -> _Shape | None:
    """The shape that packs ``args``, or None where a value is neither an int nor a list of
    ints (it is kept as it is). Inlined checks: it runs once per span with args."""
    lists = []
    for v in args.values():
        if type(v) is int:
            if not _LOW <= v < _HIGH:
                return None
            lists.append(False)
        elif type(v) is list:
            for x in v:
                if type(x) is not int or not _LOW <= x < _HIGH:
                    return None
            lists.append(True)
        else:
            return None
    return tuple(args), tuple(lists)


class _Block:
    """The args of one shape, row by row: a column per key; a list's values run on in one
    column, with where each row's end."""

    def __init__(self, shape: _Shape) -> None:
        self.keys, lists = shape
        self.columns = [array("q") for _ in self.keys]
        self.ends = [array("q") if is_list else None for is_list in lists]
        self.rows = 0

    def add(self, args: dict[str, Any]) -> int:
        """Append ``args`` (of this block's shape); returns its row."""
        row = self.rows
        self.rows += 1
        # one shape, one length: nothing for strict=True to check, at its cost per span
        for column, ends, value in zip(self.columns, self.ends, args.values(), strict=False):
            if ends is None:
                column.append(value)
            else:
                column.extend(value)
                ends.append(len(column))
        return row

    def get(self, row: int) -> dict[str, Any]:
        return {key: self._value(k, row) for k, key in enumerate(self.keys)}

    def _value(self, k: int, row: int) -> int | list[int]:
        column, ends = self.columns[k], self.ends[k]
        if ends is None:
            return column[row]
        return column[ends[row - 1] if row else 0 : ends[row]].tolist()


class SpanArgs:
    """Every span's args (or None), in span order, packed by shape (see the module)."""

    def __init__(self) -> None:
        self.ref = array("i")  # per span: its args' number, -1 for none
        self._block = array("i")  # per args: its block (-1: kept as a dict)
        self._row = array("i")  # per args: its row there (or in ``_kept``)
        self._blocks: list[_Block] = []
        self._block_of: dict[_Shape, tuple[int, _Block]] = {}
        self._kept: list[dict[str, Any]] = []

    def __len__(self) -> int:
        """How many spans have args."""
        return len(self._block)

    def extend(self, args: Sequence[dict[str, Any] | None]) -> None:
        """Append the next spans' args, one per span."""
        ref, add = self.ref, self._add
        base = len(ref)
        ref.frombytes(_NONE * len(args))  # a copy of bytes, not an int per span
        for i in compress(range(len(args)), map(is_not, args, repeat(None))):  # few: C finds them
            ref[base + i] = add(args[i])

    def _add(self, args: dict[str, Any]) -> int:
        shape = _shape(args) if args else None
        if shape is None:
            code, row = -1, len(self._kept)
            self._kept.append(args)
        else:
            found = self._block_of.get(shape)
            if found is None:
                found = self._block_of[shape] = (len(self._blocks), _Block(shape))
                self._blocks.append(found[1])
            code, row = found[0], found[1].add(args)
        self._block.append(code)
        self._row.append(row)
        return len(self._row) - 1

    def get(self, span: int) -> dict[str, Any] | None:
        """Span ``span``'s args, as recorded (a new dict where they were packed)."""
        n = self.ref[span]
        return None if n < 0 else self._nth(n)

    def _nth(self, n: int) -> dict[str, Any]:
        """The ``n``-th args recorded."""
        block, row = self._block[n], self._row[n]
        return self._kept[row] if block < 0 else self._blocks[block].get(row)

    def values(self, key: str) -> list[Any]:
        """Every value of ``key`` in span order, a list's items in its place (the staleness of
        every push an apply span covers)."""
        blocks = [b for b in self._blocks if key in b.keys]
        if not self._kept and len(blocks) == 1:  # one shape holds them all, in span order
            block = blocks[0]
            k = block.keys.index(key)
            return block.columns[k].tolist()
        out: list[Any] = []
        for n in range(len(self._block)):
            args = self._nth(n)
            if key in args:
                value = args[key]
                if isinstance(value, list):
                    out.extend(value)
                else:
                    out.append(value)
        return out
