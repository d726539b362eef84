"""Synchronisation between tasks of one loop: Lock, Semaphore, BoundedSemaphore,
Condition and Flag.

They are written only against the loop's contract (:mod:`aioc.lowlevel`), so
they serve the pure and the compiled loop alike.  Every waiting operation
works as ``yield from x`` in a generator coroutine and as ``await x`` in an
``async def``; when it can complete at once (a free lock, a set flag) it
does not yield at all, so the uncontended path costs no trip through the
loop.  Waiters wake in the order they began to wait, and ownership passes
straight to the woken waiter (nobody can barge in between).

Cancellation safety: a waiter can be granted what it waited for (the lock, a
permit) and then be cancelled before it runs.  The waiter's record says it
was granted, and the cancelled waiter hands the grant on to the next one
before the cancellation propagates; nothing is ever lost.  A waiter that a
cancel or a deadline woke first is skipped: the loop refuses to reschedule
it (:func:`grant_first`).

This module is the specification.  The compiled loop has a twin of ``Lock``
(``aioc._loop_c.Lock``), which ``aioc.Lock`` gives when the loop is compiled:
a free lock is taken and released in C, and waiting goes through
:func:`acquire_in_line`, so the waiting line's rules are written once.
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, TypeVar

__all__ = ["Lock", "Semaphore", "BoundedSemaphore", "Condition", "Flag"]

T = TypeVar("T")


class Waiter:
    """One parked task's place in a primitive's waiting line; also the event it yields.

    ``granted`` and ``value`` say whether (and with what) the primitive woke
    it, so that the task can hand the grant on if a cancel or a deadline
    reaches it first.
    """

    __slots__ = ("line", "loop", "task", "granted", "value")

    def __init__(self, line: deque[Waiter], value: Any = None) -> None:
        self.line = line
        self.loop: Any = None
        self.task: Any = None
        self.granted = False
        self.value = value

    def _yield(self, loop: Any, task: Any) -> None:
        self.loop, self.task = loop, task
        self.line.append(self)
        loop.park(task)

    def _resume(self, loop: Any, task: Any) -> None:  # never called: the task is parked
        raise NotImplementedError


def grant_first(line: deque[Waiter], value: Any = None) -> bool:
    """Wake the first waiter of ``line`` that can still take ``value``; False if none can.

    A waiter whose task a cancel or a deadline woke first is taken out of
    the line and skipped: ``reschedule`` refuses a task that is already
    queued, and that task forgets its waiter when the exception reaches it.
    """
    while line:
        waiter = line.popleft()
        if waiter.loop.reschedule(waiter.task, value):
            waiter.granted = True
            waiter.value = value
            return True
    return False


def park(waiter: Waiter, give_back: Callable[[Any], None]) -> Generator[Any, Any, Any]:
    """Yield ``waiter`` until it is granted; return the granted value.

    On a cancel or a deadline a waiter that was not granted leaves its line;
    one that was granted (and then cancelled before it ran) calls
    ``give_back(value)`` so that the grant goes to someone else; then the
    exception propagates.
    """
    try:
        return (yield waiter)
    except BaseException:
        if waiter.granted:
            give_back(waiter.value)  # granted, then cancelled before it ran
        else:
            forget(waiter)
        raise


def forget(waiter: Waiter) -> None:
    """Take a waiter that was never granted out of its line."""
    try:
        waiter.line.remove(waiter)
    except ValueError:
        pass  # never got into it: its yield was refused before it parked


@types.coroutine
def acquire_in_line(lock: Any) -> Generator[Any, Any, bool]:
    """Wait in a held lock's line until it is handed over; returns True.

    The waiting half of ``Lock.acquire``, shared with the compiled Lock.
    """
    yield from park(Waiter(lock._waiters), lock._pass_on)
    return True


@types.coroutine
def acquired(primitive: Any) -> Generator[Any, Any, None]:
    """Acquire ``primitive``; returns None, what ``async with primitive`` binds (as in asyncio)."""
    yield from primitive.acquire()


@types.coroutine
def returning(value: T) -> Generator[Any, Any, T]:
    """A coroutine that returns ``value`` without waiting.

    The compiled primitives hand it out for an operation that completed at
    once, on the CPython versions where a generator is the cheapest way to
    return a value through ``yield from`` (see aioc/_compiled/completed.pxi).
    """
    return value
    yield  # a generator coroutine that never waits


def _no_give_back(value: Any) -> None:
    """A grant that takes nothing from anyone (a set flag) needs no handing on."""


class Lock:
    """A mutual-exclusion lock: ``async with lock:`` or ``yield from lock.acquire()``.

    Not reentrant; any task may release it.  Waiters acquire it in FIFO order.
    """

    __slots__ = ("_locked", "_waiters")

    def __init__(self) -> None:
        self._locked = False
        # While anyone waits the lock is held: release hands it straight on.
        self._waiters: deque[Waiter] = deque()

    def locked(self) -> bool:
        return self._locked

    @types.coroutine
    def acquire(self) -> Generator[Any, Any, bool]:
        """Wait until the lock is free and take it; returns True."""
        if not self._locked:
            self._locked = True
            return True
        return (yield from acquire_in_line(self))

    def _try_take(self) -> bool:
        if self._locked:
            return False
        self._locked = True
        return True

    def release(self) -> None:
        """Free the lock, or hand it to the first waiter.  RuntimeError if it is not held."""
        if not self._locked:
            raise RuntimeError("Lock.release() called on an unlocked lock")
        self._pass_on(None)

    def _pass_on(self, _: Any) -> None:
        if not grant_first(self._waiters, True):
            self._locked = False

    def __aenter__(self) -> Any:
        return acquired(self)

    @types.coroutine
    def __aexit__(self, *exc_info: object) -> Generator[Any, Any, None]:
        self.release()
        return
        yield  # a generator coroutine that never waits

    def __repr__(self) -> str:
        state = "locked" if self._locked else "unlocked"
        return f"<{type(self).__name__} {state}, {len(self._waiters)} waiting>"


class Semaphore:
    """A counter of permits: ``acquire`` takes one (waiting while none is left), ``release`` returns one."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("Semaphore initial value must be >= 0")
        self._value = value
        # While anyone waits no permit is free: release hands its permit straight on.
        self._waiters: deque[Waiter] = deque()

    def locked(self) -> bool:
        """True when ``acquire`` would wait."""
        return self._value == 0

    @property
    def value(self) -> int:
        """The permits free now."""
        return self._value

    @types.coroutine
    def acquire(self) -> Generator[Any, Any, bool]:
        """Take a permit, waiting for one if none is free; returns True."""
        if self._value > 0:
            self._value -= 1
            return True
        yield from park(Waiter(self._waiters), self._pass_on)
        return True

    def release(self) -> None:
        """Return a permit: to the first waiter if any, else to the pool."""
        self._pass_on(None)

    def _pass_on(self, _: Any) -> None:
        if not grant_first(self._waiters, True):
            self._value += 1

    def __aenter__(self) -> Any:
        return acquired(self)

    @types.coroutine
    def __aexit__(self, *exc_info: object) -> Generator[Any, Any, None]:
        self.release()
        return
        yield

    def __repr__(self) -> str:
        return f"<{type(self).__name__} value={self._value}, {len(self._waiters)} waiting>"


class BoundedSemaphore(Semaphore):
    """A Semaphore whose ``release`` raises ValueError when it would exceed the initial value."""

    __slots__ = ("_bound",)

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._bound = value

    def release(self) -> None:
        # A permit in a granted waiter's hands counts as held: _value stays 0 then.
        if self._value >= self._bound:
            raise ValueError("BoundedSemaphore released too many times")
        self._pass_on(None)


class Condition:
    """Wait for a state change under a lock: ``wait``, ``wait_for``, ``notify``, ``notify_all``.

    ``lock`` (a :class:`Lock`, a new one by default) must be held to wait
    and to notify.  ``wait`` releases it, waits for a notification and takes
    it back before returning, and also before a cancel or a deadline
    propagates, so the caller's ``async with cond:`` always ends holding it.
    """

    __slots__ = ("_lock", "_waiters", "acquire", "release", "locked")

    def __init__(self, lock: Lock | None = None) -> None:
        self._lock = Lock() if lock is None else lock
        self._waiters: deque[Waiter] = deque()
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        self.locked = self._lock.locked

    def __aenter__(self) -> Any:
        return acquired(self._lock)

    def __aexit__(self, *exc_info: object) -> Any:
        return self._lock.__aexit__(*exc_info)

    @types.coroutine
    def wait(self) -> Generator[Any, Any, bool]:
        """Release the lock, wait for ``notify``, re-acquire the lock; returns True."""
        if not self._lock.locked():
            raise RuntimeError("Condition.wait() needs the lock held")
        self._lock.release()
        try:
            yield from park(Waiter(self._waiters), self._pass_notification_on)
        except GeneratorExit:
            raise  # the loop is closing the task: it can wait for nothing more
        except BaseException:
            yield from self._reacquire()
            raise
        yield from self._reacquire()
        return True

    def _reacquire(self) -> Generator[Any, Any, None]:
        # Cancelled again while waiting for the lock: keep waiting, so that
        # the lock is held when the first exception propagates.
        lock = self._lock
        error: BaseException | None = None
        while not lock._try_take():
            waiter = Waiter(lock._waiters)
            try:
                yield waiter
                break
            except BaseException as exc:
                if waiter.granted:
                    # Granted, then cancelled before it ran: it holds the lock
                    # now, so the grant is kept, not handed on.
                    if error is None:
                        error = exc
                    break
                if error is None:
                    error = exc
                forget(waiter)
                if waiter.task is None:
                    # Refused before it could park (its yield raised at once):
                    # waiting again would spin.
                    break
        if error is not None:
            raise error

    def _pass_notification_on(self, _: Any) -> None:
        # Notified, then cancelled before it ran: the notification is not lost.
        grant_first(self._waiters, True)

    @types.coroutine
    def wait_for(self, predicate: Callable[[], T]) -> Generator[Any, Any, T]:
        """Wait until ``predicate()`` is true (checked under the lock); returns its value."""
        result = predicate()
        while not result:
            yield from self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters, first come first served."""
        if not self._lock.locked():
            raise RuntimeError("Condition.notify() needs the lock held")
        waiters = self._waiters
        while n > 0 and grant_first(waiters, True):
            n -= 1

    def notify_all(self) -> None:
        """Wake every waiter."""
        self.notify(len(self._waiters))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._lock!r}, {len(self._waiters)} waiting>"


class Flag:
    """A one-shot flag: ``wait`` returns once ``set`` has been called (at once if it was)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: deque[Waiter] = deque()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Set the flag and wake every waiter.  Setting it again does nothing."""
        if self._set:
            return
        self._set = True
        while grant_first(self._waiters, True):
            pass

    @types.coroutine
    def wait(self) -> Generator[Any, Any, bool]:
        """Wait until the flag is set; returns True."""
        if self._set:
            return True
        yield from park(Waiter(self._waiters), _no_give_back)
        return True

    def __repr__(self) -> str:
        state = "set" if self._set else "unset"
        return f"<{type(self).__name__} {state}, {len(self._waiters)} waiting>"

