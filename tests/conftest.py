from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


def load_experiment(name: str) -> ModuleType:
    """An ``experiments/NAME.py`` script as a module, by path: experiments/ is no package."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_experiment", ROOT / "experiments" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def _netns_skip_reason() -> str | None:
    from grpc_ps import netns

    try:
        netns.require_netns()
    except netns.NetnsUnavailable as err:
        return str(err)
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return None if probe.returncode == 0 else f"ip netns unavailable: {probe.stderr.strip()}"


_NETNS_SKIP = _netns_skip_reason()
needs_netns = pytest.mark.skipif(_NETNS_SKIP is not None, reason=str(_NETNS_SKIP))
