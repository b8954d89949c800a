"""``pslab launch``: every process of a scenario on this machine, watched, collected, cleaned up.

Servers (and the leader registry, and Layered SGD's communicators) start
first and announce their ports; then the workers start. The launcher reads
the workers' progress lines, notices a role that dies, and always ends every
process it started. A dead worker ends a synchronous run (naming the
worker); an asynchronous one carries on without it, as Downpour would.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grpc_ps import fit, netns_launch, roles
from grpc_ps.auth import Security, new_token
from grpc_ps.client import PSClient
from grpc_ps.endpoints import Endpoints
from grpc_ps.interrupts import InterruptGuard
from grpc_ps.lifeline import (
    LAUNCHER_ENV,
    RUN_PREFIX,
    Interrupted,
    claim_run_dir,
    cleanup_stale_runs,
)
from grpc_ps.load import LoadSampler, steady_window
from grpc_ps.measured import run_metrics
from grpc_ps.speed_probe import SpeedTrack
from grpc_ps.start_gate import GATE_ENV, READY, StartGate
from pslab.algorithms import build_plan
from pslab.algorithms.base import REGISTRY, Plan, server_name
from pslab.results import write_results
from pslab.scenario import Scenario, ScenarioError, dump_scenario
from pslab.topology import lay_out
from pslab.trace import Trace, write_json_atomic

STARTUP_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0  # SIGTERM → SIGKILL at the end of a run: servers write their traces
# ... and when the run was interrupted: short, so that a role ignoring SIGTERM is gone well
# within the 10 s the chaos test (and a batch system's kill timeout) allows
INTERRUPTED_GRACE_S = 3.0


class LaunchError(Exception):
    """A run that failed; the message names the role and what it said."""


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    done_reported: bool = False


@dataclass
class LaunchResult:
    metrics: dict[str, Any]
    trace: Trace
    params: np.ndarray | None = None  # the workers' average final parameters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_emulable(scenario: Scenario, force: bool = False) -> None:
    """What the emulator cannot run gets a clear error before any process starts; so does a
    run too big for this machine (:mod:`grpc_ps.fit`) unless ``force``."""
    if not force:
        fit.check_fits(scenario)
    fit.check_device(scenario)
    emu = scenario.emulation
    if emu.network == "netns":
        netns_launch.check(scenario)  # root, iproute2, a supported preset; else how to loopback
    if emu.model != "synthetic" and scenario.workload.model != emu.model:
        raise ScenarioError(
            f"emulation.model is {emu.model!r}: set workload.model to {emu.model!r} too, "
            "so the simulator prices the same parameter count"
        )
    if emu.compute == "real" and emu.model == "synthetic":
        raise ScenarioError("emulation.compute 'real' needs emulation.model digits_mlp/digits_cnn")


class Launcher:
    def __init__(
        self,
        scenario: Scenario,
        run_dir: Path,
        on_progress: Callable[[int, int], None] | None = None,
        restart_servers: bool = False,
        force: bool = False,
    ) -> None:
        """``restart_servers``: parameter servers journal their state in the run directory,
        and one that dies is started again on its port, resuming where it was (the workers
        retry through the gap); otherwise a dead server ends the run. ``force``: start a run
        :mod:`grpc_ps.fit` says this machine cannot hold."""
        scenario, cluster = lay_out(scenario)  # a graph's workers are its hosts'
        check_emulable(scenario, force)
        self.scenario = scenario
        self.restart_servers = restart_servers
        self.restarted: list[str] = []
        # A fresh token per run, handed to the processes in their environment (never argv).
        self.security = Security(token=new_token())
        self.plan: Plan = build_plan(scenario)
        self.run_dir = run_dir
        self.on_progress = on_progress
        self.procs: list[_Proc] = []
        self.lost: list[str] = []
        # emulation.network: netns: one namespace per host, shaped links (grpc_ps.netns_launch)
        self.netns = (
            netns_launch.NetnsNetwork(self.plan, cluster)
            if scenario.emulation.network == "netns"
            else None
        )
        self.link_reads: tuple[dict[str, Any], dict[str, Any]] | None = None  # netns counters
        self.signals = InterruptGuard()  # SIGINT/SIGTERM/SIGHUP while running
        self.sampler: LoadSampler | None = None  # what other jobs took (grpc_ps.load)
        self.speed = SpeedTrack()  # the cores' speed through the run (grpc_ps.speed_probe)
        self.gate = StartGate(w.name for w in self.plan.workers)  # their first iteration
        self.t0_ns = 0  # the run's clock: spans are seconds since

    # ------------------------------------------------------------- processes

    def _start(self, name: str, *extra: str) -> _Proc:
        log = self.run_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.security.environ())
        env[LAUNCHER_ENV] = str(os.getpid())  # the role dies with us (grpc_ps.lifeline)
        if self.restart_servers and name.startswith("ps-"):
            extra = ("--checkpoint-dir", str(self.run_dir / "checkpoints" / name), *extra)
        env.setdefault("OMP_NUM_THREADS", "1")  # one core per process, as the model assumes
        gated = name.startswith("worker-")
        if gated:
            env[GATE_ENV] = "1"
        spawn: Callable[..., subprocess.Popen] = subprocess.Popen
        if self.netns is not None:  # inside the role's host's namespace
            env.update(self.netns.env(name))
            spawn = functools.partial(self.netns.popen, name)
        # A signal between fork and the append below would leave a role no one stops.
        deferred, self.signals.deferring = self.signals.deferring, True
        popen = spawn(
            [
                sys.executable,
                "-m",
                "grpc_ps.lifeline",  # arms the role's death with ours, then runs it
                "grpc_ps.roles",
                "--run-dir",
                str(self.run_dir),
                "--role",
                name,
                *extra,
            ],
            stdin=subprocess.PIPE if gated else None,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            env=env,
            start_new_session=True,
        )
        proc = _Proc(name, popen, log)
        self.procs.append(proc)
        if gated:
            assert popen.stdin is not None
            self.gate.add(name, popen.stdin)
        self.signals.deferring = deferred
        if not deferred:
            self.signals.raise_pending()
        threading.Thread(target=self._read_stdout, args=(proc,), daemon=True).start()
        return proc

    def _read_stdout(self, proc: _Proc) -> None:
        assert proc.popen.stdout is not None
        for line in proc.popen.stdout:
            parts = line.split()
            if parts == [READY]:
                self.gate.ready(proc.name)
            elif len(parts) == 3 and parts[0] == "progress":
                rank, iteration = int(parts[1]), int(parts[2])
                if self.on_progress is not None:
                    self.on_progress(rank, iteration)

    def _tail(self, proc: _Proc, lines: int = 15) -> str:
        text = proc.log.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def _wait_ports(self, names: list[str]) -> dict[str, int]:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        ports: dict[str, int] = {}
        while len(ports) < len(names):
            for name in names:
                path = self.run_dir / "ports" / f"{name}.json"
                if name not in ports and path.exists():
                    ports[name] = json.loads(path.read_text())["port"]
            self._check_alive(fatal_only=False)
            if time.monotonic() > deadline:
                missing = sorted(set(names) - set(ports))
                raise LaunchError(f"{', '.join(missing)} did not start in {STARTUP_TIMEOUT_S} s")
            time.sleep(0.02)
        return ports

    def _check_alive(self, fatal_only: bool) -> None:
        """Raise for a role that died; an async run outlives a lost worker."""
        for proc in self.procs:
            code = proc.popen.poll()
            if code is None or code == 0 or proc.done_reported:
                continue
            proc.done_reported = True
            if self._restart(proc):
                continue
            is_worker = proc.name.startswith("worker-")
            if fatal_only and is_worker and self.plan.asynchronous:
                self.lost.append(proc.name)
                self.gate.gone(proc.name)  # the others start without it
                if self.plan.server is not None:  # a leader registry waits on no one
                    self._leave(int(proc.name.split("-")[1]))
                continue
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            raise LaunchError(f"{proc.name} vanished ({how}); its log ends:\n{self._tail(proc)}")

    def _restart(self, proc: _Proc) -> bool:
        """Start a dead parameter server again on its port, resuming from its journal."""
        port_file = self.run_dir / "ports" / f"{proc.name}.json"
        if not (self.restart_servers and proc.name.startswith("ps-") and port_file.exists()):
            return False
        self.restarted.append(proc.name)
        self._start(proc.name, "--port", str(json.loads(port_file.read_text())["port"]))
        return True

    def _leave(self, rank: int) -> None:
        """Tell the servers a worker is gone, so it holds no one back."""
        ep = Endpoints.load(self.run_dir / "endpoints.json")
        if self.netns is not None:  # the run's addresses exist only inside its namespaces
            env = self.security.environ()  # the run's token, for a process of its own
            self.netns.leave(ep, rank, len(self.plan.workers), self.plan.model.params, env)
            return
        client = PSClient(
            ep.servers, rank, len(self.plan.workers), self.plan.model.params, security=self.security
        )
        try:
            client.leave()
        finally:
            client.close()

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every role's process group, SIGKILL what is left after ``grace_s``."""
        for proc in self.procs:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # ended since the poll
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()

    # ------------------------------------------------------------------ run

    def run(self) -> LaunchResult:
        run_dir = self.run_dir
        (run_dir / "scenario.yaml").write_text(dump_scenario(self.scenario))
        self.t0_ns = time.perf_counter_ns()
        write_json_atomic(run_dir / "run.json", {"t0_ns": self.t0_ns})
        plan = self.plan
        self.signals.catch()
        try:
            if self.netns is not None:
                self.netns.open()
            services = [server_name(k) for k in range(plan.server.shards if plan.server else 0)]
            if plan.registry is not None:
                services.append(REGISTRY)
            for name in services:
                self._start(name)
            for comm in plan.comms:
                self._start(comm.name)
            ports = self._wait_ports(services + [c.name for c in plan.comms])
            endpoints = (
                Endpoints(
                    servers=[f"127.0.0.1:{ports[n]}" for n in services if n.startswith("ps-")],
                    registry=f"127.0.0.1:{ports[REGISTRY]}" if REGISTRY in ports else None,
                    comms=[f"127.0.0.1:{ports[c.name]}" for c in plan.comms],
                    dist_workers=f"tcp://127.0.0.1:{free_port()}",
                    dist_comms=f"tcp://127.0.0.1:{free_port()}",
                )
                if self.netns is None
                else self.netns.endpoints(ports)
            )
            endpoints.save(run_dir / "endpoints.json")
            counters = self.netns.counters() if self.netns is not None else None
            wall0 = time.perf_counter()
            self.sampler = LoadSampler(lambda: [p.popen.pid for p in self.procs])
            with self.sampler, self.speed:  # other jobs' load and the cores' speed
                workers = [self._start(w.name) for w in plan.workers]
                while any(w.popen.poll() is None for w in workers):
                    self._check_alive(fatal_only=True)
                    time.sleep(0.05)
            self._check_alive(fatal_only=True)
            wall = time.perf_counter() - wall0
            for comm in (p for p in self.procs if p.name.startswith("comm-")):
                comm.popen.wait(timeout=self.scenario.emulation.rpc_timeout)
                self._check_alive(fatal_only=True)
            if self.netns is not None and counters is not None:  # the kernel's per-link bytes
                self.link_reads = (counters, self.netns.counters())
        finally:
            self.signals.deferring = True  # from here on a signal waits for the roles to stop
            try:
                self.stop_all(INTERRUPTED_GRACE_S if self.signals.interrupted else STOP_GRACE_S)
            finally:
                try:
                    if self.netns is not None:
                        self.netns.close()
                finally:
                    self.signals.release()
        self.signals.raise_pending()  # a signal during the final cleanup: end as asked
        return self._collect(wall)

    def partial_result(self) -> LaunchResult | None:
        """After an interrupted run: what its roles wrote when stopped (servers their
        applies, workers their spans so far), marked ``incomplete``; None if nothing."""
        trace = roles.read_traces(self.run_dir)
        if not trace.spans:
            return None
        wall = max(s.end for s in trace.spans) - min(s.start for s in trace.spans)
        try:
            result = self._collect(wall)
        except Exception:  # too little for the metrics: keep the spans and say so
            trace.meta["scenario"] = self.scenario.name
            metrics = {"source": "emu", "events": len(trace.spans), "wall_time_s": wall}
            result = LaunchResult({**metrics, "workers": len(self.plan.workers)}, trace)
        signum = self.signals.interrupted
        name = signal.Signals(signum).name if signum else "an exception"
        result.metrics.update(incomplete=True, interrupted_by=name)
        result.trace.meta.update(incomplete=True, interrupted_by=name)
        return result

    def _collect(self, wall: float) -> LaunchResult:
        trace = roles.read_traces(self.run_dir)
        trace.meta["scenario"] = self.scenario.name
        if self.lost:
            trace.meta["lost_workers"] = self.lost
        during = self._steady(trace)
        if self.sampler is None or during is None:
            load, speed = {}, None
        else:
            load = self.sampler.summary(during, {p.popen.pid: p.name for p in self.procs})
            speed = self.speed.speed(during)
        extra: dict[str, Any] = {
            "events": len(trace.spans),
            "wall_time_s": wall,
            "source": "emu",
            "lost_workers": self.lost,
            "machine_load": load,
            # every role's CPU while all workers were in their counted iterations
            "cpu_time_s": load["own_cores"] * load["seconds"] if load else None,
            "cpu_time_by_process_s": load.pop("own_s_by_name", {}),
            "machine_speed": speed.model_dump() if speed else None,
        }
        links = netns_launch.links(self.link_reads, trace) if self.link_reads else None
        metrics, params = run_metrics(self.scenario, self.run_dir, trace, extra, links)
        return LaunchResult(metrics, trace, params)

    def _steady(self, trace: Trace) -> tuple[float, float] | None:
        """When every worker was in its counted iterations, in ``time.monotonic()``
        (``perf_counter`` and ``monotonic`` are one clock on Linux).

        Not from the first worker's first op: on a busy machine the last worker may still
        be importing torch seconds later, and that CPU is neither the steady state the
        metrics describe nor what other jobs took, nor the speed the run's cores had."""
        run = self.scenario.run
        during = steady_window(trace.spans, run.warmup, run.iterations)
        if during is None:
            return None
        t0 = self.t0_ns / 1e9
        return t0 + during[0], t0 + during[1]


def launch(
    scenario: Scenario,
    out_dir: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    keep_run_dir: bool = False,
    force: bool = False,
) -> LaunchResult:
    """Run a scenario on this machine; write results to ``out_dir`` when given.

    Interrupted (SIGINT, SIGTERM, SIGHUP: :class:`KeyboardInterrupt` or
    :class:`~grpc_ps.lifeline.Interrupted` propagates), the roles are stopped and what they
    measured is still written to ``out_dir``, with ``incomplete: true`` in metrics.json.
    """
    cleanup_stale_runs()  # run directories a SIGKILLed launcher left behind
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX))
    claim_run_dir(run_dir)
    launcher: Launcher | None = None
    try:
        launcher = Launcher(scenario, run_dir, on_progress, force=force)
        result = launcher.run()
    except (KeyboardInterrupt, Interrupted):
        partial = launcher.partial_result() if launcher is not None else None
        if out_dir is not None and partial is not None:
            write_results(out_dir, scenario, partial.metrics, partial.trace)
        raise
    finally:
        if not keep_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    if out_dir is not None:
        write_results(out_dir, scenario, result.metrics, result.trace)
    return result
