"""The vocabulary role programs speak.

A role program (worker, communicator, ...) is a generator that yields these
ops and receives each op's result. It never touches a clock, a socket or a
tensor: the simulator's executor turns an op into SimPy events priced by the
topology, the emulator's executor performs it for real and times it. That is
what makes "the same algorithm" literally true on both sides.

Tensors live in named buffers held by the executor (``params``, ``grad``,
``center``, ...). An op names the buffer it reads or writes; ``span`` picks a
contiguous element range of it (a bucket for layer-wise overlap). The
simulator only needs the byte count; the emulator, and the simulator in
numerics mode, hold real arrays under the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Cat(str, Enum):
    """Trace category of an op: how metrics account its time."""

    io = "io"
    compute = "compute"
    comm = "comm"
    server = "server"
    iteration = "iteration"


Span = tuple[int, int] | None


@dataclass(frozen=True)
class Op:
    iteration: int = -1

    name: str = field(default="op", init=False, repr=False)
    cat: Cat = field(default=Cat.compute, init=False, repr=False)


@dataclass(frozen=True)
class Iteration(Op):
    """Marks the start of ``iteration`` on this role's lane (closes the previous one)."""

    name: str = field(default="iteration", init=False)
    cat: Cat = field(default=Cat.iteration, init=False)


@dataclass(frozen=True)
class Load(Op):
    """Read and decode one batch (I/O). Result: None."""

    name: str = field(default="load", init=False)
    cat: Cat = field(default=Cat.io, init=False)


@dataclass(frozen=True)
class Compute(Op):
    """Forward and backward on the current ``params`` into ``grad``. Result: the loss.

    ``fraction`` of a whole forward+backward, so a program can interleave
    backward buckets with communication (DDP-style overlap).
    """

    fraction: float = 1.0
    phase: str = "fwd+bwd"
    name: str = field(default="compute", init=False)
    cat: Cat = field(default=Cat.compute, init=False)


@dataclass(frozen=True)
class Update(Op):
    """Local math on buffers, by a rule name from :mod:`pslab.rules`. Result: None.

    ``args`` holds the rule's scalars (learning rate, pull strength, ...).
    """

    rule: str = "sgd"
    args: tuple[tuple[str, Any], ...] = ()
    name: str = field(default="update", init=False)
    cat: Cat = field(default=Cat.compute, init=False)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)


@dataclass(frozen=True)
class Smooth(Op):
    """Laplacian smoothing of ``buf`` in place, per parameter tensor. Result: None."""

    buf: str = "grad"
    name: str = field(default="smooth", init=False)
    cat: Cat = field(default=Cat.compute, init=False)


@dataclass(frozen=True)
class Push(Op):
    """Send ``buf`` to every parameter-server shard.

    ``mode`` tells the server what the tensor is: ``grad`` (apply an
    optimizer step), ``delta`` (add it: EASGD's elastic difference).
    ``version`` is the server version the tensor was computed from, so the
    server can measure staleness. Result: None.
    """

    buf: str = "grad"
    mode: str = "grad"
    version: int = 0
    span: Span = None
    name: str = field(default="push", init=False)
    cat: Cat = field(default=Cat.comm, init=False)


@dataclass(frozen=True)
class Pull(Op):
    """Fetch the server's tensor into ``buf``, once the consistency policy lets this worker go.

    Result: the server version received.
    """

    buf: str = "params"
    span: Span = None
    name: str = field(default="pull", init=False)
    cat: Cat = field(default=Cat.comm, init=False)


@dataclass(frozen=True)
class AllReduce(Op):
    """Sum (``average``: mean) ``buf`` over ``group`` in place. Result: None.

    ``on_behalf`` names the workers whose communication this is, when a
    communicator runs it for them (Layered SGD).
    """

    group: tuple[str, ...] = ()
    buf: str = "grad"
    average: bool = True
    span: Span = None
    on_behalf: tuple[str, ...] = ()
    name: str = field(default="allreduce", init=False)
    cat: Cat = field(default=Cat.comm, init=False)


@dataclass(frozen=True)
class Reduce(Op):
    """Sum ``buf`` of every member of ``group`` except ``root`` into ``root``'s ``buf``.

    The root (a communicator with no data of its own) contributes nothing.
    Result: None.
    """

    group: tuple[str, ...] = ()
    root: str = ""
    buf: str = "grad"
    span: Span = None
    name: str = field(default="reduce", init=False)
    cat: Cat = field(default=Cat.comm, init=False)


@dataclass(frozen=True)
class Broadcast(Op):
    """Copy ``root``'s ``buf`` into ``buf`` of every member of ``group``. Result: None."""

    group: tuple[str, ...] = ()
    root: str = ""
    buf: str = "grad"
    span: Span = None
    name: str = field(default="broadcast", init=False)
    cat: Cat = field(default=Cat.comm, init=False)


@dataclass(frozen=True)
class ReportLoss(Op):
    """Tell the leader registry this worker's running-mean loss.

    Result: a :class:`Leaders` naming the current local and global leaders.
    """

    loss: float = 0.0
    name: str = field(default="report_loss", init=False)
    cat: Cat = field(default=Cat.comm, init=False)


@dataclass(frozen=True)
class Leaders:
    local: str
    global_: str


@dataclass(frozen=True)
class Publish(Op):
    """Store ``buf`` in the registry under ``key`` as of ``round``. Result: None."""

    key: str = ""
    round: int = 0
    buf: str = "params"
    name: str = field(default="publish", init=False)
    cat: Cat = field(default=Cat.comm, init=False)


@dataclass(frozen=True)
class Fetch(Op):
    """Read the registry's ``key`` into ``buf`` once published at ``round`` or later.

    ``wait=False`` takes whatever copy is there and never blocks (asynchronous
    variants). Result: True if a copy was read, False if none was published.
    """

    key: str = ""
    round: int = 0
    wait: bool = True
    buf: str = "leader"
    name: str = field(default="fetch", init=False)
    cat: Cat = field(default=Cat.comm, init=False)


@dataclass(frozen=True)
class Start(Op):
    """Begin ``op`` without waiting for it. Result: a handle for :class:`Wait`."""

    op: Op | None = None
    name: str = field(default="start", init=False)
    cat: Cat = field(default=Cat.comm, init=False)


@dataclass(frozen=True)
class Wait(Op):
    """Block until every started op in ``handles`` finished. Result: their results."""

    handles: tuple[Any, ...] = ()
    name: str = field(default="wait", init=False)
    cat: Cat = field(default=Cat.comm, init=False)
