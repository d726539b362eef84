"""Ctrl-C while a loop runs: taken at a pass boundary, with every task intact.

Python runs a signal handler between any two bytecodes, so the default
SIGINT handler can raise ``KeyboardInterrupt`` in the middle of the loop's
own bookkeeping (a waiter taken from its table but not yet queued, a value
received but not yet delivered) and lose a task.  While a loop runs in the
main thread with the default handler, this guard replaces it: the first
SIGINT only stops the loop, which then raises ``KeyboardInterrupt`` from
``run_forever``/``run_until_complete`` between two passes, so that running
the loop again continues every task.  A second SIGINT before that raises at
once, wherever it lands, so a task that never yields can still be stopped.

The guard also points ``signal.set_wakeup_fd`` at the loop's wake-up socket,
so that a signal landing just before a blocking poll ends the poll.

A handler installed while the loop runs (``aioc.wait_signal(SIGINT)`` starts
a watch from inside a task) replaces the guard's: the guard then leaves SIGINT
alone when the run ends, and ``handler_beneath`` tells the newcomer which
handler to restore later (the one the guard stood in for, not the guard's).
"""

from __future__ import annotations

import signal
import threading
from typing import Any


class InterruptGuard:
    __slots__ = ("_stop", "_wake_fd", "pending", "_old_handler", "_old_wakeup_fd")

    def __init__(self, stop: Any, wake_fd: int) -> None:
        self._stop = stop
        self._wake_fd = wake_fd
        self.pending = False
        self._old_handler: Any = None
        self._old_wakeup_fd: int | None = None

    def install(self) -> None:
        """Take over SIGINT, then the wake-up fd; ``uninstall`` undoes what was done.

        The handler goes first: once it is in place, no SIGINT can raise here
        and leave the wake-up fd pointing at a loop that will be closed.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        handler = signal.getsignal(signal.SIGINT)
        if handler is signal.default_int_handler:
            self._old_handler = handler
            signal.signal(signal.SIGINT, self._on_sigint)
        self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_fd, warn_on_full_buffer=False)

    def uninstall(self) -> None:
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        if self._old_handler is not None:
            # Only if it is still ours: a handler installed during the run stays.
            if signal.getsignal(signal.SIGINT) == self._on_sigint:
                signal.signal(signal.SIGINT, self._old_handler)
            self._old_handler = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True
        self._stop()


def handler_beneath(handler: Any) -> Any:
    """The handler to restore in place of ``handler`` when a watch replaced it.

    A running guard's handler lives only as long as that run: what stands
    beneath it is the handler the guard replaced.  Any other handler is
    itself.
    """
    guard = getattr(handler, "__self__", None)
    if isinstance(guard, InterruptGuard) and guard._old_handler is not None:
        return guard._old_handler
    return handler
