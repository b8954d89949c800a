"""``pslab model from-torch pkg.module:factory -o model.yaml``: a model file from torch.

What a scenario's ``workload.model: model.yaml`` reads (pslab/modelfile.py):
the per-tensor layout, and forward+backward FLOPs where ``--input-shape`` lets
torch's FLOP counter measure them. torch is imported only by this command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from pslab.modelfile import from_torch
from pslab.results import write_text_atomic
from pslab.schema_errors import ScenarioError


def _shape(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        dims = []
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected one sample's shape such as 3,224,224: {text!r}")
    return dims


def cmd_from_torch(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise ScenarioError(f"-o {out}: a directory; name the model file to write (model.yaml)")
    content = from_torch(args.target, args.input_shape)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ScenarioError(f"-o {out}: cannot make {out.parent} ({e.strerror})") from None
    header = f"# pslab model file, written by: pslab model from-torch {args.target}\n"
    write_text_atomic(out, header + yaml.safe_dump(content, sort_keys=False))
    flops = content.get("flops_per_sample")
    what = f"{flops:.4g} FLOPs a sample" if flops else content.get("flops_note", "")
    print(
        f"wrote {out}: {content['params']:,} parameters in {len(content['layers'])} tensors; {what}"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="write a model file a scenario can name")
    models = p.add_subparsers(dest="model_command", required=True)
    q = models.add_parser("from-torch", help="per-tensor layout (and FLOPs) of a torch module")
    q.add_argument("target", help="pkg.module:factory, a callable that returns an nn.Module")
    q.add_argument("-o", "--out", required=True, help="model YAML to write")
    q.add_argument(
        "--input-shape",
        type=_shape,
        help="one sample's input shape (e.g. 3,224,224) to count FLOPs with torch",
    )
    q.set_defaults(fn=cmd_from_torch)
