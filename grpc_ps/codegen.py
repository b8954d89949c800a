"""Regenerate the committed gRPC stubs in ``grpc_ps/pb`` from ``protos/pslab/v1/ps.proto``.

The stubs are committed so that running pslab needs no protoc; ``tests/test_protos.py``
regenerates them into a temporary folder and fails on any difference, so the contract and the
code cannot drift apart. Run ``python -m grpc_ps.codegen`` after editing the proto.

protoc is run with ``protos/`` as the include root, so the descriptor keeps its unique name
``pslab/v1/ps.proto``; the generated ``from pslab.v1 import ps_pb2`` is then rewritten to a
package-relative import, because the stubs live in ``grpc_ps.pb`` (``pslab`` is another package).
"""

from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO = Path("pslab/v1/ps.proto")
OUT = ROOT / "grpc_ps" / "pb"
GENERATED = ("ps_pb2.py", "ps_pb2.pyi", "ps_pb2_grpc.py")
_ABSOLUTE_IMPORT = "from pslab.v1 import ps_pb2 as "
_RELATIVE_IMPORT = "from . import ps_pb2 as "


def generate(out_dir: Path) -> list[Path]:
    """Write the stubs into ``out_dir``; return their paths."""
    from grpc_tools import protoc  # a dev dependency: only needed to regenerate

    well_known = resources.files("grpc_tools") / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(PROTO_ROOT / PROTO),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO}")
        written = []
        for name in GENERATED:
            src = Path(tmp) / PROTO.parent / name
            text = src.read_text().replace(_ABSOLUTE_IMPORT, _RELATIVE_IMPORT)
            dst = out_dir / name
            dst.write_text(text)
            written.append(dst)
    return written


def main() -> None:
    """Regenerate into ``grpc_ps/pb`` (or the folder given as the only argument)."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    for path in generate(out):
        print(path)


if __name__ == "__main__":
    main()
