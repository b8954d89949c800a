from __future__ import annotations

import importlib.util
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pslab.profile import Machine, Profile

ROOT = Path(__file__).resolve().parent.parent


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a process a test will Ctrl-C or hang up on: SIGINT and SIGHUP as a
    terminal's shell gives them. A suite started in the background (``cmd &``, ``nohup``)
    ignores both, children inherit that, and the launcher rightly keeps an ignored signal
    ignored, so the test would measure how the suite was started, not pslab."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def zero_cost_profile(**figures: object) -> Profile:
    """A machine whose every cost is zero unless named: each test sees one mechanism."""
    zero = dict.fromkeys(
        (
            "send_cpu_s_per_byte",
            "recv_cpu_s_per_byte",
            "rpc_overhead_s",
            "rpc_cpu_s",
            "update_s_per_byte",
        ),
        0.0,
    )
    machine = Machine(hostname="test", cores=2, python="3")
    return Profile(machine=machine, measured_at=0.0, **{**zero, **figures})


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` by path: benchmarks/ is not a package."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's calibrations go to a cache of its own, shared by its tests and the
    processes they start: a test that calibrates must not add to the developer's profile
    history (``pslab.profile_history``), whose median their next compare would take."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


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
