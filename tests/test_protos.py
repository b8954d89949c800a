"""The committed stubs are exactly what the proto generates: contract and code cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpc_ps import codegen, tensors
from grpc_ps.pb import ps_pb2 as pb

pytest.importorskip("grpc_tools")


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    for fresh in codegen.generate(tmp_path):
        committed = codegen.OUT / fresh.name
        assert committed.exists(), f"{committed} missing: run python -m grpc_ps.codegen"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{committed} differs from the proto: run python -m grpc_ps.codegen"
        )


def test_stubs_import_relatively() -> None:
    from grpc_ps.pb import ps_pb2, ps_pb2_grpc

    assert ps_pb2.DESCRIPTOR.name == "pslab/v1/ps.proto"
    assert ps_pb2.DESCRIPTOR.package == "pslab.v1"
    assert set(ps_pb2.DESCRIPTOR.services_by_name) == {
        "ParameterServer",
        "LeaderRegistry",
        "Communicator",
    }
    assert ps_pb2_grpc.pslab_dot_v1_dot_ps__pb2 is ps_pb2  # the rewritten relative import


def _pushes() -> list[pb.PushChunk]:
    return [
        pb.PushChunk(),
        pb.PushChunk(offset=3, data=b"\x01\x02\x03\x04"),
        pb.PushChunk(
            worker=2,
            shard_id=1,
            iteration=7,
            computed_on=5,
            mode=pb.PUSH_MODE_DELTA,
            total_elements=1 << 40,
            dtype=pb.DTYPE_FLOAT32,
            key="local/0",
            round=9,
            offset=1 << 33,
            data=bytes(range(256)) * 600,  # a multi-byte length varint
        ),
    ]


@pytest.mark.parametrize("message", _pushes())
def test_chunk_codec_speaks_plain_protobuf(message: pb.PushChunk) -> None:
    meta = pb.PushChunk()
    meta.CopyFrom(message)
    meta.ClearField("data")
    assert pb.PushChunk.FromString(tensors.encode(meta, memoryview(message.data))) == message
    chunk = tensors.decode_push(message.SerializeToString())
    assert not chunk.error
    assert bytes(chunk.data) == message.data
    assert chunk.meta == meta
    assert (chunk.worker, chunk.offset, chunk.key) == (message.worker, message.offset, message.key)


def test_chunk_codec_reads_fields_in_any_order() -> None:
    data_first = pb.PullChunk(data=b"abcd").SerializeToString()
    header = pb.PullChunk(version=4, offset=8).SerializeToString()
    chunk = tensors.decode_pull(data_first + header)
    assert (chunk.version, chunk.offset, bytes(chunk.data)) == (4, 8, b"abcd")


@pytest.mark.parametrize("raw", [b"\x0a", b"\x5a\x10abc", b"\x0f", b"\x08\xff"])
def test_chunk_codec_marks_malformed_messages(raw: bytes) -> None:
    assert tensors.decode_push(raw).error
    with pytest.raises(tensors.ChunkError):
        list(tensors.checked([tensors.decode_push(raw)]))
