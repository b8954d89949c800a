from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


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
