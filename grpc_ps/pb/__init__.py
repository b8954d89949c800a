"""Generated protobuf and gRPC stubs for ``protos/pslab/v1/ps.proto``.

Do not edit: regenerate with ``python -m grpc_ps.codegen`` (``tests/test_protos.py`` checks
that these files match the proto byte for byte).
"""

from . import ps_pb2, ps_pb2_grpc

__all__ = ["ps_pb2", "ps_pb2_grpc"]
