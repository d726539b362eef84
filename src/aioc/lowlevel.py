"""The contract between events and the loop: everything an event may ask of it.

An event is any object with two methods.  ``_yield(loop, task)`` runs when a
task yields the event; it either registers interest through one of the
``wait_*`` calls below or completes at once with ``loop.reschedule(task,
value)``.  ``_resume(loop, task)`` runs when that interest is met (the fd is
ready, the deadline passed, the awaited task finished); it does the work that
is now possible and calls ``loop.reschedule(task, result)``.  An exception
raised by either method is thrown into the task at its ``yield``; a
``BlockingIOError`` raised by ``_resume`` means readiness was only a hint, and
the loop calls ``_yield`` again.

A task waits on at most one thing at a time, and every wake-up source removes
the others: the loop, not the event, keeps that rule.

``Loop`` below names the calls; both loops (``aioc._loop_py`` and
``aioc._loop_c``) implement them with these exact names and signatures, and
the built-in events are written only against them.

Owner of an fd
    ``wait_readable`` and ``wait_writable`` take the socket object that owns
    ``fd``.  epoll watches open files, not numbers: the loop keeps a
    registration while the same owner waits again (which saves a system call
    per wait), and when a waiter's owner no longer has that fd (it was closed
    and the number reused) the stale waiter gets ``ClosedResourceError``
    instead of blocking the new socket.  Pass ``None`` when no socket object
    exists (a raw fd); the loop then registers afresh on every wait.

The names that programs written for the original tutorial use keep working
and are tested: ``loop._ready.append((task, value))`` (``reschedule``),
``loop._read_wait(fd, event, task)`` and ``loop._write_wait`` (``wait_*``
with the event's ``sock`` attribute, if any, as owner), ``loop._timer_wait``
(``wait_until``) and ``loop._num_tasks`` (the number of unfinished tasks).
"""

from __future__ import annotations

from typing import Any, Protocol

from ._constants import ACCEPT_BACKOFF, ACCEPT_BACKOFF_ERRNOS, DEFAULT_READ_SIZE

__all__ = ["Loop", "ACCEPT_BACKOFF", "ACCEPT_BACKOFF_ERRNOS", "DEFAULT_READ_SIZE", "CONTRACT"]


class Loop(Protocol):
    """What an event's ``_yield`` and ``_resume`` may call on the loop."""

    def time(self) -> float:
        """The loop's clock in seconds: ``time.monotonic()``."""
        ...

    def wait_readable(self, fd: int, event: Any, task: Any, owner: Any = None) -> None:
        """Call ``event._resume(loop, task)`` once ``fd`` is readable (or faulty).

        Raises ``ResourceBusy`` if another task already waits to read ``fd``.
        """
        ...

    def wait_writable(self, fd: int, event: Any, task: Any, owner: Any = None) -> None:
        """Call ``event._resume(loop, task)`` once ``fd`` is writable (or faulty)."""
        ...

    def wait_until(self, deadline: float, event: Any, task: Any) -> None:
        """Call ``event._resume(loop, task)`` at ``deadline`` (``loop.time()`` seconds).

        A NaN deadline raises ``ValueError``.
        """
        ...

    def wait_task(self, target: Any, event: Any, task: Any) -> None:
        """Call ``event._resume(loop, task)`` once ``target`` (a task of this loop) finishes."""
        ...

    def set_deadline(self, task: Any, deadline: float) -> None:
        """Throw ``TimeoutError`` into ``task`` if it is still waiting at ``deadline``.

        Bounds the wait that the task's current yield registers; an earlier
        deadline already set for that yield wins.
        """
        ...

    def shield(self, task: Any) -> None:
        """Hold back ``Task.cancel()`` for ``task`` until the matching ``unshield``."""
        ...

    def unshield(self, task: Any) -> bool:
        """Leave a shield; True when a cancel held back is now due (raise ``Cancelled``)."""
        ...

    def park(self, task: Any) -> None:
        """Suspend ``task`` until its parker calls ``reschedule(task, value)``.

        For waits the loop knows nothing of (a lock, a queue, a result from a
        thread): the code that parks a task keeps it in its own waiting list
        and reschedules it when its turn comes.  A cancel or a deadline wakes
        a parked task as it wakes any other, by throwing into it: the parker
        must then forget it (and hand on whatever it was granted, if it was
        already rescheduled), typically in an ``except`` around its ``yield``.
        """
        ...

    def reschedule(self, task: Any, value: Any = None) -> bool:
        """Queue ``task`` to resume with ``value`` at its ``yield``; True if it was queued.

        ``task`` must be in its event's ``_yield``/``_resume`` or parked.  A
        parked task that a cancel or a deadline woke first is not queued again:
        the call returns False and ``value`` is not delivered (a primitive
        then hands its grant to the next waiter).  A task that waits on an fd,
        a timer or another task is woken by the loop alone (``RuntimeError``).
        """
        ...

    def complete(self, task: Any, value: Any = None) -> None:
        """``task``'s event completed at once, in its ``_yield``: resume it with ``value``.

        The loop resumes the task as soon as ``_yield`` returns, without a
        trip through the ready queue, so a request whose reply is sent at
        once takes one step instead of two.  Only ``IMMEDIATE_RESUMPTIONS``
        (16) in a row are taken at once; past that, and when called anywhere
        but in ``task``'s own ``_yield``, it queues the task as ``reschedule``
        does.  ``Sleep(0)``, which exists to give way, uses ``reschedule``.
        """
        ...


#: The contract's method names, in the order documented above.
CONTRACT = (
    "time", "wait_readable", "wait_writable", "wait_until", "wait_task", "set_deadline",
    "shield", "unshield", "park", "reschedule", "complete",
)
