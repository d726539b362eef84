"""The reference event loop in pure Python: the readable specification.

``_loop_c.pyx`` implements every rule here in C; the test suite runs against
both.  The loop keeps a ready queue of ``(task, value)`` pairs, read and write
waiting maps from fd to ``(event, task)``, a timer heap and a poller.  Each
pass polls I/O (without blocking while work is ready), fires due timers, and
then steps a snapshot of the ready queue, so a task that keeps rescheduling
itself cannot starve sockets or timers.
"""

from __future__ import annotations

import errno
import heapq
import logging
import select
import signal
import socket
import threading
import time
import types
import weakref
from collections import deque
from typing import Any, Callable

# Re-exported with the loop: each implementation module offers the full
# public namespace, so that tests and the chooser can take either whole.
from .events import (
    DEFAULT_READ_SIZE,
    AcceptEvent,
    Cancelled,
    ClosedResourceError,
    ConnectEvent,
    Event,
    InvalidStateError,
    Join,
    ReadEvent,
    ResourceBusy,
    SendAll,
    Sleep,
    Spawn,
    Timeout,
    WriteEvent,
    sendall,
    timeout_after,
)

__all__ = [
    "EventLoop", "Task", "run",
    "Event", "ReadEvent", "WriteEvent", "SendAll", "sendall", "AcceptEvent", "ConnectEvent",
    "Sleep", "Spawn", "Join", "Timeout", "timeout_after",
    "Cancelled", "ResourceBusy", "ClosedResourceError", "InvalidStateError", "DEFAULT_READ_SIZE",
]

logger = logging.getLogger("aioc")

ExceptionHandler = Callable[["EventLoop", dict], None]

#: Longest single poll; a bound against clock or arithmetic surprises.
MAX_POLL_TIMEOUT = 60.0
#: select() cannot watch descriptors at or above FD_SETSIZE.
SELECT_FD_LIMIT = 1024
#: Spurious wake-ups in a row on one fd that mean a closed fd's file is still
#: registered (kept open by a dup) and reporting under a reused number.
ZOMBIE_WAKEUPS = 3
#: Cancelled timers are pruned once they are this many and outnumber live ones.
TIMER_PRUNE_MIN = 64

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_FAULT = select.EPOLLERR | select.EPOLLHUP  # reported unasked: wakes reader and writer

# What a blocked task waits on (Task._wait_kind); its key is the fd, the
# timer entry or the joined task.
_READ, _WRITE, _TIMER, _JOIN = 1, 2, 3, 4


class Task:
    """A coroutine run by the loop."""

    __slots__ = (
        "_coro", "_loop", "_done", "_result", "_exception", "_log_exception",
        "_throw", "_wait_kind", "_wait_key", "_deadline", "_joiners", "__weakref__",
    )

    def __init__(self, coro: Any, loop: EventLoop) -> None:
        if not (hasattr(coro, "send") and hasattr(coro, "throw")):
            raise TypeError(f"expected a generator or coroutine, got {coro!r}")
        self._coro = coro
        self._loop = loop
        self._done = False
        self._result: Any = None
        self._exception: BaseException | None = None
        self._log_exception = False  # an exception nobody has looked at yet
        self._throw: BaseException | None = None  # thrown in at the next step
        self._wait_kind = 0
        self._wait_key: Any = None
        self._deadline: list | None = None  # the timer entry of a Timeout
        self._joiners: list | None = None  # (event, task) pairs waiting in Join

    def done(self) -> bool:
        return self._done

    def result(self) -> Any:
        """The coroutine's return value; raises its exception instead if it had one."""
        if not self._done:
            raise InvalidStateError("task is not done")
        self._log_exception = False
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        if not self._done:
            raise InvalidStateError("task is not done")
        self._log_exception = False
        return self._exception

    def cancel(self) -> bool:
        """Throw :class:`Cancelled` into the task at its current yield.

        Returns False if the task has already finished.
        """
        if self._done:
            return False
        self._loop._cancel(self)
        return True

    def cancelled(self) -> bool:
        return self._done and isinstance(self._exception, Cancelled)

    def __repr__(self) -> str:
        name = getattr(self._coro, "__qualname__", type(self._coro).__name__)
        state = "pending" if not self._done else "cancelled" if self.cancelled() else "done"
        return f"<Task {name} {state}>"

    def __del__(self) -> None:
        # getattr: __init__ may have raised (not a coroutine) before setting it.
        if getattr(self, "_log_exception", False):
            self._loop.call_exception_handler(
                {"message": "Task exception was never retrieved", "exception": self._exception, "task": self}
            )


class _EpollPoller:
    """Level-triggered epoll with persistent registrations.

    An fd stays registered while the same socket object waits on it with the
    same interest, which saves an ``epoll_ctl`` per wait.  A registration is
    removed lazily, when an event arrives that no task waits for.
    """

    name = "epoll"

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._masks: dict[int, int] = {}
        # The socket each registration was made for.  epoll tracks open files,
        # not numbers: another socket on the same fd number needs a new one.
        self._owners: dict[int, weakref.ref | None] = {}

    def watch(self, fd: int, mask: int, owner: Any) -> None:
        """Make sure ``fd`` reports ``mask`` for ``owner``'s open file."""
        registered = self._masks.get(fd, 0)
        ref = self._owners.get(fd)
        old_owner = ref() if ref is not None else None
        if old_owner is not None and old_owner is owner and registered & mask == mask:
            return
        # A different owner: the old registration may have died with its file.
        same_file = old_owner is not None and _fileno(old_owner) == fd
        if registered and same_file:
            mask |= registered
            try:
                self._epoll.modify(fd, mask)
            except FileNotFoundError:
                self._epoll.register(fd, mask)
        else:
            try:
                self._epoll.register(fd, mask)
            except FileExistsError:
                self._epoll.modify(fd, mask)
        self._masks[fd] = mask
        self._owners[fd] = _weak(owner)

    def unwatch(self, fd: int, mask: int) -> None:
        """Stop reporting ``mask`` on ``fd``: no task waits for it."""
        remaining = self._masks.get(fd, 0) & ~mask
        try:
            if remaining:
                self._epoll.modify(fd, remaining)
                self._masks[fd] = remaining
            else:
                self._masks.pop(fd, None)
                self._owners.pop(fd, None)
                self._epoll.unregister(fd)
        except OSError:
            # The fd was closed (or reused) while a dup keeps its old file
            # registered: epoll can no longer name that registration and
            # would report it forever.  Start from a fresh epoll instance.
            self.rebuild()

    def forget(self, fd: int) -> None:
        if self._masks.pop(fd, None) is not None:
            self._owners.pop(fd, None)
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass

    def rebuild(self) -> None:
        """Re-register every live registration on a new epoll instance."""
        old = self._epoll
        self._epoll = select.epoll()
        old.close()
        for fd, mask in list(self._masks.items()):
            try:
                self._epoll.register(fd, mask)
            except OSError:
                del self._masks[fd]
                self._owners.pop(fd, None)

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        return self._epoll.poll(timeout)

    def close(self) -> None:
        self._epoll.close()


class _SelectPoller:
    """select(): portable, no state between polls, limited to fds below 1024."""

    name = "select"

    def __init__(self, loop: EventLoop) -> None:
        if loop._wake_fd >= SELECT_FD_LIMIT:
            raise ValueError(f"file descriptor {loop._wake_fd} is too large for the select backend")
        self._readers = loop._read_waiting
        self._writers = loop._write_waiting
        self._wake_fd = loop._wake_fd

    def watch(self, fd: int, mask: int, owner: Any) -> None:
        if fd >= SELECT_FD_LIMIT:
            raise ValueError(
                f"file descriptor {fd} is too large for the select backend "
                f"(limit {SELECT_FD_LIMIT}); use backend='epoll'"
            )

    def unwatch(self, fd: int, mask: int) -> None:
        pass

    def forget(self, fd: int) -> None:
        pass

    def rebuild(self) -> None:
        pass

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        readers = [self._wake_fd, *self._readers]
        try:
            readable, writable, _ = select.select(readers, self._writers, (), timeout)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            # Some waited-on fd was closed: report it as faulty, so that its
            # waiters' own I/O raises the real error.
            return [(fd, _FAULT) for fd in sorted({*readers, *self._writers}) if not _is_open(fd)]
        events = dict.fromkeys(readable, _IN)
        for fd in writable:
            events[fd] = events.get(fd, 0) | _OUT
        return sorted(events.items())  # ascending fd order, on both loops

    def close(self) -> None:
        pass


def _fileno(sock: Any) -> int:
    try:
        return sock.fileno()
    except Exception:
        return -1


def _weak(owner: Any) -> weakref.ref | None:
    try:
        return weakref.ref(owner)
    except TypeError:
        return None


def _is_open(fd: int) -> bool:
    try:
        select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return True


def _not_an_event(task: Task, value: Any) -> TypeError:
    hint = ""
    if isinstance(value, (types.GeneratorType, types.CoroutineType)):
        hint = "; use 'yield from' to run a sub-coroutine"
    return TypeError(f"{task!r} yielded {value!r}, which is not an event (an object with _yield and _resume){hint}")


def _default_exception_handler(loop: EventLoop, context: dict) -> None:
    exc = context.get("exception")
    message = context.get("message", "Unhandled error in the event loop")
    task = context.get("task")
    if task is not None:
        message = f"{message}: {task!r}"
    logger.error(message, exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)


class EventLoop:
    """Runs generator coroutines (and ``async def`` coroutines) that yield events.

    ``backend`` is ``"epoll"`` (the default where available) or ``"select"``.
    """

    ACCEPT_BACKOFF_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
    #: Seconds an accept waits before retrying after running out of fds or memory.
    ACCEPT_BACKOFF = 0.1

    def __init__(self, backend: str | None = None) -> None:
        if backend is None:
            backend = "epoll" if hasattr(select, "epoll") else "select"
        if backend not in ("epoll", "select") or (backend == "epoll" and not hasattr(select, "epoll")):
            raise ValueError(f"unknown or unavailable backend {backend!r}; choose 'epoll' or 'select'")
        self._ready: deque[tuple[Task, Any]] = deque()
        self._read_waiting: dict[int, tuple[Any, Task]] = {}
        self._write_waiting: dict[int, tuple[Any, Task]] = {}
        self._timers: list[list] = []  # heap of [deadline, seq, task or None, event or None]
        self._timer_seq = 0
        self._cancelled_timers = 0
        self._tasks: dict[Task, None] = {}  # live tasks, in creation order
        self._current: Task | None = None
        self._running = False
        self._stopping = False
        self._closed = False
        self._exception_handler: ExceptionHandler | None = None
        self._accept_backoff_logged = False
        self._spurious: dict[int, int] = {}
        # Unwaited fds whose registration the last dispatch kept (see _dispatch_io).
        self._kept_idle: set[int] = set()
        # Another thread (or a signal) wakes a blocked poll through this pair.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_fd = self._wake_r.fileno()
        self._threadsafe: deque[Task] = deque()
        self.backend = backend
        self._poller: _EpollPoller | _SelectPoller
        if backend == "epoll":
            self._poller = _EpollPoller()
            self._poller.watch(self._wake_fd, _IN, self._wake_r)
        else:
            self._poller = _SelectPoller(self)

    # -- public API ---------------------------------------------------------

    @property
    def _num_tasks(self) -> int:
        return len(self._tasks)

    def time(self) -> float:
        """The loop's clock: ``time.monotonic()``."""
        return time.monotonic()

    def call_soon(self, coro: Any) -> Task:
        """Schedule ``coro`` (a generator or coroutine) as a new task."""
        self._check_open()
        task = Task(coro, self)
        self._tasks[task] = None
        self._ready.append((task, None))
        return task

    def call_soon_threadsafe(self, coro: Any) -> Task:
        """Like :meth:`call_soon`, from any thread; wakes a blocked poll."""
        self._check_open()
        task = Task(coro, self)
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
            raise RuntimeError("the event loop is already running")
        task = coro if isinstance(coro, Task) and coro._loop is self else self.call_soon(coro)
        self._run(task)
        if not task._done:
            raise RuntimeError("the loop stopped before the task finished")
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
        """Close every unfinished coroutine (its ``finally`` blocks run), then the poller."""
        if self._closed:
            return
        if self._running:
            raise RuntimeError("cannot close a running loop")
        self._closed = True
        self._tasks.update(dict.fromkeys(self._threadsafe))
        self._threadsafe.clear()
        for task in list(self._tasks):
            self._close_task(task)
        self._ready.clear()
        self._timers.clear()
        self._poller.close()
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
            self._poller.forget(fd)
        sock.close()

    def set_exception_handler(self, handler: ExceptionHandler | None) -> None:
        """``handler(loop, context)`` receives errors nobody else will see."""
        self._exception_handler = handler

    def call_exception_handler(self, context: dict) -> None:
        handler = self._exception_handler or _default_exception_handler
        try:
            handler(self, context)
        except Exception:
            logger.exception("Exception in the exception handler")

    def __enter__(self) -> EventLoop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- protected API used by events ----------------------------------------

    def _read_wait(self, fd: int, event: Any, task: Task) -> None:
        self._io_wait(self._read_waiting, _IN, _READ, fd, event, task)

    def _write_wait(self, fd: int, event: Any, task: Task) -> None:
        self._io_wait(self._write_waiting, _OUT, _WRITE, fd, event, task)

    def _timer_wait(self, deadline: float, event: Any, task: Task) -> None:
        """Call ``event._resume(loop, task)`` at ``deadline`` (monotonic seconds)."""
        task._wait_kind, task._wait_key = _TIMER, self._add_timer(deadline, task, event)

    def _join_wait(self, target: Task, event: Any, task: Task) -> None:
        """Call ``event._resume(loop, task)`` when ``target`` finishes."""
        if not isinstance(target, Task) or target._loop is not self:
            raise TypeError(f"Join() needs a task of this loop, got {target!r}")
        if target is task:
            raise RuntimeError("a task cannot join itself")
        if target._done:
            self._resume_event(event, task)
            return
        if target._joiners is None:
            target._joiners = []
        target._joiners.append((event, task))
        task._wait_kind, task._wait_key = _JOIN, target

    def _set_deadline(self, task: Task, deadline: float) -> None:
        """Throw TimeoutError into ``task`` if it is still blocked at ``deadline``."""
        current = task._deadline
        if current is not None:
            if current[0] <= deadline:
                return
            self._cancel_timer(current)
        task._deadline = self._add_timer(deadline, task, None)

    def _accept_backoff(self, event: Any, task: Task, exc: OSError) -> None:
        if not self._accept_backoff_logged:
            self._accept_backoff_logged = True
            logger.warning("accept() failed (%s); retrying every %.1f s", exc, self.ACCEPT_BACKOFF)
        self._timer_wait(self.time() + self.ACCEPT_BACKOFF, event, task)

    # -- the kernel ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the event loop is closed")

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed

    def _run(self, until: Task | None) -> None:
        self._check_open()
        if self._running:
            raise RuntimeError("the event loop is already running")
        self._running = True
        self._stopping = False
        old_wakeup_fd = self._install_signal_wakeup()
        try:
            while not self._stopping:
                if until is not None:
                    if until._done:
                        break
                elif not self._tasks and not self._threadsafe:
                    break
                self._run_once()
        finally:
            if old_wakeup_fd is not None:
                signal.set_wakeup_fd(old_wakeup_fd)
            self._running = False
            self._stopping = False

    def _install_signal_wakeup(self) -> int | None:
        # A signal that lands just before the poll blocks would otherwise be
        # noticed only when the poll returns on its own.
        if threading.current_thread() is not threading.main_thread():
            return None
        return signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)

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
            self._dispatch_io(self._poller.poll(timeout), timeout > 0)
        if self._threadsafe:
            self._adopt_threadsafe()
        if self._timers:
            self._fire_timers()
        for _ in range(len(ready)):
            task, value = ready.popleft()
            self._step(task, value)

    def _step(self, task: Task, value: Any) -> None:
        if task._done:
            return  # a stale entry: the task was ended while it sat in the queue
        if task._deadline is not None:
            self._cancel_timer(task._deadline)
            task._deadline = None
        self._current = task
        try:
            error = task._throw
            if error is None:
                event = task._coro.send(value)
            else:
                task._throw = None
                event = task._coro.throw(error)
        except StopIteration as stop:
            self._finish(task, stop.value, None)
        except (KeyboardInterrupt, SystemExit) as exc:
            self._finish(task, None, exc)
            task._log_exception = False  # it propagates to run_forever's caller
            raise
        except BaseException as exc:
            self._finish(task, None, exc)
        else:
            if task._throw is not None:
                self._ready.append((task, None))  # cancelled while it ran
            elif hasattr(event, "_yield"):
                self._yield_event(event, task)
            else:
                self._schedule_throw(task, _not_an_event(task, event))
        finally:
            self._current = None

    def _yield_event(self, event: Any, task: Task) -> None:
        try:
            event._yield(self, task)
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
        task._throw = exc
        self._ready.append((task, None))

    def _finish(self, task: Task, result: Any, exc: BaseException | None) -> None:
        task._done = True
        task._result = result
        task._exception = exc
        task._log_exception = exc is not None and not isinstance(exc, Cancelled)
        del self._tasks[task]
        joiners, task._joiners = task._joiners, None
        for event, joiner in joiners or ():
            joiner._wait_kind = 0
            self._resume_event(event, joiner)

    def _cancel(self, task: Task) -> None:
        task._throw = Cancelled()
        if task is self._current:
            return  # thrown in when it next yields
        if task._wait_kind:
            self._unwait(task)
            self._ready.append((task, None))
        # Otherwise it already sits in the ready queue, where the pending
        # throw replaces the value it would have received.

    def _close_task(self, task: Task) -> None:
        self._unwait(task)
        try:
            task._coro.close()
        except BaseException as exc:  # e.g. a finally block that yields
            self.call_exception_handler(
                {"message": "Error while closing a task", "exception": exc, "task": task}
            )
        if not task._done:
            self._finish(task, None, Cancelled())

    # -- waiting and waking ---------------------------------------------------

    def _io_wait(self, table: dict, flag: int, kind: int, fd: int, event: Any, task: Task) -> None:
        if not isinstance(fd, int):
            raise TypeError(f"file descriptor must be an int, got {type(fd).__name__}")
        if fd < 0:
            raise ValueError(f"cannot wait on file descriptor {fd}: the socket is closed")
        waiter = table.get(fd)
        if waiter is not None:
            if not _stale(waiter[0], fd):
                raise ResourceBusy(f"another task already waits on file descriptor {fd}")
            # The socket it waited on was closed and its number reused.
            self._unwait(waiter[1])
            self._schedule_throw(waiter[1], ClosedResourceError())
        other = self._write_waiting if kind == _READ else self._read_waiting
        mask = _IN | _OUT if fd in other else flag
        self._poller.watch(fd, mask, getattr(event, "sock", None))
        table[fd] = (event, task)
        task._wait_kind, task._wait_key = kind, fd

    def _unwait(self, task: Task) -> None:
        """Remove ``task``'s registration, whatever it waits on."""
        kind, key = task._wait_kind, task._wait_key
        task._wait_kind, task._wait_key = 0, None
        if kind == _READ:
            del self._read_waiting[key]
        elif kind == _WRITE:
            del self._write_waiting[key]
        elif kind == _TIMER:
            self._cancel_timer(key)
        elif kind == _JOIN:
            key._joiners = [joiner for joiner in key._joiners if joiner[1] is not task]

    def _dispatch_io(self, events: list[tuple[int, int]], may_block: bool) -> None:
        """Wake the waiters of ready fds; unregister unwaited fds if ``may_block``.

        While tasks are ready, an fd with no waiter usually belongs to a task
        that is about to wait on it again (a server that has just replied),
        so its registration is kept: level-triggered, it reports again.  Only
        a poll that could block drops it, so that it cannot spin the loop;
        and so does a second dispatch in a row that finds it unwaited, so that
        idle fds (a writable socket nobody writes to) are not reported on
        every pass while some task keeps the ready queue busy.
        """
        kept_before, kept = self._kept_idle, set()
        # Waiters are looked up here, not before the batch: an earlier handler
        # in the same batch may have removed them.
        for fd, mask in events:
            if fd == self._wake_fd:
                self._drain_wake()
                continue
            idle = 0
            if mask & (_IN | _FAULT):
                waiter = self._read_waiting.pop(fd, None)
                if waiter is None:
                    idle |= _IN
                else:
                    self._wake_io(fd, *waiter)
            if mask & (_OUT | _FAULT):
                waiter = self._write_waiting.pop(fd, None)
                if waiter is None:
                    idle |= _OUT
                else:
                    self._wake_io(fd, *waiter)
            if mask & _FAULT and fd not in self._read_waiting and fd not in self._write_waiting:
                idle = _IN | _OUT  # hang-ups are reported unasked: unregister entirely
            if idle:
                if may_block or fd in kept_before:
                    self._poller.unwatch(fd, idle)
                else:
                    kept.add(fd)
        self._kept_idle = kept

    def _wake_io(self, fd: int, event: Any, task: Task) -> None:
        task._wait_kind, task._wait_key = 0, None
        if self._resume_event(event, task):
            count = self._spurious.get(fd, 0) + 1
            if count >= ZOMBIE_WAKEUPS:
                self._poller.rebuild()
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

    def _adopt_threadsafe(self) -> None:
        while self._threadsafe:
            task = self._threadsafe.popleft()
            self._tasks[task] = None
            self._ready.append((task, None))

    # -- timers ----------------------------------------------------------------

    def _add_timer(self, deadline: float, task: Task, event: Any) -> list:
        # The sequence number breaks ties, so tasks are never compared.
        self._timer_seq += 1
        entry = [deadline, self._timer_seq, task, event]
        heapq.heappush(self._timers, entry)
        return entry

    def _cancel_timer(self, entry: list) -> None:
        entry[2] = None  # removed lazily when it reaches the top
        self._cancelled_timers += 1
        timers = self._timers
        if self._cancelled_timers > TIMER_PRUNE_MIN and self._cancelled_timers * 2 > len(timers):
            timers[:] = [e for e in timers if e[2] is not None]
            heapq.heapify(timers)
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
                task._wait_kind, task._wait_key = 0, None
                self._resume_event(event, task)

    def _expire(self, task: Task) -> None:
        task._deadline = None
        if task._wait_kind:  # still blocked; otherwise it already got its value
            self._unwait(task)
            self._schedule_throw(task, TimeoutError())


def _stale(event: Any, fd: int) -> bool:
    """Whether a waiter's socket no longer owns ``fd`` (closed behind the loop's back)."""
    sock = getattr(event, "sock", None)
    return sock is not None and hasattr(sock, "fileno") and _fileno(sock) != fd


def run(coro: Any, *, backend: str | None = None) -> Any:
    """Run ``coro`` on a new loop, close the loop, and return the result."""
    with EventLoop(backend) as loop:
        return loop.run_until_complete(coro)
