"""The reference event loop in pure Python: the readable specification.

``_loop_c.pyx`` implements every rule here in C; the test suite runs against
both.  The loop keeps a ready queue of ``(task, value)`` pairs, read and write
waiting maps from fd to ``(event, task, owner)``, a timer heap and a backend
that polls (``_io_epoll.py`` or ``_io_select.py``, one interface).  Each
pass polls I/O (without blocking while work is ready), fires due timers, and
then steps a snapshot of the ready queue, so a task that keeps rescheduling
itself cannot starve sockets or timers.

Events talk to the loop through the contract in ``lowlevel.py``.  The
compiled twin has the same methods; its C-level helpers drop the leading
underscore (``_step`` here is ``step`` there), as listed in ``_loop_c.pxd``.
"""

from __future__ import annotations

import heapq
import logging
import socket
import time
import types
from collections import deque
from typing import Any, Callable

from . import _constants as C
from . import events
from ._constants import (
    FAULT,
    IMMEDIATE_RESUMPTIONS,
    MAX_POLL_TIMEOUT,
    READABLE,
    TIMER_PRUNE_MIN,
    WRITABLE,
    ZOMBIE_WAKEUPS,
)
from ._interrupts import InterruptGuard
from ._introspect import TaskStack, check_name, coroutine_frames, default_name, where
from ._io_epoll import fileno_of
from ._io_select import SelectBackend
from .events import Cancelled, ClosedResourceError, InvalidStateError, ResourceBusy

# Each implementation module offers the full public namespace, so that tests
# and the chooser can take either whole.
from .events import *  # noqa: F403

__all__ = ["EventLoop", "Task", "run"]
__all__ += events.__all__

logger = logging.getLogger("aioc")

ExceptionHandler = Callable[["EventLoop", dict], None]

# What a blocked task waits on (Task._wait_kind).
WAIT_NONE, WAIT_READ, WAIT_WRITE, WAIT_TIMER, WAIT_JOIN, WAIT_PARKED = 0, 1, 2, 3, 4, 5
# In the ready queue: woken already, by whatever woke it first.
WAIT_QUEUED = -1


class Task:
    """A coroutine run by the loop (created by ``EventLoop.call_soon``)."""

    # The compiled twin has these fields without the underscore (see _loop_c.pxd).
    __slots__ = (
        "_coro", "_loop", "_finished", "_log_exception", "_value", "_error", "_throw_next",
        "_wait_kind", "_wait_fd", "_wait_timer", "_join_target", "_deadline", "_joiners",
        "_shield_depth", "_cancel_pending", "_task_name", "__weakref__",
    )

    def __init__(self, coro: Any, loop: EventLoop) -> None:
        if not isinstance(loop, EventLoop):
            raise TypeError(C.NO_TASK_CREATION)
        if not (hasattr(coro, "send") and hasattr(coro, "throw")):
            raise TypeError(C.not_a_coroutine(coro))
        self._coro = coro
        self._loop = loop
        self._finished = False
        self._log_exception = False  # an exception nobody has looked at yet
        self._value: Any = None
        self._error: BaseException | None = None
        self._throw_next: BaseException | None = None  # thrown in at the next step
        self._wait_kind = WAIT_NONE
        self._wait_fd = -1
        self._wait_timer: list | None = None  # the timer entry it waits on
        self._join_target: Task | None = None
        self._deadline: list | None = None  # the timer entry of a Timeout
        self._joiners: list | None = None  # (event, task) pairs waiting in Join
        self._shield_depth = 0  # shields entered: a cancel waits until they are left
        self._cancel_pending = False
        self._task_name: str | None = None  # None: named after what it runs

    @property
    def name(self) -> str:
        return self._task_name if self._task_name is not None else default_name(self._coro)

    @name.setter
    def name(self, name: str) -> None:
        self._task_name = check_name(name)

    def stack(self) -> TaskStack:
        """Where the task is suspended and what it waits on."""
        return TaskStack(coroutine_frames(self._coro), self._loop._waiting_on(self))

    def done(self) -> bool:
        return self._finished

    def result(self) -> Any:
        """The coroutine's return value; raises its exception instead if it had one."""
        if not self._finished:
            raise InvalidStateError(C.TASK_NOT_DONE)
        self._log_exception = False
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self) -> BaseException | None:
        if not self._finished:
            raise InvalidStateError(C.TASK_NOT_DONE)
        self._log_exception = False
        return self._error

    def cancel(self) -> bool:
        """Throw :class:`Cancelled` into the task at its current yield.

        Returns False if the task has already finished.
        """
        if self._finished:
            return False
        self._loop._cancel_task(self)
        return True

    def cancelled(self) -> bool:
        return self._finished and isinstance(self._error, Cancelled)

    def __repr__(self) -> str:
        state = "pending" if not self._finished else "cancelled" if self.cancelled() else "done"
        return f"<Task {self.name} {state}>"



class FailedTask(Task):
    """A task that ended with an exception; reported when collected unless retrieved.

    ``_finish`` turns a task into one when it ends with an exception to
    report, so that only those tasks have a finalizer: a task that succeeds
    is freed without one.
    """

    __slots__ = ()

    def __del__(self) -> None:
        if self._log_exception:
            self._loop.call_exception_handler({"message": C.NEVER_RETRIEVED, "exception": self._error, "task": self})


def not_an_event(task: Any, value: Any) -> TypeError:
    hint = ""
    if isinstance(value, (types.GeneratorType, types.CoroutineType)):
        hint = "; use 'yield from' to run a sub-coroutine"
    return TypeError(f"{task!r} yielded {value!r}, which is not an event (an object with _yield and _resume){hint}")


def default_exception_handler(loop: Any, context: dict) -> None:
    exc = context.get("exception")
    message = context.get("message", "Unhandled error in the event loop")
    task = context.get("task")
    if task is not None:
        message = f"{message}: {task!r}"
    logger.error(message, exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)


def is_stale(owner: Any, fd: int) -> bool:
    """Whether a waiter's socket no longer owns ``fd`` (closed behind the loop's back)."""
    return owner is not None and hasattr(owner, "fileno") and fileno_of(owner) != fd


def check_fd(fd: Any) -> int:
    if isinstance(fd, bool) or not isinstance(fd, int):
        raise TypeError(f"file descriptor must be an int, got {type(fd).__name__}")
    if fd < 0:
        raise ValueError(C.closed_fd(fd))
    return fd


def check_deadline(deadline: Any) -> float:
    # NaN never compares due: a NaN timer would stay on top of the heap forever.
    return events.check_seconds(deadline, "deadline")


def available_backends() -> tuple[str, ...]:
    """The backends this loop can run here, the default first."""
    return C.available_backends()


def make_backend(name: str | None, loop: EventLoop) -> Any:
    available = available_backends()
    if name is None:
        name = available[0]
    if name not in available:
        raise ValueError(C.unknown_backend(name))
    if name == "epoll":
        from ._io_epoll import EpollBackend

        return EpollBackend(loop)
    return SelectBackend(loop)


class EventLoop:
    """Runs generator coroutines (and ``async def`` coroutines) that yield events.

    ``backend`` is ``"epoll"`` (the default where available) or ``"select"``.
    """

    def __init__(self, backend: str | None = None, *, debug: bool = False) -> None:
        self._ready: deque[tuple[Task, Any]] = deque()
        self._debug = bool(debug)
        #: With debug, a step that holds the loop longer than this (seconds) is logged.
        self.slow_step = C.SLOW_STEP
        # fd -> (event, task, owner) of the one reader and the one writer.
        self._read_waiting: dict[int, tuple[Any, Task, Any]] = {}
        self._write_waiting: dict[int, tuple[Any, Task, Any]] = {}
        self._timers: list[list] = []  # heap of [deadline, seq, task or None, event or None]
        self._timer_seq = 0
        self._cancelled_timers = 0
        self._tasks: dict[Task, None] = {}  # live tasks, in creation order
        self._current: Task | None = None
        # The task whose event's _yield runs now, and what loop.complete gave
        # it: it resumes with that when _yield returns (see _step).
        self._yielding: Task | None = None
        self._completed_value: Any = None
        self._immediate_left = 0
        self._running = False
        self._stopping = False
        self._closed = False
        self._exception_handler: ExceptionHandler | None = None
        self._polls = 1  # completed polls, so that a _kept_at of 0 means "never kept"
        self._spurious: dict[int, int] = {}
        # The poll at which an unwaited fd's registration was last kept (see _dispatch_io).
        self._kept_at: dict[int, int] = {}
        # Another thread (or a signal) wakes a blocked poll through this pair.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_fd = self._wake_r.fileno()
        self._threadsafe: deque[Task] = deque()
        self._close_callbacks: list[Callable[[], Any]] = []
        try:
            self._io = make_backend(backend, self)
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            raise
        self.backend: str = self._io.name
        self._io.watch(self._wake_fd, READABLE, self._wake_r)

    # -- public API ---------------------------------------------------------

    def get_debug(self) -> bool:
        return self._debug

    def tasks(self) -> list[Task]:
        """The unfinished tasks, in creation order."""
        return list(self._tasks)

    def time(self) -> float:
        """The loop's clock: ``time.monotonic()``."""
        return time.monotonic()

    def call_soon(self, coro: Any) -> Task:
        """Schedule ``coro`` (a generator or coroutine) as a new task."""
        # _check_open, _new_task and _schedule_new, inlined: Spawn's hot path.
        if self._closed:
            raise RuntimeError(C.LOOP_CLOSED)
        task = Task(coro, self)
        self._tasks[task] = None
        task._wait_kind = WAIT_QUEUED
        self._ready.append((task, None))
        return task

    def call_soon_threadsafe(self, coro: Any) -> Task:
        """Like :meth:`call_soon`, from any thread; wakes a blocked poll."""
        self._check_open()
        task = self._new_task(coro)
        self._threadsafe.append(task)
        self._wake()
        return task

    def run_forever(self) -> None:
        """Run until no task remains or :meth:`stop` is called."""
        self._run(None)

    def run_until_complete(self, coro: Any) -> Any:
        """Run ``coro`` (or a Task of this loop) to its end and return its result."""
        # Refuse before scheduling: a refused coroutine must not run later.
        self._check_open()
        if self._running:
            raise RuntimeError(C.LOOP_RUNNING)
        task = coro if isinstance(coro, Task) and coro._loop is self else self.call_soon(coro)
        self._run(task)
        if not task._finished:
            raise RuntimeError(C.STOPPED_EARLY)
        return task.result()

    def stop(self) -> None:
        """Make the running loop return after its current pass.  Thread-safe."""
        self._stopping = True
        self._wake()

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close every unfinished coroutine (its ``finally`` blocks run), then the backend."""
        if self._closed:
            return
        if self._running:
            raise RuntimeError(C.CLOSE_RUNNING)
        self._closed = True
        self._adopt_threadsafe()
        for task in list(self._tasks):
            self._close_task(task)
        self._run_close_callbacks()
        self._ready.clear()
        self._clear_timers()
        self._io.close()
        self._wake_r.close()
        self._wake_w.close()

    def close_socket(self, sock: socket.socket) -> None:
        """Close ``sock`` and throw :class:`ClosedResourceError` into its waiters.

        Closing a socket directly while a task waits on it would leave that
        task waiting forever: epoll silently forgets a closed file.
        """
        fd = sock.fileno()
        if fd >= 0:
            for table in (self._read_waiting, self._write_waiting):
                waiter = table.get(fd)
                if waiter is not None:
                    self._unwait(waiter[1])
                    self._schedule_throw(waiter[1], ClosedResourceError())
            self._io.forget(fd)
        sock.close()

    def add_close_callback(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` when the loop closes, after its tasks have been closed.

        For what lives as long as the loop (a signal watch, a thread pool).
        """
        self._check_open()
        self._close_callbacks.append(callback)

    def _run_close_callbacks(self) -> None:
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:
                self.call_exception_handler({"message": C.CLOSE_CALLBACK_ERROR, "exception": exc})

    def set_exception_handler(self, handler: ExceptionHandler | None) -> None:
        """``handler(loop, context)`` receives errors nobody else will see."""
        self._exception_handler = handler

    def call_exception_handler(self, context: dict) -> None:
        handler = self._exception_handler or default_exception_handler
        try:
            handler(self, context)
        except Exception:
            logger.exception(C.HANDLER_ERROR)

    def __enter__(self) -> EventLoop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the contract with events (aioc.lowlevel) -----------------------------

    def wait_readable(self, fd: int, event: Any, task: Task, owner: Any = None) -> None:
        self._wait_io(check_fd(fd), False, event, task, owner)

    def wait_writable(self, fd: int, event: Any, task: Task, owner: Any = None) -> None:
        self._wait_io(check_fd(fd), True, event, task, owner)

    def wait_until(self, deadline: float, event: Any, task: Task) -> None:
        if type(deadline) is not float or deadline != deadline:
            deadline = check_deadline(deadline)
        self._wait_at(deadline, event, task)

    def wait_task(self, target: Any, event: Any, task: Task) -> None:
        if not isinstance(target, Task) or target._loop is not self:
            raise TypeError(C.not_a_task_of(target))
        if target is task:
            raise RuntimeError(C.JOIN_SELF)
        if target._finished:
            self._resume_event(event, task)
            return
        if target._joiners is None:
            target._joiners = []
        target._joiners.append((event, task))
        task._wait_kind, task._join_target = WAIT_JOIN, target

    def set_deadline(self, task: Task, deadline: float) -> None:
        if type(deadline) is not float or deadline != deadline:
            deadline = check_deadline(deadline)
        current = task._deadline
        if current is not None:
            if current[0] <= deadline:
                return
            self._cancel_timer(current)
        task._deadline = self._add_timer(deadline, task, None)

    def shield(self, task: Task) -> None:
        task._shield_depth += 1

    def unshield(self, task: Task) -> bool:
        if task._shield_depth <= 0:
            raise RuntimeError(C.NOT_SHIELDED)
        task._shield_depth -= 1
        due = task._shield_depth == 0 and task._cancel_pending
        if due:
            task._cancel_pending = False
        return due

    def park(self, task: Task) -> None:
        if task._loop is not self:
            raise ValueError(f"{task!r} belongs to another loop")
        task._wait_kind = WAIT_PARKED

    def reschedule(self, task: Task, value: Any = None) -> bool:
        try:
            if task._loop is self and task._wait_kind == WAIT_NONE:
                # The common case: a task in its event's _yield or _resume.
                task._wait_kind = WAIT_QUEUED
                self._ready.append((task, value))
                return True
        except AttributeError:
            raise TypeError(f"expected a Task, got {task!r}") from None
        if task._loop is not self:
            raise ValueError(f"{task!r} belongs to another loop")
        if task._wait_kind == WAIT_QUEUED:
            return False  # a cancel or a deadline woke it first
        if task._wait_kind != WAIT_PARKED:
            raise RuntimeError(C.reschedule_waiting(task))
        task._wait_kind = WAIT_QUEUED
        self._ready.append((task, value))
        return True

    def complete(self, task: Task, value: Any = None) -> None:
        if task is self._yielding and self._immediate_left > 0 and task._wait_kind == WAIT_NONE:
            self._immediate_left -= 1
            # Marked queued, so that a cancel or a deadline treats it as woken.
            task._wait_kind = WAIT_QUEUED
            self._yielding = None
            self._completed_value = value
            return
        self.reschedule(task, value)

    # -- the tutorial's names, kept for programs written against them -------

    @property
    def _num_tasks(self) -> int:
        return len(self._tasks)

    def _read_wait(self, fd: int, event: Any, task: Task) -> None:
        self.wait_readable(fd, event, task, getattr(event, "sock", None))

    def _write_wait(self, fd: int, event: Any, task: Task) -> None:
        self.wait_writable(fd, event, task, getattr(event, "sock", None))

    def _timer_wait(self, deadline: float, event: Any, task: Task) -> None:
        self.wait_until(deadline, event, task)

    # -- the kernel ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(C.LOOP_CLOSED)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed

    def _run(self, until: Task | None) -> None:
        self._check_open()
        if self._running:
            raise RuntimeError(C.LOOP_RUNNING)
        self._running = True
        self._stopping = False
        guard = InterruptGuard(self.stop, self._wake_w.fileno())
        try:
            guard.install()
            while not self._stopping:
                if until is not None:
                    if until._finished:
                        break
                elif not self._tasks and not self._threadsafe:
                    break
                self._run_once()
        finally:
            guard.uninstall()
            self._running = False
            self._stopping = False
        if guard.pending:
            raise KeyboardInterrupt

    def _run_once(self) -> None:
        ready = self._ready
        if ready:
            timeout = 0.0
        elif self._timers:
            timeout = min(max(self._timers[0][0] - time.monotonic(), 0.0), MAX_POLL_TIMEOUT)
        else:
            timeout = MAX_POLL_TIMEOUT
        # A zero-timeout poll is pointless when no task waits on I/O.
        if timeout or self._read_waiting or self._write_waiting:
            polled = self._io.poll(timeout)
            self._polls += 1
            # Waiters are looked up per fd, not before the batch: an earlier
            # handler in the same batch may have removed them.
            for fd, mask in polled:
                self._dispatch_io(fd, mask, timeout > 0)
        if self._threadsafe:
            self._adopt_threadsafe()
        if self._timers:
            self._fire_timers()
        # A snapshot: what the steps schedule runs next pass, after a poll.
        step = self._step_timed if self._debug else self._step
        for _ in range(len(ready)):
            task, value = ready.popleft()
            step(task, value)

    def _new_task(self, coro: Any) -> Task:
        return Task(coro, self)

    def _schedule_new(self, task: Task) -> None:
        self._tasks[task] = None
        task._wait_kind = WAIT_QUEUED
        self._ready.append((task, None))

    def _push(self, task: Task, value: Any) -> None:
        task._wait_kind = WAIT_QUEUED
        self._ready.append((task, value))

    def _adopt_threadsafe(self) -> None:
        while self._threadsafe:
            self._schedule_new(self._threadsafe.popleft())

    def _step_timed(self, task: Task, value: Any) -> None:
        """A debug loop's step: reports holding the loop longer than ``slow_step``."""
        resumed_at = where(task._coro)
        start = time.perf_counter()
        try:
            self._step(task, value)
        finally:
            held = time.perf_counter() - start
            if held > self.slow_step:
                logger.warning(C.SLOW_STEP_REPORT, task.name, held, resumed_at)

    def _step(self, task: Task, value: Any) -> None:
        # One step may resume the task several times: each time its event
        # completes at once (loop.complete), up to IMMEDIATE_RESUMPTIONS.
        self._immediate_left = IMMEDIATE_RESUMPTIONS
        while self._resume_task(task, value):
            value, self._completed_value = self._completed_value, None

    def _resume_task(self, task: Task, value: Any) -> bool:
        """Send ``value`` (or the pending throw) into ``task``; True if it completed at once."""
        task._wait_kind = WAIT_NONE
        if task._finished:
            return False  # a stale entry: the task was ended while it sat in the queue
        if task._deadline is not None:
            self._cancel_timer(task._deadline)
            task._deadline = None
        self._current = task
        try:
            error = task._throw_next
            if error is None:
                event = task._coro.send(value)
            else:
                task._throw_next = None
                event = task._coro.throw(error)
        except StopIteration as stop:
            self._current = None
            self._finish(task, stop.value, None)
        except (KeyboardInterrupt, SystemExit) as exc:
            self._current = None
            self._finish(task, None, exc)
            task._log_exception = False  # it propagates to run_forever's caller
            raise
        except BaseException as exc:
            self._current = None
            self._finish(task, None, exc)
        else:
            self._current = None
            if task._throw_next is not None:
                self._push(task, None)  # cancelled while it ran
                return False
            self._yielding = task
            try:
                self._yield_event(event, task)
            finally:
                completed_at_once = self._yielding is None
                self._yielding = None
            return completed_at_once
        return False

    def _yield_event(self, event: Any, task: Task) -> None:
        try:
            method = event._yield
        except AttributeError:
            self._schedule_throw(task, not_an_event(task, event))
            return
        try:
            method(self, task)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._unwait(task)
            self._schedule_throw(task, exc)

    def _resume_event(self, event: Any, task: Task) -> bool:
        """Run ``event._resume``; True if the wake-up turned out to be spurious."""
        try:
            event._resume(self, task)
        except BlockingIOError:
            self._yield_event(event, task)  # readiness was only a hint
            return True
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._schedule_throw(task, exc)
        return False

    def _schedule_throw(self, task: Task, exc: BaseException) -> None:
        task._throw_next = exc
        if task._wait_kind != WAIT_QUEUED:  # queued already: the throw replaces its value
            self._push(task, None)

    def _finish(self, task: Task, value: Any, error: BaseException | None) -> None:
        task._finished = True
        task._value = value
        task._error = error
        task._log_exception = error is not None and not isinstance(error, Cancelled)
        if task._log_exception:
            task.__class__ = FailedTask
        del self._tasks[task]
        joiners, task._joiners = task._joiners, None
        for event, joiner in joiners or ():
            joiner._wait_kind, joiner._join_target = WAIT_NONE, None
            self._resume_event(event, joiner)

    def _cancel_task(self, task: Task) -> None:
        if task._shield_depth:
            task._cancel_pending = True  # thrown in when the last shield is left
            return
        task._throw_next = Cancelled()
        if task is self._current:
            return  # thrown in when it next yields
        if task._wait_kind > WAIT_NONE:
            self._unwait(task)
            self._push(task, None)
        # Otherwise it sits in the ready queue (or is about to be adopted from
        # another thread), where the pending throw replaces its value.

    def _close_task(self, task: Task) -> None:
        self._unwait(task)
        try:
            task._coro.close()
        except BaseException as exc:  # e.g. a finally block that yields
            self.call_exception_handler({"message": C.CLOSE_ERROR, "exception": exc, "task": task})
        if not task._finished:
            self._finish(task, None, Cancelled())

    # -- waiting and waking ---------------------------------------------------

    def _wait_io(self, fd: int, writing: bool, event: Any, task: Task, owner: Any) -> None:
        table, other = (self._write_waiting, self._read_waiting) if writing else (self._read_waiting, self._write_waiting)
        waiter = table.get(fd)
        if waiter is not None:
            if not is_stale(waiter[2], fd):
                raise ResourceBusy(C.busy_fd(fd))
            # The socket it waited on was closed and its number reused.
            self._unwait(waiter[1])
            self._schedule_throw(waiter[1], ClosedResourceError())
        mask = READABLE | WRITABLE if fd in other else WRITABLE if writing else READABLE
        self._io.watch(fd, mask, owner)
        table[fd] = (event, task, owner)
        task._wait_kind, task._wait_fd = (WAIT_WRITE if writing else WAIT_READ), fd

    def _waiting_on(self, task: Task) -> Any:
        kind = task._wait_kind
        if kind == WAIT_READ:
            return self._read_waiting[task._wait_fd][0]
        if kind == WAIT_WRITE:
            return self._write_waiting[task._wait_fd][0]
        if kind == WAIT_TIMER:
            return task._wait_timer[3] if task._wait_timer else None
        if kind == WAIT_JOIN:
            return task._join_target
        if kind == WAIT_PARKED:
            return "parked"
        return None

    def _wait_at(self, deadline: float, event: Any, task: Task) -> None:
        task._wait_timer = self._add_timer(deadline, task, event)
        task._wait_kind = WAIT_TIMER

    def _unwait(self, task: Task) -> None:
        """Remove ``task``'s registration, whatever it waits on (a queued task stays queued)."""
        kind = task._wait_kind
        if kind <= WAIT_NONE:
            return
        task._wait_kind = WAIT_NONE
        if kind == WAIT_READ:
            del self._read_waiting[task._wait_fd]
        elif kind == WAIT_WRITE:
            del self._write_waiting[task._wait_fd]
        elif kind == WAIT_TIMER:
            self._cancel_timer(task._wait_timer)
            task._wait_timer = None
        elif kind == WAIT_JOIN:
            target, task._join_target = task._join_target, None
            target._joiners = [joiner for joiner in target._joiners if joiner[1] is not task]

    def _dispatch_io(self, fd: int, mask: int, may_block: bool) -> None:
        """Wake the waiters of a ready fd; unregister it if nobody waits.

        While tasks are ready, an fd with no waiter usually belongs to a task
        that is about to wait on it again (a server that has just replied),
        so its registration is kept: level-triggered, it reports again.  Only
        a poll that could block drops it, so that it cannot spin the loop;
        and so does a second poll in a row that finds it unwaited, so that
        idle fds (a writable socket nobody writes to) are not reported on
        every pass while some task keeps the ready queue busy.
        """
        if fd == self._wake_fd:
            self._drain_wake()
            return
        idle = 0
        if mask & (READABLE | FAULT):
            if fd in self._read_waiting:
                self._wake_io(fd, False)
            else:
                idle |= READABLE
        if mask & (WRITABLE | FAULT):
            if fd in self._write_waiting:
                self._wake_io(fd, True)
            else:
                idle |= WRITABLE
        if mask & FAULT and fd not in self._read_waiting and fd not in self._write_waiting:
            idle = READABLE | WRITABLE  # hang-ups are reported unasked: unregister entirely
        if idle:
            if may_block or self._kept_at.get(fd, 0) == self._polls - 1:
                self._kept_at.pop(fd, None)
                self._io.unwatch(fd, idle)
            else:
                self._kept_at[fd] = self._polls

    def _wake_io(self, fd: int, writer: bool) -> None:
        event, task, _ = (self._write_waiting if writer else self._read_waiting).pop(fd)
        task._wait_kind = WAIT_NONE
        if self._resume_event(event, task):
            count = self._spurious.get(fd, 0) + 1
            if count >= ZOMBIE_WAKEUPS:
                # A closed fd's file, kept open by a dup, still reports under
                # this reused number: only a fresh epoll instance forgets it.
                self._io.rebuild()
                count = 0
            self._spurious[fd] = count
        elif self._spurious:
            self._spurious.pop(fd, None)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    # -- timers ----------------------------------------------------------------

    def _add_timer(self, deadline: float, task: Task, event: Any) -> list:
        # The sequence number breaks ties, so tasks are never compared.
        self._timer_seq += 1
        entry = [deadline, self._timer_seq, task, event]
        heapq.heappush(self._timers, entry)
        return entry

    def _cancel_timer(self, entry: list) -> None:
        entry[2] = entry[3] = None  # removed lazily when it reaches the top
        self._cancelled_timers += 1
        if self._cancelled_timers > TIMER_PRUNE_MIN and self._cancelled_timers * 2 > len(self._timers):
            self._prune_timers()

    def _prune_timers(self) -> None:
        self._timers[:] = [entry for entry in self._timers if entry[2] is not None]
        heapq.heapify(self._timers)
        self._cancelled_timers = 0

    def _clear_timers(self) -> None:
        self._timers.clear()
        self._cancelled_timers = 0

    def _fire_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, task, event = heapq.heappop(timers)
            if task is None:
                self._cancelled_timers -= 1
            elif event is None:
                self._expire(task)
            else:
                task._wait_kind, task._wait_timer = WAIT_NONE, None
                self._resume_event(event, task)

    def _expire(self, task: Task) -> None:
        task._deadline = None
        if task._wait_kind > WAIT_NONE:  # still blocked; otherwise it already got its value
            self._unwait(task)
            self._schedule_throw(task, TimeoutError())


def run(coro: Any, *, backend: str | None = None, debug: bool = False) -> Any:
    """Run ``coro`` on a new loop, close the loop, and return the result."""
    with EventLoop(backend, debug=debug) as loop:
        return loop.run_until_complete(coro)
