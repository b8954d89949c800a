"""Model files: a model's per-tensor layout (and FLOPs) in YAML, named by a scenario.

``pslab model from-torch pkg.module:factory -o model.yaml`` writes one from a
torch module (names, shapes, sizes, and forward+backward FLOPs where
``torch.utils.flop_counter`` can measure them with an input shape);
``workload.model: model.yaml`` reads it, relative to the scenario file, and
inlines it as a spec, so the scenario written beside a result carries the
model itself, not a path that may have moved.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import yaml

from pslab.schema_errors import ScenarioError

SPEC_KEYS = ("params", "dtype", "layers", "flops_per_sample", "activations_per_sample")
INFO_KEYS = ("source", "tensors", "input_shape", "flops_note")


def inline_model_file(data: dict[str, Any], base_dir: Path, source: str) -> None:
    """Replace ``workload.model: file.yaml`` in raw scenario data by the file's spec."""
    workload = data.get("workload")
    if not isinstance(workload, dict):
        return
    name = workload.get("model")
    if not isinstance(name, str) or not name.endswith((".yaml", ".yml")):
        return
    path = base_dir / name
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ScenarioError(
            f"{source}: invalid scenario\n  workload.model: cannot read model file {path} "
            f"({e.strerror}); write one with `pslab model from-torch pkg.module:factory`"
        ) from None
    except yaml.YAMLError as e:
        raise ScenarioError(f"{source}: workload.model: {path} is not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: workload.model: {path} must hold a mapping")
    unknown = sorted(set(raw) - set(SPEC_KEYS) - set(INFO_KEYS))
    if unknown:
        raise ScenarioError(
            f"{source}: workload.model: {path}: unknown keys {', '.join(unknown)}; "
            f"known: {', '.join(SPEC_KEYS + INFO_KEYS)}"
        )
    workload["model"] = {k: raw[k] for k in SPEC_KEYS if raw.get(k) is not None}


def _factory(target: str) -> Any:
    """``pkg.module:factory`` → the callable; errors say which part is wrong."""
    if ":" not in target:
        raise ScenarioError(f"expected pkg.module:factory, got {target!r}")
    module_name, attr = target.split(":", 1)
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ScenarioError(f"cannot import {module_name!r}: {e}") from None
    finally:
        sys.path.pop(0)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ScenarioError(f"{module_name} has no callable {attr!r}")
    return fn


DTYPES = {"torch.float32": "float32", "torch.float16": "float16", "torch.bfloat16": "bfloat16"}


def from_torch(target: str, input_shape: list[int] | None = None) -> dict[str, Any]:
    """The model file's content for the module ``target`` builds.

    With ``input_shape`` (one sample, e.g. ``[3, 224, 224]``) a forward and a
    backward pass on a batch of one are counted by ``FlopCounterMode``: that is
    the file's ``flops_per_sample``. Without it, or where the counter fails
    (an input the module does not take), the file has no FLOPs and says why."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module = _factory(target)()
    if not isinstance(module, torch.nn.Module):
        raise ScenarioError(f"{target} returned {type(module).__name__}, not a torch.nn.Module")
    params = [(n, p) for n, p in module.named_parameters()]
    if not params:
        raise ScenarioError(f"{target}: the module has no parameters")
    tensors = [{"name": n, "shape": list(p.shape), "numel": p.numel()} for n, p in params]
    dtype = DTYPES.get(str(params[0][1].dtype), "float32")
    out: dict[str, Any] = {
        "source": target,
        "params": sum(t["numel"] for t in tensors),
        "dtype": dtype,
        "layers": [t["numel"] for t in tensors],
        "tensors": tensors,
    }
    if input_shape is None:
        out["flops_note"] = "no --input-shape: FLOPs not measured (compute_time: auto needs them)"
        return out
    out["input_shape"] = list(input_shape)
    x = torch.zeros(1, *input_shape, dtype=params[0][1].dtype)
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            y = module(x)
            (y.float().sum() if isinstance(y, torch.Tensor) else sum(v.sum() for v in y)).backward()
    except Exception as e:  # the user's module: any failure means "not measurable here"
        out["flops_note"] = f"FLOP counter failed on input {input_shape}: {e}"
        return out
    out["flops_per_sample"] = float(counter.get_total_flops())
    return out
