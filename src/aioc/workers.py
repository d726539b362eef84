"""Multi-process serving: ``sys.exit(aioc.run_workers(main, workers=4))``.

:func:`run_workers` forks ``workers`` processes, each of which runs
``aioc.run(main())`` on a loop of its own, and supervises them until it is
told to stop.  A worker typically listens with ``SO_REUSEPORT`` (``serve_tcp(...,
reuse_port=True)``, or a socket of its own), so each has its own accept
queue and the kernel spreads connections among them.

The supervisor is a plain loop, not an event loop: it forks, so it must not
run one (a forked child would share its epoll and wake-up fds), and all it
waits for are signals.  It blocks SIGCHLD, SIGTERM and SIGINT and takes them
synchronously with ``signal.sigtimedwait``, which leaves no window between a
check and a wait for a signal to slip through, and runs no handler at an
awkward moment.  Each worker is forked with the original signal mask back.
The mask is the calling thread's: call ``run_workers`` from the main thread
of a process that runs no other threads, or one of those would take the
signals (a thread pool used before, say).

The policy:

- A worker that exits when no stop was asked for is restarted.  If it ran
  less than ``min_uptime`` seconds, that is a rapid failure: the restart
  waits ``backoff`` seconds, doubling with each rapid failure in a row up to
  ``max_backoff``.  After ``max_failures`` rapid failures in a row of one
  worker the supervisor gives up: a worker that crashes at start can cost
  at most that many forks, never a fork bomb.  A worker that ran longer
  starts again at once, its count reset.
- SIGTERM or SIGINT stops everything: the same signal goes to every worker
  (unless the terminal sent it, to the whole foreground process group, the
  workers included), no worker is restarted, and after ``grace`` seconds the
  workers still running are killed with SIGKILL.  A second signal is
  forwarded too.
- Every child is reaped before ``run_workers`` returns.

It returns the status for ``sys.exit``:

- ``0``: stopped by a signal, and every worker exited cleanly within the
  grace period (status 0, or ended by the very signal that was forwarded);
- ``1``: stopped by a signal, but a worker had to be killed after the grace
  period or exited with an error;
- ``2``: gave up on a worker that kept failing at start (the others were
  stopped as after SIGTERM).

In a worker, ``main()`` returning gives exit status 0, ``SystemExit`` its
code, ``KeyboardInterrupt`` 130 (128 + SIGINT) and any other exception 1,
with its traceback on stderr.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from ._loop import implementation

__all__ = ["run_workers"]

logger = logging.getLogger("aioc.workers")

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
SUPERVISED_SIGNALS = STOP_SIGNALS | {signal.SIGCHLD}

#: si_code of a signal the kernel sent (a terminal's Ctrl-C goes to the
#: whole foreground process group this way): the workers got it already.
SI_KERNEL = 0x80

#: Exit statuses of run_workers.
STOPPED_CLEANLY, STOPPED_UNCLEANLY, GAVE_UP = 0, 1, 2

#: How often a supervisor waiting for killed workers looks again (seconds).
REAP_INTERVAL = 0.1


@dataclass
class _Slot:
    """One worker position: the process now in it and its failure record."""

    index: int
    pid: int = 0                  # 0 while no process runs in it
    started_at: float = 0.0
    rapid_failures: int = 0       # in a row
    restart_at: float | None = None


def run_workers(
    main: Callable[[], Any],
    workers: int | None = None,
    *,
    grace: float = 10.0,
    min_uptime: float = 1.0,
    max_failures: int = 5,
    backoff: float = 0.1,
    max_backoff: float = 5.0,
) -> int:
    """Run ``aioc.run(main())`` in ``workers`` processes (default: one per CPU)
    and supervise them; returns 0, 1 or 2 as the module documents."""
    count = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"workers must be an int of 1 or more, got {workers!r}")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 1:
        raise ValueError(f"max_failures must be an int of 1 or more, got {max_failures!r}")
    for name, value in (("grace", grace), ("min_uptime", min_uptime), ("backoff", backoff),
                        ("max_backoff", max_backoff)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a number of seconds, 0 or more, got {value!r}")
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run_workers must be called from the main thread")
    supervisor = _Supervisor(main, count, float(grace), float(min_uptime), max_failures,
                             float(backoff), float(max_backoff))
    return supervisor.run()


class _Supervisor:
    def __init__(self, main: Callable[[], Any], count: int, grace: float, min_uptime: float,
                 max_failures: int, backoff: float, max_backoff: float) -> None:
        self.main = main
        self.slots = [_Slot(index) for index in range(count)]
        self.grace = grace
        self.min_uptime = min_uptime
        self.max_failures = max_failures
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stop_signal: int | None = None
        self.stop_deadline: float | None = None
        self.killed = False
        self.gave_up = False
        self.unclean = False
        self.original_mask: set[int] = set()

    def run(self) -> int:
        self.original_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISED_SIGNALS)
        try:
            for slot in self.slots:
                self.start(slot)
            self.supervise()
        finally:
            self.abandon()  # only if we leave by an exception: none is left otherwise
            self.drain_signals()
            signal.pthread_sigmask(signal.SIG_SETMASK, self.original_mask)
        if self.gave_up:
            return GAVE_UP
        return STOPPED_UNCLEANLY if self.unclean or self.killed else STOPPED_CLEANLY

    # -- the supervising loop --------------------------------------------------

    def supervise(self) -> None:
        while True:
            now = time.monotonic()
            if self.stop_deadline is None:
                for slot in self.slots:
                    if slot.restart_at is not None and slot.restart_at <= now:
                        self.start(slot)
            elif not self.live():
                return
            elif now >= self.stop_deadline and not self.killed:
                self.kill_all()
            info = signal.sigtimedwait(SUPERVISED_SIGNALS, self.wait_time(now))
            if info is not None and info.si_signo in STOP_SIGNALS:
                self.stop(info.si_signo, forward=info.si_code != SI_KERNEL)
            self.reap()

    def wait_time(self, now: float) -> float:
        """Seconds until the next thing the loop must do unprompted."""
        if self.killed:
            return REAP_INTERVAL
        if self.stop_deadline is not None:
            return max(0.0, self.stop_deadline - now)
        pending = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        # sigtimedwait needs a timeout; an hour stands for "none".
        return max(0.0, min(pending) - now) if pending else 3600.0

    def live(self) -> list[_Slot]:
        return [slot for slot in self.slots if slot.pid]

    # -- workers ------------------------------------------------------------------

    def start(self, slot: _Slot) -> None:
        slot.restart_at = None
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would write the parent's buffered output again
        pid = os.fork()
        if pid == 0:
            _run_worker(self.main, self.original_mask)
        slot.pid, slot.started_at = pid, time.monotonic()
        logger.info("worker %d started (pid %d)", slot.index, pid)

    def reap(self) -> None:
        """Collect the workers that have ended.  Each by its pid: other
        children of this process (a subprocess of the caller's) are not ours."""
        for slot in self.live():
            pid, status = os.waitpid(slot.pid, os.WNOHANG)
            if pid:
                slot.pid = 0
                self.exited(slot, pid, os.waitstatus_to_exitcode(status))

    def exited(self, slot: _Slot, pid: int, code: int) -> None:
        """``code``: the exit status, or minus the signal that ended the process."""
        if self.stop_deadline is not None:
            if not self.clean_stop(code):
                self.unclean = True
                logger.warning("worker %d (pid %d) ended with status %d", slot.index, pid, code)
            return
        uptime = time.monotonic() - slot.started_at
        if uptime >= self.min_uptime:
            slot.rapid_failures = 0
            delay = 0.0
        else:
            slot.rapid_failures += 1
            if slot.rapid_failures >= self.max_failures:
                logger.error("worker %d failed %d times in a row at start (last status %d); giving up",
                             slot.index, slot.rapid_failures, code)
                self.gave_up = True
                self.stop(signal.SIGTERM, forward=True)
                return
            delay = min(self.backoff * 2 ** (slot.rapid_failures - 1), self.max_backoff)
        logger.warning("worker %d (pid %d) exited with status %d after %.2f s; restarting in %.2f s",
                       slot.index, pid, code, uptime, delay)
        slot.restart_at = time.monotonic() + delay

    def clean_stop(self, code: int) -> bool:
        """Whether a worker's exit during a stop counts as clean."""
        signo = self.stop_signal or 0
        return code == 0 or code in (-signo, 128 + signo)

    # -- stopping -------------------------------------------------------------------

    def stop(self, signo: int, forward: bool) -> None:
        """Stop restarting, start the grace period, and pass ``signo`` on if ``forward``."""
        name = signal.Signals(signo).name
        if self.stop_deadline is None:
            self.stop_signal = signo
            self.stop_deadline = time.monotonic() + self.grace
            for slot in self.slots:
                slot.restart_at = None
            logger.info("stopping the workers (%s)", name)
        if not forward:
            logger.info("%s came from the terminal, which sent it to the workers too", name)
            return
        logger.info("forwarding %s to the workers", name)
        for slot in self.live():
            self.signal(slot.pid, signo)

    def kill_all(self) -> None:
        for slot in self.live():
            logger.warning("worker %d (pid %d) still runs after the grace period; killing it",
                           slot.index, slot.pid)
            self.signal(slot.pid, signal.SIGKILL)
            self.killed = True

    def abandon(self) -> None:
        """Kill and reap whatever still runs (when the supervisor itself fails)."""
        for slot in self.live():
            self.signal(slot.pid, signal.SIGKILL)
            os.waitpid(slot.pid, 0)
            slot.pid = 0

    @staticmethod
    def signal(pid: int, signo: int) -> None:
        try:
            os.kill(pid, signo)
        except ProcessLookupError:
            pass  # it has just exited: reaped on the next pass

    def drain_signals(self) -> None:
        """Take the signals still pending, so none fires as the mask is restored."""
        while signal.sigtimedwait(SUPERVISED_SIGNALS, 0) is not None:
            pass


def _run_worker(main: Callable[[], Any], mask: set[int]) -> NoReturn:
    """The child's whole life: run ``main()`` on a fresh loop, then exit."""
    code = 1
    try:
        # A worker starts as a fresh program would: the supervisor's caller
        # may have handlers of its own (a test runner's, say) that must not
        # decide what the forwarded SIGTERM does to a worker.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        implementation.run(main())
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - exiting regardless
                pass
        # Not sys.exit: the parent's atexit handlers and finally blocks must not run here.
        os._exit(code)
