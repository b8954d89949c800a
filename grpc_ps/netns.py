"""Each emulated host in its own network namespace, its link shaped with ``tc``.

The emulator runs every role on one machine. On loopback, all of them share one unlimited path;
here, each simulated host gets a network namespace of its own and one link to a switch, shaped
to the scenario's bandwidth, so a parameter server's incast or a slow inter-node link costs on
the emulator what it costs in the simulator.

Layout (nothing is added to the root namespace, so a crash can never break the machine's own
networking, and names inside the namespaces cannot collide with anything outside)::

    <prefix>n0  eth0 10.77.0.1 ─┐ veth                     ┌─ <prefix>sw:  br0 (bridge)
    <prefix>n1  eth0 10.77.0.2 ─┼─────────────── v0, v1, v2┘  one port per host
    <prefix>ps0 eth0 10.77.0.3 ─┘

``<prefix>`` is ``pslab-<pid>-<seq>-``: the owner's pid lets :func:`cleanup_stale` tell the
leftovers of a killed run from a live one. Interface names (``eth0``, ``v<i>``, ``br0``) live
inside the namespaces, so they stay far below Linux's 15-character limit whatever the prefix.
The subnet 10.77.0.0/24 exists only inside these namespaces; two runs never share a namespace,
so they may both use it.

Shaping, both directions of every host link, each by a ``tbf`` qdisc at the host's bandwidth:
``host->sw`` is the egress of the host's ``eth0`` (inside the host's namespace) and ``sw->host``
the egress of the bridge port ``v<i>`` (inside the switch namespace), so incast onto one host
queues at that port as it would at a switch. See :mod:`grpc_ps.shaping` for the qdiscs.

The hosts and their links are the core model's (:func:`pslab.topology.host_links`), the cluster
the simulator prices. Latency is not emulated here: ``tc netem`` is unavailable on the machines
this runs on, and ``tbf`` only limits rate. The emulator adds each message's path latency itself
(a sleep before delivery, :mod:`grpc_ps.netns_launch`), from the same cluster's path latencies.

Needs root and the ``ip`` / ``tc`` tools (iproute2). Without them, :class:`NetnsUnavailable`
says so; ``emulation.network: loopback`` runs everything unshaped on 127.0.0.1 instead.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from grpc_ps.lifeline import pid_alive
from grpc_ps.shaping import port_commands
from pslab.topology import HostLink

SUBNET = "10.77.0"  # a /24 that exists only inside our namespaces
HOST_IF = "eth0"  # the host end of its link, inside the host's namespace
BRIDGE = "br0"
SWITCH = "sw"  # the switch namespace's suffix, so no host may take the name
_MAX_HOSTS = 253  # .1 … .253 of the /24
_NAME = re.compile(r"[A-Za-z0-9_.]+")
_CMD_TIMEOUT_S = 30.0
_TERM_GRACE_S = 2.0
_NO_IPV6 = ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")


class NetnsError(RuntimeError):
    """An ``ip`` or ``tc`` command failed; the message holds the command and its stderr."""


class NetnsUnavailable(NetnsError):
    """Namespaces cannot be made here (not root, or iproute2 missing)."""


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one iproute2 command; failures become :class:`NetnsError` with the command and stderr."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=_CMD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        if not check:
            return subprocess.CompletedProcess(list(argv), -1, "", str(err))
        raise NetnsError(f"{' '.join(argv)}: {err}") from err
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr.strip()}")
    return done


def require_netns() -> None:
    """Raise :class:`NetnsUnavailable` unless this process can create and shape namespaces."""
    hint = (
        "run as root (e.g. sudo) on Linux with iproute2, or set emulation.network: loopback "
        "to run unshaped on 127.0.0.1"
    )
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise NetnsUnavailable(f"netns emulation needs root to create network namespaces; {hint}")
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        raise NetnsUnavailable(f"netns emulation needs {' and '.join(missing)} (iproute2); {hint}")


def _pids_inside(ns: str) -> list[int]:
    out = _run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(p) for p in out.split()]


def _delete_namespace(ns: str) -> None:
    """End every process still inside ``ns``, then delete it.

    A namespace outlives ``ip netns delete`` while any process is in it, and with it its veths
    and qdiscs, so the processes go first: SIGTERM, a grace period, then SIGKILL. Deleting the
    namespace removes its interfaces, the bridge and the qdiscs with it (a veth pair dies with
    either end).
    """
    pids = _pids_inside(ns)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + _TERM_GRACE_S
        while pids and time.monotonic() < deadline:
            time.sleep(0.02)
            pids = [p for p in pids if pid_alive(p)]
        if not pids:
            break
    _run(["ip", "netns", "delete", ns], check=False)


def cleanup_stale(prefix: str = "pslab-") -> list[str]:
    """Delete namespaces ``<prefix><pid>-…`` whose owner ``pid`` is dead; return their names.

    A run killed by SIGKILL (or a crash of the interpreter) cannot clean up after itself; its
    namespaces, veths, bridge and qdiscs stay until this is called. Namespaces of live owners
    are left alone, so it is safe to call while other runs are going.
    """
    require_netns()
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    removed = []
    for line in _run(["ip", "netns", "list"]).stdout.splitlines():
        fields = line.split()
        if not fields:
            continue
        name = fields[0]
        match = pattern.match(name)
        if match and not pid_alive(int(match.group(1))):
            _delete_namespace(name)
            removed.append(name)
    return removed


# Every open topology, so a SIGTERM or the interpreter's exit can remove them all. A forked
# child inherits this set and the handlers; ``close`` does nothing outside the owner process.
_OPEN: set[NetnsTopology] = set()
_seq = itertools.count()
_sigterm_lock = threading.Lock()
_previous_sigterm: Any = None  # the handler ours replaced; None while ours is not installed


def _close_all() -> None:
    for topo in list(_OPEN):
        topo.close()


atexit.register(_close_all)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Remove every namespace, then let SIGTERM do what it did before ours was installed."""
    global _previous_sigterm
    _close_all()
    previous, _previous_sigterm = _previous_sigterm, None
    signal.signal(signum, previous)
    if callable(previous):
        previous(signum, frame)
    else:  # SIG_DFL: die of the signal, so the parent sees how we ended
        os.kill(os.getpid(), signum)


def _install_sigterm() -> None:
    """Catch SIGTERM once per process, where Python allows it (the main thread).

    KeyboardInterrupt and exceptions unwind through ``__exit__`` and a normal exit runs
    atexit, but SIGTERM kills Python without either unless handled. SIGKILL cannot be caught:
    :func:`cleanup_stale` is for that.
    """
    global _previous_sigterm
    with _sigterm_lock:
        if (
            _previous_sigterm is not None
            or threading.current_thread() is not threading.main_thread()
        ):
            return
        previous = signal.getsignal(signal.SIGTERM)
        if previous is signal.SIG_IGN or previous is _on_sigterm:
            return  # a program that ignores SIGTERM survives it; so do its namespaces
        _previous_sigterm = previous if previous is not None else signal.SIG_DFL
        signal.signal(signal.SIGTERM, _on_sigterm)


class NetnsTopology:
    """Namespaces, a bridge and shaped veths for ``hosts``; removed again on exit.

    Use as a context manager (or call :meth:`open` / :meth:`close`). Every host can reach
    every other at :meth:`address`; start its processes with :meth:`popen` or prefix a command
    with :meth:`exec_prefix`. :meth:`link_counters` reports per-link
    bytes under the simulator's link names (:func:`grpc_ps.netns_launch.link_stats`).
    """

    def __init__(self, hosts: Sequence[HostLink], fair: bool = True) -> None:
        """``fair``: every shaped port shares its rate evenly among the peer hosts
        (:func:`grpc_ps.shaping.port_commands`); otherwise one FIFO queue per port."""
        names = [h.name for h in hosts]
        if not hosts:
            raise ValueError("a topology needs at least one host")
        if len(hosts) > _MAX_HOSTS:
            raise ValueError(f"at most {_MAX_HOSTS} hosts fit the /24; got {len(hosts)}")
        if len(set(names)) != len(names):
            raise ValueError(f"host names must be unique: {names}")
        for name in names:
            if not _NAME.fullmatch(name) or name == SWITCH:
                raise ValueError(
                    f"bad host name {name!r}: letters, digits, '_', '.'; not {SWITCH!r}"
                )
        for h in hosts:
            if h.bandwidth is not None and h.bandwidth <= 0:
                raise ValueError(f"host {h.name}: bandwidth must be > 0 bytes/s")
        self.hosts: tuple[HostLink, ...] = tuple(hosts)
        self.fair = fair
        self.prefix = f"pslab-{os.getpid()}-{next(_seq)}-"  # see cleanup_stale
        self._index = {h.name: i for i, h in enumerate(hosts)}
        self._made: list[str] = []  # namespaces created so far, for a cleanup mid-setup
        self._procs: list[subprocess.Popen[Any]] = []
        self._open = False
        self._owner = 0  # the pid that opened it; only that process may tear it down

    # ---------------------------------------------------------------- names

    @property
    def switch_namespace(self) -> str:
        return self.prefix + SWITCH

    def namespace(self, host: str) -> str:
        self._check(host)
        return self.prefix + host

    def address(self, host: str) -> str:
        """The host's IPv4 address, reachable from every other host of this topology."""
        self._check(host)
        return f"{SUBNET}.{self._index[host] + 1}"

    def exec_prefix(self, host: str) -> list[str]:
        """Argv prefix that runs a command inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def _check(self, host: str) -> None:
        if host not in self._index:
            raise KeyError(f"no host {host!r} in this topology ({', '.join(self._index)})")

    @staticmethod
    def _port(index: int) -> str:
        return f"v{index}"

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> NetnsTopology:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Create namespaces, bridge, veths, addresses and qdiscs; on any failure undo it all."""
        if self._open:
            return
        require_netns()
        _install_sigterm()
        self._open = True
        self._owner = os.getpid()
        _OPEN.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, ns: str) -> None:
        try:
            _run(["ip", "netns", "add", ns])
        except NetnsError as err:
            raise NetnsUnavailable(f"cannot create network namespace {ns}: {err}") from err
        self._made.append(ns)
        # No IPv6: its neighbour discovery and router solicitations would add bytes of their
        # own to every link counter; the emulator speaks IPv4 only.
        _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *_NO_IPV6])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _build(self) -> None:
        sw = self.switch_namespace
        self._add_namespace(sw)
        _run(["ip", "-n", sw, "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "-n", sw, "link", "set", BRIDGE, "up"])
        for i, host in enumerate(self.hosts):
            ns = self.prefix + host.name
            port = self._port(i)
            self._add_namespace(ns)
            veth = ["type", "veth", "peer", "name", port, "netns", sw]
            _run(["ip", "-n", ns, "link", "add", HOST_IF, *veth])
            _run(["ip", "-n", sw, "link", "set", port, "master", BRIDGE, "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.address(host.name)}/24", "dev", HOST_IF])
            _run(["ip", "-n", ns, "link", "set", HOST_IF, "up"])
            if host.bandwidth is not None:
                peers = [self.address(h.name) for h in self.hosts if h.name != host.name]
                # towards the switch, flows part by where they go; towards the host, by source
                for argv in port_commands(HOST_IF, host.bandwidth, peers, "dst", self.fair):
                    _run(["tc", "-n", ns, *argv])
                for argv in port_commands(port, host.bandwidth, peers, "src", self.fair):
                    _run(["tc", "-n", sw, *argv])

    def close(self) -> None:
        """Stop processes started here, delete every namespace; safe to call more than once."""
        if not self._open or os.getpid() != self._owner:
            return
        self._open = False
        _OPEN.discard(self)
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + _TERM_GRACE_S
        for proc in self._procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        for ns in reversed(self._made):
            _delete_namespace(ns)
        self._made.clear()

    # ------------------------------------------------------------ processes

    def popen(self, host: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``host``'s namespace (``subprocess.Popen`` keywords apply).

        ``ip netns exec`` execs the command in place, so the Popen's pid is the command's own;
        processes still running at :meth:`close` get SIGTERM, then SIGKILL.
        """
        if not self._open:
            raise NetnsError("the topology is not open")
        proc = subprocess.Popen([*self.exec_prefix(host), *argv], **kw)
        self._procs.append(proc)
        return proc

    # -------------------------------------------------------------- counters

    def link_counters(self) -> dict[str, dict[str, Any]]:
        """Kernel byte counters of every shaped link, by simulator link name.

        Read from the bridge ports in one ``ip -s -j link`` call: a port's rx is what the host
        sent (``host->peer``), its tx what was delivered to it (``peer->host``). Bytes are
        Ethernet frames (payload + TCP/IP/Ethernet headers, ~3-5 % above the payload for full
        frames). Each entry: ``bytes``, ``packets``, ``bandwidth`` (bytes/s), ``time``
        (``time.monotonic()`` of the read).
        """
        out = _run(["ip", "-n", self.switch_namespace, "-s", "-j", "link", "show"]).stdout
        now = time.monotonic()
        stats = {dev["ifname"]: dev["stats64"] for dev in json.loads(out)}
        counters: dict[str, dict[str, Any]] = {}
        for i, host in enumerate(self.hosts):
            if host.bandwidth is None:
                continue
            port = stats[self._port(i)]
            for name, side in (
                (f"{host.name}->{host.peer}", "rx"),
                (f"{host.peer}->{host.name}", "tx"),
            ):
                counters[name] = {
                    "bytes": port[side]["bytes"],
                    "packets": port[side]["packets"],
                    "bandwidth": host.bandwidth,
                    "time": now,
                }
        return counters
