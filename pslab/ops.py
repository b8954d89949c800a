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

An op is a message its program makes and its executor reads once: a
slotted dataclass, not a frozen one, and its ``name`` and ``cat`` are class
variables. A simulated worker-iteration makes five ops (a 10,240-worker run
millions), and a frozen dataclass sets each field through
``object.__setattr__``: building a sync_ps iteration's five took about 31,000
instructions that way, 13,000 this way. Nothing hashes or mutates an op.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar


class Cat(str, Enum):
    """Trace category of an op: how metrics account its time."""

    io = "io"
    compute = "compute"
    comm = "comm"
    server = "server"
    iteration = "iteration"


Span = tuple[int, int] | None


@dataclass(slots=True)
class Op:
    """What every op has: the iteration it belongs to; its type's span name and category."""

    iteration: int = -1

    name: ClassVar[str] = "op"
    cat: ClassVar[Cat] = Cat.compute


@dataclass(slots=True)
class Iteration(Op):
    """Marks the start of ``iteration`` on this role's lane (closes the previous one)."""

    name: ClassVar[str] = "iteration"
    cat: ClassVar[Cat] = Cat.iteration


@dataclass(slots=True)
class Load(Op):
    """Read and decode one batch (I/O). Result: None."""

    name: ClassVar[str] = "load"
    cat: ClassVar[Cat] = Cat.io


@dataclass(slots=True)
class Compute(Op):
    """Forward and backward on the current ``params`` into ``grad``. Result: the loss.

    ``fraction`` of a whole forward+backward, so a program can interleave
    backward buckets with communication (DDP-style overlap).
    """

    fraction: float = 1.0
    phase: str = "fwd+bwd"
    name: ClassVar[str] = "compute"
    cat: ClassVar[Cat] = Cat.compute


@dataclass(slots=True)
class Update(Op):
    """Local math on buffers, by a rule name from :mod:`pslab.rules`. Result: None.

    ``args`` holds the rule's scalars (learning rate, pull strength, ...).
    """

    rule: str = "sgd"
    args: tuple[tuple[str, Any], ...] = ()
    name: ClassVar[str] = "update"
    cat: ClassVar[Cat] = Cat.compute

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)


@dataclass(slots=True)
class Smooth(Op):
    """Laplacian smoothing of ``buf`` in place, per parameter tensor. Result: None."""

    buf: str = "grad"
    name: ClassVar[str] = "smooth"
    cat: ClassVar[Cat] = Cat.compute


@dataclass(slots=True)
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
    name: ClassVar[str] = "push"
    cat: ClassVar[Cat] = Cat.comm


@dataclass(slots=True)
class Pull(Op):
    """Fetch the server's tensor into ``buf``, once the consistency policy lets this worker go.

    Result: the server version received.
    """

    buf: str = "params"
    span: Span = None
    name: ClassVar[str] = "pull"
    cat: ClassVar[Cat] = Cat.comm


@dataclass(slots=True)
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
    name: ClassVar[str] = "allreduce"
    cat: ClassVar[Cat] = Cat.comm


@dataclass(slots=True)
class Reduce(Op):
    """Sum ``buf`` of every member of ``group`` except ``root`` into ``root``'s ``buf``.

    The root (a communicator with no data of its own) contributes nothing.
    Result: None.
    """

    group: tuple[str, ...] = ()
    root: str = ""
    buf: str = "grad"
    span: Span = None
    name: ClassVar[str] = "reduce"
    cat: ClassVar[Cat] = Cat.comm


@dataclass(slots=True)
class Broadcast(Op):
    """Copy ``root``'s ``buf`` into ``buf`` of every member of ``group``. Result: None."""

    group: tuple[str, ...] = ()
    root: str = ""
    buf: str = "grad"
    span: Span = None
    name: ClassVar[str] = "broadcast"
    cat: ClassVar[Cat] = Cat.comm


@dataclass(slots=True)
class ReportLoss(Op):
    """Tell the leader registry this worker's running-mean loss.

    Result: a :class:`Leaders` naming the current local and global leaders.
    """

    loss: float = 0.0
    name: ClassVar[str] = "report_loss"
    cat: ClassVar[Cat] = Cat.comm


@dataclass(slots=True)
class Leaders:
    local: str
    global_: str


@dataclass(slots=True)
class Publish(Op):
    """Store ``buf`` in the registry under ``key`` as of ``round``. Result: None."""

    key: str = ""
    round: int = 0
    buf: str = "params"
    name: ClassVar[str] = "publish"
    cat: ClassVar[Cat] = Cat.comm


@dataclass(slots=True)
class Fetch(Op):
    """Read the registry's ``key`` into ``buf`` once published at ``round`` or later.

    ``wait=False`` takes whatever copy is there and never blocks (asynchronous
    variants). Result: True if a copy was read, False if none was published.
    """

    key: str = ""
    round: int = 0
    wait: bool = True
    buf: str = "leader"
    name: ClassVar[str] = "fetch"
    cat: ClassVar[Cat] = Cat.comm


@dataclass(slots=True)
class Start(Op):
    """Begin ``op`` without waiting for it. Result: a handle for :class:`Wait`."""

    op: Op | None = None
    name: ClassVar[str] = "start"
    cat: ClassVar[Cat] = Cat.comm


@dataclass(slots=True)
class Wait(Op):
    """Block until every started op in ``handles`` finished. Result: their results."""

    handles: tuple[Any, ...] = ()
    name: ClassVar[str] = "wait"
    cat: ClassVar[Cat] = Cat.comm
