from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_BFLOAT16: _ClassVar[DType]

class PushMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PUSH_MODE_UNSPECIFIED: _ClassVar[PushMode]
    PUSH_MODE_GRAD: _ClassVar[PushMode]
    PUSH_MODE_DELTA: _ClassVar[PushMode]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT64: DType
DTYPE_FLOAT16: DType
DTYPE_BFLOAT16: DType
PUSH_MODE_UNSPECIFIED: PushMode
PUSH_MODE_GRAD: PushMode
PUSH_MODE_DELTA: PushMode

class RegisterRequest(_message.Message):
    __slots__ = ("worker", "world", "total_elements", "dtype")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    WORLD_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    worker: int
    world: int
    total_elements: int
    dtype: DType
    def __init__(self, worker: _Optional[int] = ..., world: _Optional[int] = ..., total_elements: _Optional[int] = ..., dtype: _Optional[_Union[DType, str]] = ...) -> None: ...

class ShardMap(_message.Message):
    __slots__ = ("shard_id", "offset", "length", "num_shards", "version", "dtype", "next_iteration")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    NUM_SHARDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    NEXT_ITERATION_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    offset: int
    length: int
    num_shards: int
    version: int
    dtype: DType
    next_iteration: int
    def __init__(self, shard_id: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., num_shards: _Optional[int] = ..., version: _Optional[int] = ..., dtype: _Optional[_Union[DType, str]] = ..., next_iteration: _Optional[int] = ...) -> None: ...

class PushChunk(_message.Message):
    __slots__ = ("worker", "shard_id", "iteration", "computed_on", "mode", "total_elements", "dtype", "key", "round", "offset", "data")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_ON_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    worker: int
    shard_id: int
    iteration: int
    computed_on: int
    mode: PushMode
    total_elements: int
    dtype: DType
    key: str
    round: int
    offset: int
    data: bytes
    def __init__(self, worker: _Optional[int] = ..., shard_id: _Optional[int] = ..., iteration: _Optional[int] = ..., computed_on: _Optional[int] = ..., mode: _Optional[_Union[PushMode, str]] = ..., total_elements: _Optional[int] = ..., dtype: _Optional[_Union[DType, str]] = ..., key: _Optional[str] = ..., round: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class PushReply(_message.Message):
    __slots__ = ("version", "applied", "duplicate")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    version: int
    applied: bool
    duplicate: bool
    def __init__(self, version: _Optional[int] = ..., applied: _Optional[bool] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("worker", "shard_id", "iteration", "chunk_bytes")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    worker: int
    shard_id: int
    iteration: int
    chunk_bytes: int
    def __init__(self, worker: _Optional[int] = ..., shard_id: _Optional[int] = ..., iteration: _Optional[int] = ..., chunk_bytes: _Optional[int] = ...) -> None: ...

class PullChunk(_message.Message):
    __slots__ = ("version", "total_elements", "dtype", "offset", "data")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    version: int
    total_elements: int
    dtype: DType
    offset: int
    data: bytes
    def __init__(self, version: _Optional[int] = ..., total_elements: _Optional[int] = ..., dtype: _Optional[_Union[DType, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ("worker",)
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: int
    def __init__(self, worker: _Optional[int] = ...) -> None: ...

class LeaveReply(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsReply(_message.Message):
    __slots__ = ("version", "pushes_received", "pushes_applied", "staleness", "rejected", "bytes_received", "bytes_sent", "non_finite", "duplicates", "checkpoints", "checkpoint_seconds", "journal_seconds")
    class StalenessEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    class RejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PUSHES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    PUSHES_APPLIED_FIELD_NUMBER: _ClassVar[int]
    STALENESS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    NON_FINITE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    version: int
    pushes_received: int
    pushes_applied: int
    staleness: _containers.ScalarMap[int, int]
    rejected: _containers.ScalarMap[str, int]
    bytes_received: int
    bytes_sent: int
    non_finite: int
    duplicates: int
    checkpoints: int
    checkpoint_seconds: float
    journal_seconds: float
    def __init__(self, version: _Optional[int] = ..., pushes_received: _Optional[int] = ..., pushes_applied: _Optional[int] = ..., staleness: _Optional[_Mapping[int, int]] = ..., rejected: _Optional[_Mapping[str, int]] = ..., bytes_received: _Optional[int] = ..., bytes_sent: _Optional[int] = ..., non_finite: _Optional[int] = ..., duplicates: _Optional[int] = ..., checkpoints: _Optional[int] = ..., checkpoint_seconds: _Optional[float] = ..., journal_seconds: _Optional[float] = ...) -> None: ...

class LossReport(_message.Message):
    __slots__ = ("worker", "loss", "round")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    worker: int
    loss: float
    round: int
    def __init__(self, worker: _Optional[int] = ..., loss: _Optional[float] = ..., round: _Optional[int] = ...) -> None: ...

class Leaders(_message.Message):
    __slots__ = ("local_leader", "global_leader")
    LOCAL_LEADER_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_LEADER_FIELD_NUMBER: _ClassVar[int]
    local_leader: int
    global_leader: int
    def __init__(self, local_leader: _Optional[int] = ..., global_leader: _Optional[int] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("key", "min_round", "chunk_bytes", "wait")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MIN_ROUND_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    key: str
    min_round: int
    chunk_bytes: int
    wait: bool
    def __init__(self, key: _Optional[str] = ..., min_round: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., wait: _Optional[bool] = ...) -> None: ...

class BroadcastRequest(_message.Message):
    __slots__ = ("worker", "iteration", "chunk_bytes", "key")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    worker: int
    iteration: int
    chunk_bytes: int
    key: str
    def __init__(self, worker: _Optional[int] = ..., iteration: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., key: _Optional[str] = ...) -> None: ...
