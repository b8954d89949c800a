"""No process outlives its run: role processes die with their launcher, stale run dirs go.

The launcher stops its roles itself when it ends normally, on an exception, or on SIGINT,
SIGTERM or SIGHUP (:class:`Interrupted`). What it cannot handle is its own SIGKILL (an OOM
kill, ``kill -9``, a batch system's hard limit): then each role must notice on its own.
:func:`die_with_launcher`, called first thing in a role process, arranges that:

- the kernel sends the role SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``,
  Linux). It is set in the role itself rather than in a ``preexec_fn`` (unsafe with the
  launcher's reader threads) and after ``ip netns exec`` has exec'd the interpreter in
  place, so it holds for netns runs too;
- the role checks, once it is set, that the launcher (``PSLAB_LAUNCHER_PID``) is still its
  parent: a launcher killed during the role's seconds of imports is caught here;
- a daemon thread polls twice a second that the launcher is alive and still its parent, for
  kernels without ``prctl`` and for a role whose parent is not the launcher.

The launcher starts roles as ``python -m grpc_ps.lifeline grpc_ps.roles ARGS``: this module
arms all that, then runs the role module as ``__main__``, so a role is covered from its first
milliseconds rather than after its seconds of torch and grpc imports (on a loaded machine,
long enough for a SIGKILLed launcher's roles to miss a 10 s budget).

SIGKILL, not SIGTERM: a role that ignores or is stuck past SIGTERM must end too, and with
the launcher gone there is no one left to collect what a role would write on SIGTERM.

A launcher killed that way also leaves its run directory (``pslab-run-*`` in the temp dir)
behind. :func:`claim_run_dir` records the owner's pid in it and :func:`cleanup_stale_runs`,
called before every launch, removes those whose owner is dead, as
:func:`grpc_ps.netns.cleanup_stale` does for namespaces. Loopback runs bind port 0, so no
port outlives its process.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import runpy
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

LAUNCHER_ENV = "PSLAB_LAUNCHER_PID"  # set by the launcher in every role's environment
RUN_PREFIX = "pslab-run-"
OWNER_FILE = "owner.json"
WATCH_INTERVAL_S = 0.5
_PR_SET_PDEATHSIG = 1
_armed = False  # die_with_launcher ran in this process


class Interrupted(BaseException):
    """The launcher got SIGTERM or SIGHUP: its roles are stopped, then this propagates.

    A BaseException, as KeyboardInterrupt is, so that no ``except Exception`` on the way
    swallows the request to end. The CLI exits with 128 + ``signum`` (143, 129).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _set_pdeathsig(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)


def _launcher_gone(launcher: int, parent: int) -> bool:
    return (parent == launcher and os.getppid() != launcher) or not pid_alive(launcher)


def _watch(launcher: int, parent: int) -> None:
    while not _launcher_gone(launcher, parent):
        time.sleep(WATCH_INTERVAL_S)
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_launcher() -> None:
    """In a role process: end by SIGKILL within a second of the launcher's death.

    Does nothing for a process no launcher started (``pslab serve``/``worker`` under a
    cluster's own process manager).
    """
    global _armed
    value = os.environ.get(LAUNCHER_ENV, "")
    if _armed or not value.isdigit():
        return
    _armed = True
    launcher = int(value)
    parent = os.getppid()
    _set_pdeathsig(signal.SIGKILL)
    if _launcher_gone(launcher, parent):
        os.kill(os.getpid(), signal.SIGKILL)  # it died before the kernel could be told
    threading.Thread(target=_watch, args=(launcher, parent), daemon=True).start()


# ------------------------------------------------------------ run directories


def claim_run_dir(run_dir: Path) -> None:
    """Record this process as the run directory's owner, for :func:`cleanup_stale_runs`."""
    (run_dir / OWNER_FILE).write_text(json.dumps({"pid": os.getpid()}))


def cleanup_stale_runs(root: Path | None = None) -> list[Path]:
    """Remove ``pslab-run-*`` directories under ``root`` (the temp dir) whose recorded owner
    is dead; return them. Directories without an owner record (one being created, or from
    an older pslab) and those of live owners are left alone, so concurrent runs are safe."""
    root = Path(root) if root is not None else Path(tempfile.gettempdir())
    removed = []
    for run_dir in root.glob(f"{RUN_PREFIX}*"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            owner = int(json.loads((run_dir / OWNER_FILE).read_text())["pid"])
            if owner != os.getpid() and not pid_alive(owner):
                shutil.rmtree(run_dir, ignore_errors=True)
                removed.append(run_dir)
    return removed


def main() -> None:
    """``python -m grpc_ps.lifeline MODULE ARGS...``: arm :func:`die_with_launcher`, then run
    ``MODULE`` as ``python -m MODULE ARGS...`` would."""
    if len(sys.argv) < 2:
        sys.exit("usage: python -m grpc_ps.lifeline MODULE [ARGS...]")
    from grpc_ps import lifeline  # the module roles import, not this __main__ copy of it

    lifeline.die_with_launcher()
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
