"""A calibration profile: what this machine's emulator costs, measured once by ``pslab calibrate``.

The simulator predicts an emulated run by pricing ops with these figures
instead of the scenario's nominal cluster. Each cost is what a mechanism of
the emulator really spends: CPU per byte on the sending and the receiving
side of a gRPC stream (serialisation and copies), a fixed cost per RPC, the
server's update throughput, torch's compute time per batch, gloo's
all-reduce. The profile records the machine it was measured on, so a stale
or foreign profile is noticed rather than trusted.

An op also costs more when its process has not run it for a while: its code
and data have left the caches (and, on a virtual machine, an idle vCPU is
slow to get going). A tiny model's forward and backward take about 0.2 ms
back to back but 0.5 ms after a 5 ms sleep on the 2-core machine this was
built on; a small RPC and a gloo all-reduce pay the same way. So each such
cost has a *cold* figure beside its hot one, and a ramp says over how long an
idle gap an op goes from hot to cold (measured on each op where it matters,
``cold_ramp_s`` for the rest).

A virtual machine's cores do not keep one speed: what its host runs beside it
moves how much work a CPU second buys. On the 2-core machine this was built on,
with nothing else running in the VM, a reference loop ran 30-35 M iterations
per CPU second for half an hour and 17.7-19.6 M in the next ten minutes, while
an 8-worker sync_ps run went from 167-170 ms an iteration to 190-228 ms. So a
profile records the speed it was measured at (:class:`Speed`, from blocks timed
through the calibration) and a run its own (through its steady iterations), and
compare reports the two. It does not rescale the CPU figures by their ratio:
the loop's speed does not carry over to the ops (1.8x slower loops there, 1.2x
slower runs; re-predicting three quiet validations without it, the median error
went 9.4 -> 7.7 %, 6.0 -> 6.0 % and 7.8 -> 7.0 %).
"""

from __future__ import annotations

import platform
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pslab.results import write_text_atomic
from pslab.scenario import ScenarioError, format_validation, read_yaml


class Machine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hostname: str
    cores: int = Field(ge=1)
    python: str
    torch: str = ""
    grpc: str = ""


class ProfileError(ScenarioError):
    """A calibration profile that cannot be read: a user's input, reported like a scenario's."""


class Speed(BaseModel):
    """What one CPU second of this machine did over a stretch (``grpc_ps.speed_probe``):
    interpreter loop iterations, as a mean over blocks sampled through it, and the
    interval that mean is known to."""

    model_config = ConfigDict(extra="forbid")

    loops_per_cpu_s: float = Field(gt=0, description="harmonic mean over the blocks")
    low: float = Field(gt=0, description="the mean less two standard errors")
    high: float = Field(gt=0, description="the mean plus two standard errors")

    def differs_from(self, other: Speed) -> bool:
        """Whether the two speeds differ by more than their errors."""
        return self.high < other.low or other.high < self.low


PROFILE_FORMAT = 18  # bumped when a cached profile would lack a field or measure an old mechanism


# an end of a stream: a client's or a server's, sending or receiving (as the figures' names)
STREAM_ENDS = ("send", "recv", "server_send", "server_recv")


def stream_key(end: str, nbytes: int) -> str:
    """A figure's key in ``Profile.stream_cpu_s_per_byte_at``."""
    return f"{end}@{nbytes}"


def parse_stream_key(key: str) -> tuple[str, int]:
    """``stream_key``'s end and size, or ValueError saying what a key must be."""
    end, _, size = key.rpartition("@")
    if end not in STREAM_ENDS or not size.isdigit() or int(size) == 0:
        raise ValueError(f"key {key!r}: expected 'END@BYTES', END one of {', '.join(STREAM_ENDS)}")
    return end, int(size)


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = Field(1, description="what a cached profile holds; older ones are re-measured")
    machine: Machine
    measured_at: float = Field(description="Unix time of the measurement")
    effective_cores: float = Field(
        0.0, ge=0, description="cores free for the run when measured (0: all of machine.cores)"
    )
    send_cpu_s_per_byte: float = Field(ge=0, description="a client's CPU per byte it streams")
    recv_cpu_s_per_byte: float = Field(ge=0, description="a client's CPU per byte it receives")
    server_send_cpu_s_per_byte: float = Field(
        0.0, ge=0, description="a server's CPU per byte it streams (0: as a client's)"
    )
    server_recv_cpu_s_per_byte: float = Field(
        0.0, ge=0, description="a server's CPU per byte it receives (0: as a client's)"
    )
    stream_bytes: int = Field(
        0,
        ge=0,
        description="the stream size the four per-byte figures above were taken at "
        "(0: unknown, each end's CPU then taken as proportional to the bytes)",
    )
    stream_cpu_s_per_byte_at: dict[str, float] = Field(
        default_factory=dict,
        description="the same figures at other stream sizes, key 'end@bytes' (end: send, "
        "recv, server_send or server_recv)",
    )
    rpc_overhead_s: float = Field(
        ge=0, description="an RPC's wall time beyond its two ends' CPU (the fixed wait)"
    )
    stream_overlap: float = Field(
        1.0,
        ge=0,
        le=1,
        description="share of a transfer's smaller end that runs while the other end runs too "
        "(0: the ends take turns, 1: they run side by side)",
    )
    contended_lock_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="share of a process's interpreter lock that does work while several of "
        "its threads want it (the rest goes to handing it over; 1: none is lost)",
    )
    rpc_cpu_s: float = Field(ge=0, description="CPU an RPC costs its two processes together")
    update_s_per_byte: float = Field(ge=0, description="server update time per parameter byte")
    sleep_overshoot_s: float = Field(0.0, ge=0, description="time.sleep's mean extra delay")
    sleep_jitter_s: float = Field(0.0, ge=0, description="standard deviation of that delay")
    worker_update_s: float = Field(
        0.0, ge=0, description="a worker's torch SGD step's fixed seconds, its caches cold"
    )
    worker_update_s_per_byte: float = Field(
        0.0, ge=0, description="a worker's torch SGD step per parameter byte, caches cold"
    )
    worker_update_hot_s: float | None = Field(
        None, ge=0, description="that step's fixed seconds back to back (None: not measured)"
    )
    worker_update_hot_s_per_byte: float | None = Field(
        None, ge=0, description="that step per parameter byte back to back (None: not measured)"
    )
    mean_scale_s_per_byte: float = Field(
        0.0,
        ge=0,
        description="a worker's in-place division of an all-reduced sum by its group's size, "
        "per byte (0: not priced)",
    )
    slice_add_s_per_byte_at: dict[int, float] = Field(
        default_factory=dict,
        description="a communicator's in-place sum of a received part into its total, "
        "seconds per byte, key the slice's bytes (empty: not priced)",
    )
    slice_copy_s_per_byte_at: dict[int, float] = Field(
        default_factory=dict,
        description="a communicator's copy of a slice (its sum into its buffer, its offer), "
        "seconds per byte, key the slice's bytes (empty: not priced)",
    )
    compute_s: dict[str, float] = Field(
        default_factory=dict, description="real forward+backward per batch, key 'model@batch'"
    )
    allreduce_s_per_byte: float = Field(
        0.0, ge=0, description="CPU per byte a gloo ring step costs each end"
    )
    allreduce_overhead_s: float = Field(0.0, ge=0, description="a tiny gloo all-reduce, 2 members")
    allreduce_s: dict[str, float] = Field(
        default_factory=dict, description="a gloo all-reduce's seconds, key 'members x bytes'"
    )
    allreduce_cpu_s: dict[str, float] = Field(
        default_factory=dict, description="CPU each member spends on it, same key"
    )
    compute_cold_s: dict[str, float] = Field(
        default_factory=dict, description="forward+backward per batch after an idle gap"
    )
    rpc_cold_cpu_s: float = Field(
        0.0, ge=0, description="extra CPU an RPC costs its two processes when both were idle"
    )
    allreduce_cold_cpu_s: float = Field(
        0.0, ge=0, description="extra CPU each member spends on a gloo all-reduce entered idle"
    )
    cold_ramp_s: float = Field(
        0.0, ge=0, description="idle gap over which an op goes from hot to cold (0: never cold)"
    )
    rpc_cold_ramp_s: float = Field(0.0, ge=0, description="that gap for an RPC")
    cold_by_others_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of an op's cold extra that other processes' CPU work in its gap "
        "adds to what the gap's idle time makes (0: none)",
    )
    cold_by_others_cpu_s: float = Field(
        0.0, ge=0, description="the others' CPU-seconds over which that share builds up"
    )
    send_cold_cpu_s_per_byte: float = Field(
        0.0, ge=0, description="extra CPU per byte a stream's sender spends entered idle"
    )
    recv_cold_cpu_s_per_byte: float = Field(
        0.0, ge=0, description="extra CPU per byte a stream's receiver spends entered idle"
    )
    compute_cold_ramp_s: dict[str, float] = Field(
        default_factory=dict, description="that gap for a model's compute, same key"
    )
    speed: Speed | None = Field(None, description="the machine's speed its CPU figures are at")

    def compute_key(self, model: str, batch: int) -> str:
        return f"{model}@{batch}"

    @field_validator("stream_cpu_s_per_byte_at")
    @classmethod
    def _stream_keys(cls, table: dict[str, float]) -> dict[str, float]:
        for key, per_byte in table.items():
            parse_stream_key(key)
            if not per_byte >= 0:
                raise ValueError(f"{key}: expected seconds per byte >= 0, got {per_byte}")
        return table

    @field_validator("slice_add_s_per_byte_at", "slice_copy_s_per_byte_at")
    @classmethod
    def _sizes(cls, table: dict[int, float]) -> dict[int, float]:
        for nbytes, per_byte in table.items():
            if nbytes <= 0 or not per_byte >= 0:
                raise ValueError(f"{nbytes}: expected bytes > 0 and seconds per byte >= 0")
        return table

    def allreduce_key(self, members: int, nbytes: int) -> str:
        return f"{members}x{nbytes}"

    def save(self, path: Path) -> None:
        write_text_atomic(Path(path), yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))

    @classmethod
    def load(cls, path: Path) -> Profile:
        path = Path(path)
        data = read_yaml(path, ProfileError)
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            what = "calibration profile (re-measure it with `pslab calibrate -o FILE`)"
            raise ProfileError(format_validation(str(path), err, what)) from None


def this_machine(cores: int) -> Machine:
    return Machine(hostname=platform.node(), cores=cores, python=platform.python_version())
