"""Task groups: run child tasks that never outlive the code that started them.

A :class:`TaskGroup` owns the tasks spawned into it.  Leaving the group
(``join()``, or the end of an ``async with`` block) always means that every
child has finished and every ``finally`` of theirs has run.  When a child
fails, the group cancels its other children at once, waits for them and
raises the failures together in a :class:`TaskGroupError`; when the task that
owns the group is cancelled or timed out meanwhile, the children are
cancelled, waited for, and the cancel (or the ``TimeoutError``) goes on.  This
is the discipline of Trio's nurseries and asyncio's ``TaskGroup``, for
coroutines that ``yield`` events::

    def main():
        group = TaskGroup()
        yield from group.spawn(fetch(a))
        yield from group.spawn(fetch(b))
        return (yield from group.join())      # [result of a, result of b]

    async def main():
        async with TaskGroup() as group:
            await group.spawn(fetch(a))
            await group.spawn(fetch(b))
        # both have finished here

Each child runs inside a small supervisor coroutine (named after what it
runs) that tells the group when its coroutine fails, so that the siblings are
cancelled the moment a failure happens, even while the owner is busy or other
children are blocked on I/O.  The owner waits for its children through
``loop.wait_task``, a wait the loop owns: a cancel or a deadline of the owner
then removes that wait cleanly (see ``WaitFinished`` for why not ``park``).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Awaitable, Generator, Sequence
from typing import Any

from ._introspect import default_name
from .events import Cancelled, Event

__all__ = ["TaskGroup", "TaskGroupError"]

# -- the error -------------------------------------------------------------

if sys.version_info >= (3, 11):

    class TaskGroupError(ExceptionGroup[Exception]):
        """The children of a task group (or its ``async with`` body) failed.

        An ``ExceptionGroup``: ``.exceptions`` holds the failures in the order
        they happened, and ``except*`` works on it.
        """

        def derive(self, excs: Sequence[Exception]) -> TaskGroupError:  # type: ignore[override]
            # except* splits the group: the parts stay TaskGroupErrors.
            return TaskGroupError(self.message, excs)

else:

    class TaskGroupError(Exception):
        """The children of a task group (or its ``async with`` body) failed.

        Python 3.10 has no ``ExceptionGroup``; this class stands in for it
        with the same read-only surface: ``.message`` and ``.exceptions`` (a
        tuple of the failures in the order they happened), and the same
        ``str()``.  From 3.11 on, ``TaskGroupError`` is an ``ExceptionGroup``.
        """

        def __init__(self, message: str, exceptions: Sequence[Exception]) -> None:
            if not exceptions:
                raise ValueError("second argument (exceptions) must be a non-empty sequence")
            super().__init__(message, tuple(exceptions))
            self._message = message
            self._exceptions = tuple(exceptions)

        @property
        def message(self) -> str:
            return self._message

        @property
        def exceptions(self) -> tuple[Exception, ...]:
            return self._exceptions

        def __str__(self) -> str:
            count = len(self._exceptions)
            return f"{self._message} ({count} sub-exception{'s' if count > 1 else ''})"


def _group_error(failures: list[BaseException]) -> TaskGroupError:
    count = len(failures)
    message = "a child of a task group failed" if count == 1 else f"{count} children of a task group failed"
    return TaskGroupError(message, failures)  # type: ignore[arg-type]  # only Exceptions get here


# -- the events the group yields --------------------------------------------


class _StartChild(Event):
    """``yield group.spawn(coro)``: start ``coro`` in the group; resumes with its Task."""

    __slots__ = ("group", "coro")

    def __init__(self, group: TaskGroup, coro: Any) -> None:
        self.group = group
        self.coro = coro

    def _yield(self, loop: Any, task: Any) -> None:
        loop.reschedule(task, self.group._start(loop, self.coro))

    def _resume(self, loop: Any, task: Any) -> None:
        raise NotImplementedError


class WaitFinished(Event):
    """Wait until the task ``target`` has finished (without taking its outcome).

    Shared with :mod:`aioc.servers`, which waits for its handlers the same way.

    A wait the loop owns, not a park: if the waiting task is cancelled or
    its deadline passes, the loop removes the wait itself, and the group
    keeps no waiting list of its own.  ``registered`` tells whether the wait
    reached the loop at all (a task that waits for itself is refused).
    """

    __slots__ = ("target", "registered")

    def __init__(self, target: Any) -> None:
        self.target = target
        self.registered = False

    def _yield(self, loop: Any, task: Any) -> None:
        if task is self.target:
            raise RuntimeError("a child cannot join its own task group")
        loop.wait_task(self.target, self, task)
        self.registered = True

    def _resume(self, loop: Any, task: Any) -> None:
        loop.reschedule(task, None)


class CurrentTask(Event):
    """Resumes with ``(loop, task)``: the loop and the task that yields it."""

    __slots__ = ()

    def _yield(self, loop: Any, task: Any) -> None:
        loop.reschedule(task, (loop, task))

    def _resume(self, loop: Any, task: Any) -> None:
        raise NotImplementedError


class TaskSlot:
    """The Task a coroutine runs in, filled in once the loop has made it
    (a group's supervisor, a server's connection handler)."""

    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task: Any = None


# -- the group --------------------------------------------------------------

_OPEN, _JOINING, _CLOSED = "open", "joining", "closed"

#: What the loop's exception handler is told about a child failure that a
#: cancel of the group's owner took precedence over.
_SUPERSEDED = "a child of a task group failed while the group's owner was cancelled"


class TaskGroup:
    """Child tasks that finish before the group is left.

    ``task = yield from group.spawn(coro)`` (or ``await``) starts a child;
    ``results = yield from group.join()`` waits for all of them and returns
    their results in spawn order (``None`` for a child that was cancelled
    from outside the group).  ``async with TaskGroup() as group:`` joins when
    the block ends; a child failure then also cancels the block.

    - A child that fails makes the group cancel the other children, wait for
      them and raise :class:`TaskGroupError` with every failure (children
      ending in ``Cancelled`` are not failures).  An exception of the
      ``async with`` body is one of the failures too.
    - A cancel or a ``TimeoutError`` that reaches the owner while it waits in
      ``join`` (or that ends the ``async with`` body) cancels the children,
      waits for them and then propagates unchanged; any child failure is then
      reported through the loop's exception handler instead.
    - A ``KeyboardInterrupt`` or ``SystemExit`` of a child is raised as it is.
    - Spawning after the group was joined raises ``RuntimeError``; a child
      spawned while the group is cancelling its children is cancelled before
      it starts.
    """

    __slots__ = (
        "_loop", "_children", "_cursor", "_failures", "_state", "_aborting",
        "_body", "_body_cancelled", "_abandoned",
    )

    def __init__(self) -> None:
        self._loop: Any = None
        self._children: list[Any] = []  # every child Task, in spawn order
        self._cursor = 0  # children before it have all finished
        self._failures: list[tuple[Any, BaseException]] = []  # (task, exception), as they happened
        self._state = _OPEN
        self._aborting = False  # the children are being cancelled
        self._body: Any = None  # the task running the async-with body, while it runs
        self._body_cancelled = False  # the group itself cancelled that body
        self._abandoned = False  # the owner could not wait: children may still run

    def __repr__(self) -> str:
        running = sum(1 for child in self._children if not child.done())
        return f"<TaskGroup {self._state} children={len(self._children)} running={running}>"

    @property
    def tasks(self) -> list[Any]:
        """The children spawned so far, in spawn order."""
        return list(self._children)

    # -- spawning -----------------------------------------------------------

    def spawn(self, coro: Any) -> _StartChild:
        """``task = yield from group.spawn(coro)`` or ``task = await group.spawn(coro)``."""
        return _StartChild(self, coro)

    def _start(self, loop: Any, coro: Any) -> Any:
        if self._state == _CLOSED:
            _discard(coro)
            raise RuntimeError("this task group has already been joined: it takes no new children")
        if not (hasattr(coro, "send") and hasattr(coro, "throw")):
            raise TypeError(f"a task group runs coroutines, got {coro!r}")
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            _discard(coro)
            raise ValueError("this task group belongs to another loop")
        slot = TaskSlot()
        child = loop.call_soon(self._supervise(coro, slot))
        slot.task = child
        child.name = default_name(coro)  # named after what it runs, not the supervisor
        self._children.append(child)
        if self._aborting:
            child.cancel()  # Cancelled before its first step: its coroutine never runs
        return child

    @types.coroutine
    def _supervise(self, coro: Any, slot: TaskSlot) -> Generator[Any, Any, Any]:
        """Run one child's coroutine; a failure stops its siblings at once."""
        try:
            return (yield from coro)
        except (Cancelled, GeneratorExit):
            raise  # cancelled (by the group or anyone), or the loop is closing: not a failure
        except BaseException as exc:
            self._failures.append((slot.task, exc))
            self._abort(failing=slot.task)
            raise  # the Task keeps its own exception; the group retrieves it when it concludes

    def _abort(self, failing: Any = None) -> None:
        """Cancel every unfinished child (and the async-with body, if it runs)."""
        if self._aborting:
            return
        self._aborting = True
        for child in self._children:
            if child is not failing and not child.done():
                child.cancel()
        if self._body is not None and not self._body_cancelled:
            self._body_cancelled = True
            self._body.cancel()

    # -- waiting ------------------------------------------------------------

    @types.coroutine
    def join(self) -> Generator[Any, Any, list[Any]]:
        """``results = yield from group.join()``: wait for every child; their
        results in spawn order, or :class:`TaskGroupError` if any failed."""
        self._begin_join()
        interruption = yield from self._wait_all()
        return self._conclude(interruption)

    def _begin_join(self) -> None:
        if self._state != _OPEN:
            raise RuntimeError(f"this task group is already {self._state}")
        self._state = _JOINING

    @types.coroutine
    def _wait_all(self) -> Generator[Any, Any, BaseException | None]:
        """Wait until every child (including those spawned meanwhile) has
        finished; return the first exception thrown into the wait, if any."""
        interruption: BaseException | None = None
        while True:
            child = self._first_unfinished()
            if child is None:
                return interruption
            wait = WaitFinished(child)
            try:
                yield wait
            except GeneratorExit:
                raise  # the loop is closing this task: nothing may be awaited now
            except BaseException as exc:
                # The owner was cancelled or timed out: its children go too,
                # but it still waits for them before the exception moves on.
                if interruption is None:
                    interruption = exc
                self._abort()
                if not wait.registered:
                    # Every wait is refused at once (a child joining its own
                    # group): waiting again would spin.  The children were
                    # cancelled; they end on their own.
                    self._abandoned = True
                    return interruption

    def _first_unfinished(self) -> Any:
        children = self._children
        while self._cursor < len(children) and children[self._cursor].done():
            self._cursor += 1
        return children[self._cursor] if self._cursor < len(children) else None

    def _conclude(self, interruption: BaseException | None) -> list[Any]:
        """Close the group and say how it went: the results, or raise."""
        self._close(interruption)
        if interruption is not None:
            raise interruption
        return [None if child.exception() is not None else child.result() for child in self._children]

    def _close(self, interruption: BaseException | None) -> None:
        """Close the group; raise what its children's failures call for, unless
        ``interruption`` (the owner's cancel or deadline) takes precedence."""
        self._state = _CLOSED
        for child in self._children:
            if child.done():
                child.exception()  # seen by the group: the loop must not report it again
        failures = [exc for _, exc in self._failures]
        for exc in failures:
            if not isinstance(exc, Exception):
                raise exc  # KeyboardInterrupt, SystemExit: never wrapped
        if interruption is not None:
            self._report_superseded()
        elif failures:
            raise _group_error(failures)

    def _report_superseded(self) -> None:
        # The owner's cancel wins, but a child's failure must not vanish.
        for task, exc in self._failures:
            if self._loop is not None:
                self._loop.call_exception_handler({"message": _SUPERSEDED, "exception": exc, "task": task})

    # -- async with -----------------------------------------------------------

    def __aenter__(self) -> Awaitable[TaskGroup]:
        return self._enter()

    def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Awaitable[bool]:
        return self._exit(exc)

    @types.coroutine
    def _enter(self) -> Generator[Any, Any, TaskGroup]:
        if self._state != _OPEN or self._body is not None:
            raise RuntimeError("a task group can be entered once, before it is joined")
        loop, task = yield CurrentTask()
        if self._loop is None:
            self._loop = loop
        self._body = task
        return self

    @types.coroutine
    def _exit(self, exc: BaseException | None) -> Generator[Any, Any, bool]:
        self._body = None
        if isinstance(exc, GeneratorExit):
            return False  # the loop is closing the task (and every child): nothing may wait
        self._begin_join()
        ours = isinstance(exc, Cancelled) and self._body_cancelled
        outer: BaseException | None = None
        if exc is not None and not ours:
            if isinstance(exc, (Cancelled, TimeoutError)) or not isinstance(exc, Exception):
                outer = exc  # the owner's own cancel or deadline: it goes on unchanged
            else:
                self._failures.append((None, exc))  # the body failed: one of the failures
            self._abort()
        interruption = yield from self._wait_all()
        self._close(interruption or outer)
        if interruption is not None and interruption is not outer:
            raise interruption  # the owner was cancelled while it waited
        # Nothing to suppress: the body's own exception (if any) goes on, and
        # a cancel the group sent to the body has become the group's error.
        return False


def _discard(coro: Any) -> None:
    """Close a coroutine that will never run, so Python does not warn that it
    was never awaited."""
    close = getattr(coro, "close", None)
    if close is not None:
        close()
