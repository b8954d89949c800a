"""Chaos: however ``pslab launch`` ends, none of its role processes outlives it (issue 16).

Each case starts the CLI on a small loopback run (a server and two workers, long enough to
be mid-run), waits until every role process exists, sends the launcher one signal and
checks that no role of that launcher is left 10 s later. SIGTERM, SIGINT and SIGHUP go
through the launcher's own cleanup (exit 128 + signal); SIGKILL leaves it to the roles
(``grpc_ps.lifeline``: the kernel's parent-death signal and a watchdog). Every signal is
tried again with a server that ignores SIGTERM (``PSLAB_TEST_IGNORE_SIGTERM``), which only
the launcher's SIGKILL fallback or the parent-death SIGKILL can end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import as_from_a_terminal

pytestmark = pytest.mark.slow

ROLES = 3  # ps-0, worker-0, worker-1
BUDGET_S = 10.0
SCENARIO = """\
name: chaos
topology: {preset: single_node, nodes: 1, gpus_per_node: 0, workers_per_node: 2, servers: 1}
workload: {model: {params: 100k}, batch_size: 8, compute_time: 20ms, io_time: 5ms}
algorithm: {name: sync_ps, lr: 0.1}
run: {iterations: 100000, seed: 0, warmup: 1}
emulation: {compute: emulated, model: synthetic}
"""
EXIT = {signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGINT: 130, signal.SIGKILL: -9}


def _roles_of(launcher: int) -> list[int]:
    """Live role processes that ``launcher`` started: found by the pid in their environment,
    so a role whose launcher is gone (re-parented) is still found. Zombies do not count."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        mine = f"PSLAB_LAUNCHER_PID={launcher}".encode() in environ
        if mine and b"grpc_ps.roles" in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_for_roles(launcher: subprocess.Popen, timeout: float = 90.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert launcher.poll() is None, "the launcher ended before its roles started"
        pids = _roles_of(launcher.pid)
        if len(pids) == ROLES:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"{ROLES} roles did not start within {timeout} s")


def _training(pids: list[int], timeout: float = 90.0) -> None:
    """Wait until every role holds a socket: the workers have connected to the server, so
    the run is past its imports and pushing gradients."""

    def has_socket(pid: int) -> bool:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
            return any(os.readlink(fd).startswith("socket:") for fd in fds)
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while not all(has_socket(p) for p in pids):
        assert time.monotonic() < deadline, "the workers never connected to the server"
        time.sleep(0.05)
    time.sleep(0.5)  # a few iterations in


class _Run:
    """One ``pslab launch`` of the chaos scenario in its own session (so a signal reaches
    the launcher alone, as timeout's or scancel's does)."""

    def __init__(self, root: Path, ignoring: bool) -> None:
        root.mkdir()
        self.root, self.ignoring, self.out = root, ignoring, root / "out"
        (root / "chaos.yaml").write_text(SCENARIO)
        env = {k: v for k, v in os.environ.items() if k != "PSLAB_LAUNCHER_PID"}
        env["PSLAB_TEST_IGNORE_SIGTERM"] = "ps-0" if ignoring else ""
        cmd = [sys.executable, "-m", "pslab_cli.main", "launch", str(root / "chaos.yaml")]
        with (root / "launcher.log").open("w") as log:
            self.launcher = subprocess.Popen(
                [*cmd, "-o", str(self.out)],
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
                preexec_fn=as_from_a_terminal,
            )
        self.gone_s: float | None = None

    def end(self) -> None:
        """Never leave a process behind, whatever the test found."""
        for pid in _roles_of(self.launcher.pid):
            os.kill(pid, signal.SIGKILL)
        if self.launcher.poll() is None:
            self.launcher.kill()
        self.launcher.wait()


@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL],
    ids=lambda s: signal.Signals(s).name,
)
def test_no_role_outlives_its_launcher(tmp_path: Path, sig: int) -> None:
    """Two launchers at once, one whose server ignores SIGTERM; both get ``sig``."""
    name = signal.Signals(sig).name
    runs = [_Run(tmp_path / "plain", False), _Run(tmp_path / "ignoring", True)]
    try:
        pids = [_wait_for_roles(r.launcher) for r in runs]
        if sig == signal.SIGTERM:  # timeout's signal: mid-training, so there is a result
            _training(pids[0])
        t0 = time.monotonic()
        for run in runs:
            run.launcher.send_signal(sig)
        while time.monotonic() - t0 < BUDGET_S and any(r.gone_s is None for r in runs):
            for run in runs:
                if run.gone_s is None and not _roles_of(run.launcher.pid):
                    run.gone_s = time.monotonic() - t0
            time.sleep(0.05)
        codes = [r.launcher.wait(timeout=BUDGET_S) for r in runs]
    finally:
        for run in runs:
            run.end()
    for run, code in zip(runs, codes, strict=True):
        what = f"{name}, server ignoring SIGTERM: {run.ignoring}"
        print(f"{what}: roles gone after {run.gone_s} s")
        assert run.gone_s is not None, f"{what}: roles still running after {BUDGET_S} s"
        assert code == EXIT[sig], (run.root / "launcher.log").read_text()
        if (run.out / "metrics.json").exists():  # what was measured before the signal
            assert '"incomplete": true' in (run.out / "metrics.json").read_text()
    if sig == signal.SIGTERM:  # the interrupted run still says what it measured
        assert '"incomplete": true' in (runs[0].out / "metrics.json").read_text()
