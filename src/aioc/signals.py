"""Signals as waits: ``signo = yield from wait_signal(SIGTERM, SIGHUP)``.

The first wait for a signal (or ``watch_signals``) starts watching it on the
task's loop, and the watch lasts until the loop closes:

- the signal's handler is replaced by one that only records the arrival and
  wakes the loop (``loop.call_soon_threadsafe``); its default action (ending
  the process, or ``KeyboardInterrupt`` for SIGINT) no longer happens;
- an arrival finds the task that has waited longest for that signal (FIFO);
  one that finds no waiter is kept, counted per signal, and goes to the next
  wait for it, so a signal is never lost between two waits;
- closing the loop puts the previous handlers back.

Python runs signal handlers only in the main thread, so a watch can start
only there (``RuntimeError`` otherwise), and a signal is watched by one loop
at a time.  A waiter that is cancelled (or times out) is forgotten; if the
signal had already been given to it, it goes to the next waiter or back to
the kept ones.

Signals that arrive in a burst before Python runs the handler once are one
arrival: the operating system and the interpreter both merge them.
"""

from __future__ import annotations

import signal
import threading
import types
from collections import deque
from collections.abc import Generator
from typing import Any

from ._interrupts import handler_beneath

__all__ = ["wait_signal", "watch_signals"]

_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}


def _check_signals(signos: tuple[Any, ...]) -> tuple[int, ...]:
    if not signos:
        raise TypeError("wait for at least one signal")
    valid = signal.valid_signals()
    for signo in signos:
        if isinstance(signo, bool) or not isinstance(signo, int):
            raise TypeError(f"a signal number is an int, got {signo!r}")
        if signo not in valid:
            raise ValueError(f"{signo} is not a valid signal number")
        if signo in _UNCATCHABLE:
            raise ValueError(f"{signal.Signals(signo).name} cannot be caught")
    return tuple(int(signo) for signo in signos)


class _Waiter:
    """The event a task parks on in ``wait_signal``."""

    __slots__ = ("signos", "task", "watch", "signo")

    def __init__(self, signos: tuple[int, ...]) -> None:
        self.signos = signos
        self.task: Any = None
        self.watch: _Watch | None = None  # set while it waits
        self.signo: int | None = None  # the signal it was given

    def _yield(self, loop: Any, task: Any) -> None:
        watch = _watch_for(loop)
        watch.start(self.signos)
        self.task, self.watch = task, watch
        signo = watch.take_kept(self.signos)
        if signo is not None:
            self.signo = signo  # handed back if the task leaves before it runs
            loop.reschedule(task, signo)
            return
        for signo in self.signos:
            watch.waiters[signo].append(self)
        loop.park(task)

    def _resume(self, loop: Any, task: Any) -> None:
        raise NotImplementedError  # the watch reschedules the task itself

    def abandon(self) -> None:
        """The task stopped waiting (cancelled, timed out, closed)."""
        watch, self.watch = self.watch, None
        if watch is None:
            return
        watch.forget(self)
        signo, self.signo = self.signo, None
        # Given a signal it will never see: hand it on (unless the loop is
        # closing, and every waiter with it).
        if signo is not None and not watch.loop.is_closed():
            watch.arrived(signo, front=True)


class _Watch:
    """The signals one loop watches: kept arrivals, waiters, previous handlers."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.previous: dict[int, Any] = {}
        self.kept: dict[int, int] = {}  # signo -> count; in order of first arrival
        self.waiters: dict[int, deque[_Waiter]] = {}

    def start(self, signos: tuple[int, ...]) -> None:
        """Watch each of ``signos`` not watched yet (the loop's thread)."""
        new = [signo for signo in signos if signo not in self.previous]
        if not new:
            return
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signals can be watched only from the main thread, where Python runs signal handlers")
        with _owners_lock:
            for signo in new:
                owner = _owners.get(signo)
                if owner is not None and owner is not self:
                    raise RuntimeError(f"{signal.Signals(signo).name} is already watched by another loop")
            for signo in new:
                previous = signal.signal(signo, self._handler)
                self.previous[signo] = handler_beneath(previous)
                self.waiters[signo] = deque()
                _owners[signo] = self

    def _handler(self, signo: int, frame: Any) -> None:
        """The signal handler: record the arrival on the loop, nothing else.

        It may run between any two bytecodes of the main thread, the loop's
        own included, so it leaves the loop's structures to the loop.
        """
        try:
            self.loop.call_soon_threadsafe(self._arrival(signo))
        except RuntimeError:
            pass  # the loop closed between the arrival and now

    def _arrival(self, signo: int) -> Generator[Any, Any, None]:
        """A task on the loop's thread: hand ``signo`` to its first waiter."""
        self.arrived(signo)
        return
        yield  # a generator, run as a task

    def arrived(self, signo: int, front: bool = False) -> None:
        queue = self.waiters.get(signo)
        if queue:
            waiter = queue.popleft()
            self.forget(waiter)
            waiter.signo = signo
            self.loop.reschedule(waiter.task, signo)
        elif front:  # handed back by a waiter that left: first in line again
            self.kept = {signo: self.kept.get(signo, 0) + 1, **self.kept}
        else:
            self.kept[signo] = self.kept.get(signo, 0) + 1

    def take_kept(self, signos: tuple[int, ...]) -> int | None:
        """The earliest kept signal among ``signos``, if any, taken."""
        for signo in self.kept:
            if signo in signos:
                count = self.kept[signo] - 1
                if count:
                    self.kept[signo] = count
                else:
                    del self.kept[signo]
                return signo
        return None

    def forget(self, waiter: _Waiter) -> None:
        for signo in waiter.signos:
            queue = self.waiters.get(signo)
            if queue is not None:
                try:
                    queue.remove(waiter)
                except ValueError:
                    pass

    def close(self) -> None:
        """Put the previous handlers back (the loop is closing)."""
        with _owners_lock:
            for signo, previous in self.previous.items():
                if _owners.get(signo) is self:
                    del _owners[signo]
                # A handler that someone installed over ours since stays.
                if signal.getsignal(signo) == self._handler:
                    signal.signal(signo, signal.SIG_DFL if previous is None else previous)
            self.previous.clear()
            self.waiters.clear()
            self.kept.clear()


# Which loop watches each signal: the process has one handler per signal.
_owners: dict[int, _Watch] = {}
_owners_lock = threading.Lock()
# The watch of each loop, until the loop closes.
_watches: dict[Any, _Watch] = {}


def _watch_for(loop: Any) -> _Watch:
    watch = _watches.get(loop)
    if watch is None:
        watch = _Watch(loop)
        loop.add_close_callback(lambda: _close_watch(loop))
        _watches[loop] = watch
    return watch


def _close_watch(loop: Any) -> None:
    watch = _watches.pop(loop, None)
    if watch is not None:
        watch.close()


@types.coroutine
def wait_signal(*signos: int) -> Generator[Any, Any, int]:
    """Wait until one of ``signos`` arrives; return its number.

    ``signo = yield from wait_signal(signal.SIGTERM, signal.SIGHUP)``, or
    ``await`` it.  Starts watching each signal on the first wait (see the
    module's documentation); a signal that arrived since, while no task
    waited, is returned at once.  Kept signals are counted per signal: a
    wait for several takes the one kept longest (whose first kept arrival is
    the earliest).
    """
    waiter = _Waiter(_check_signals(signos))
    try:
        signo: int = yield waiter
    except BaseException:
        waiter.abandon()
        raise
    waiter.watch = None
    waiter.signo = None
    waiter.task = None
    return signo


class _Start:
    """The event of ``watch_signals``: start the watch, resume at once."""

    __slots__ = ("signos",)

    def __init__(self, signos: tuple[int, ...]) -> None:
        self.signos = signos

    def _yield(self, loop: Any, task: Any) -> None:
        _watch_for(loop).start(self.signos)
        loop.reschedule(task, None)

    def _resume(self, loop: Any, task: Any) -> None:
        raise NotImplementedError


@types.coroutine
def watch_signals(*signos: int) -> Generator[Any, Any, None]:
    """Start watching ``signos`` now, without waiting for one.

    From then on they are kept for ``wait_signal`` instead of taking their
    default action: a server calls it before it announces that it is ready,
    so that a SIGTERM sent at once is not fatal.
    """
    yield _Start(_check_signals(signos))
