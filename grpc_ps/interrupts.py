"""SIGINT, SIGTERM and SIGHUP during a launch: one way to stop, never half a cleanup.

``timeout``, ``scancel`` and a closed terminal send SIGTERM or SIGHUP where a user
presses Ctrl-C; all three unwind the launcher into the code that stops its roles. A
signal that arrives while a role is being spawned, or while the roles are being
stopped, is noted and raised once that is over, so that no role is left running
unwatched and no cleanup is cut short.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

from grpc_ps.lifeline import Interrupted

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class InterruptGuard:
    """The first signal of a run (``interrupted``), raised once, or later if deferred."""

    def __init__(self) -> None:
        self.interrupted: int | None = None
        self.deferring = False  # a Popen in flight or the final cleanup: note, don't raise
        self._raised = False
        self._active = False
        self._previous: dict[int, Any] = {}

    def catch(self) -> None:
        """Handle the signals while the run's processes exist. Only in the main thread
        (Python allows handlers nowhere else); a signal the caller ignores (``nohup``)
        stays ignored."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._active = True
        for sig in HANDLED_SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def release(self) -> None:
        """Put the caller's handlers back."""
        self._active = False
        for sig, handler in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:  # netns may have chained its own
                signal.signal(sig, handler)
        self._previous = {}

    def raise_pending(self) -> None:
        if self.interrupted is not None and not self._raised:
            self._raised = True
            if self.interrupted == signal.SIGINT:
                raise KeyboardInterrupt
            raise Interrupted(self.interrupted)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Unwind into the run's cleanup, once: a second signal while the roles are being
        stopped is noted, not raised, so that it cannot cut the cleanup short."""
        if not self._active:  # reached through a handler chained on ours after the run
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.interrupted is None:
            self.interrupted = signum
        if not self.deferring:
            self.raise_pending()
