"""Blocking calls in worker threads: ``run_in_thread`` and ``getaddrinfo``.

``result = yield from run_in_thread(fn, *args)`` (or ``await`` in an
``async def``) runs ``fn(*args)`` in a worker thread and resumes the task with
what it returns, or raises what it raised, with its traceback.  The loop keeps
running other tasks meanwhile.  Keyword arguments go through
``functools.partial``.

Each loop has its own bounded pool of worker threads, created on the first
call and shut down when the loop closes.  It holds at most
``DEFAULT_THREAD_POOL_SIZE`` threads (``min(32, os.cpu_count() + 4)``, as in
``concurrent.futures``) unless ``set_thread_pool_size(loop, n)`` says
otherwise; calls beyond that wait in a queue, in the order they were made.
Threads are started only when a call finds no idle one, and then stay until
the loop closes.

Cancelling a task (or a deadline that expires) while its call runs abandons
the call: a thread cannot be stopped from outside, so the call runs to
completion in its worker and its result (or exception) is dropped.  Calls
still queued when the loop closes never start.

Closing the loop shuts the pool down: idle workers exit, and ``close`` waits
for them (at most ``SHUTDOWN_TIMEOUT`` seconds in all).  It does not wait for
a worker still inside a call: that one finishes the call, drops its outcome
and exits.  Workers are daemon threads, so a call that never returns (a hung
resolver, say) cannot keep the interpreter from exiting either.

Results come back through ``loop.call_soon_threadsafe``, the loop's only
thread-safe way in: a worker never touches the loop's structures.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, TypeVar

__all__ = [
    "run_in_thread",
    "getaddrinfo",
    "set_thread_pool_size",
    "get_thread_pool_size",
    "DEFAULT_THREAD_POOL_SIZE",
]

logger = logging.getLogger("aioc")

T = TypeVar("T")

#: Worker threads per loop unless ``set_thread_pool_size`` says otherwise.
DEFAULT_THREAD_POOL_SIZE = min(32, (os.cpu_count() or 1) + 4)

#: Seconds that closing a loop waits, in all, for its idle workers to exit.
SHUTDOWN_TIMEOUT = 1.0

POOL_CLOSED = "the loop's thread pool is shut down (the loop is closed)"


class _Call:
    """One call: the event its task parks on, and the job a worker runs.

    The task is rescheduled with the ``_Call`` itself; ``run_in_thread``
    then returns ``value`` or raises ``error``.
    """

    __slots__ = ("fn", "args", "task", "value", "error", "abandoned")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] | None = args
        self.task: Any = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False  # the waiting task was cancelled: drop the outcome

    def _yield(self, loop: Any, task: Any) -> None:
        self.task = task
        _pool_for(loop, create=True).submit(self)  # type: ignore[union-attr]
        loop.park(task)

    def _resume(self, loop: Any, task: Any) -> None:
        raise NotImplementedError  # the pool reschedules the task itself

    def run(self) -> None:
        """In a worker: make the call and keep its outcome."""
        fn, args = self.fn, self.args
        self.fn = self.args = None
        try:
            self.value = fn(*args)  # type: ignore[misc]
        except BaseException as exc:  # even SystemExit: it belongs to the caller
            self.error = exc


class _Pool:
    """The worker threads of one loop.

    ``idle`` counts the workers that will take a queued job without a new
    thread being started: those waiting for one and those just started.
    A job that finds more queued jobs than that starts a thread, up to
    ``size``.  Finished calls are handed to the loop in batches: the first
    one to finish queues a delivery task, which takes every call finished by
    the time it runs.
    """

    def __init__(self, loop: Any, size: int) -> None:
        self.loop = loop
        self.size = size
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.jobs: deque[_Call] = deque()
        self.threads: set[threading.Thread] = set()
        self.busy: set[threading.Thread] = set()  # inside a call
        self.idle = 0
        self.started = 0
        self.closed = False
        self.finished: list[_Call] = []
        self.delivering = False  # a delivery task is queued on the loop

    # -- on the loop's thread ---------------------------------------------------

    def submit(self, call: _Call) -> None:
        with self.lock:
            if self.closed:
                raise RuntimeError(POOL_CLOSED)
            self.jobs.append(call)
            if len(self.jobs) > self.idle and len(self.threads) < self.size:
                try:
                    self._start_worker()
                except RuntimeError:  # "can't start new thread"
                    if not self.threads:
                        self.jobs.pop()
                        raise
                    # A running worker will take the job when it is free.
            self.cond.notify()

    def resize(self, size: int) -> None:
        with self.lock:
            self.size = size
            # Surplus idle workers exit; jobs that were waiting for a free
            # worker get new ones.
            while len(self.jobs) > self.idle and len(self.threads) < self.size:
                self._start_worker()
            self.cond.notify_all()

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        with self.lock:
            self.closed = True
            self.jobs.clear()  # their tasks were closed with the loop
            self.finished.clear()
            idle = [thread for thread in self.threads if thread not in self.busy]
            busy = len(self.busy)
            self.cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in idle:
            thread.join(max(0.0, deadline - time.monotonic()))
        if busy:
            logger.debug("aioc: the loop closed while %d worker thread(s) still ran a call; "
                         "they finish it, drop its outcome and exit", busy)

    def _deliver(self) -> Generator[Any, Any, None]:
        """The delivery task: resume the tasks whose calls have finished."""
        with self.lock:
            finished, self.finished = self.finished, []
            self.delivering = False
        reschedule = self.loop.reschedule
        for call in finished:
            if not call.abandoned:
                reschedule(call.task, call)
        return
        yield  # a generator, run as a task

    # -- in the workers -----------------------------------------------------------

    def _start_worker(self) -> None:
        """Start one worker (the lock is held); it counts as idle at once."""
        self.started += 1
        thread = threading.Thread(target=self._work, name=f"aioc-worker-{self.started}", daemon=True)
        thread.start()
        self.threads.add(thread)
        self.idle += 1

    def _work(self) -> None:
        me = threading.current_thread()
        lock = self.lock
        lock.acquire()
        try:
            while True:
                while not self.jobs:
                    if self.closed or len(self.threads) > self.size:
                        self.idle -= 1
                        self.threads.discard(me)
                        return
                    self.cond.wait()
                call = self.jobs.popleft()
                self.idle -= 1
                self.busy.add(me)
                lock.release()
                try:
                    call.run()
                finally:
                    lock.acquire()
                    # Free before the outcome is delivered: a loop that closes
                    # as soon as it has it finds this worker idle, and waits
                    # for it to exit.
                    self.busy.discard(me)
                    self.idle += 1
                if self.closed:
                    continue  # nobody to deliver to
                self.finished.append(call)
                if not self.delivering:
                    self.delivering = True
                    lock.release()
                    try:
                        self.loop.call_soon_threadsafe(self._deliver())
                    except RuntimeError:
                        pass  # the loop closed meanwhile: nobody waits any more
                    finally:
                        lock.acquire()
        finally:
            lock.release()


# The pool of each loop, created on first use and removed when the loop closes.
_pools: dict[Any, _Pool] = {}
_pools_lock = threading.Lock()


def _pool_for(loop: Any, create: bool) -> _Pool | None:
    with _pools_lock:
        pool = _pools.get(loop)
        if pool is None and create:
            if loop.is_closed():
                raise RuntimeError(POOL_CLOSED)
            pool = _Pool(loop, DEFAULT_THREAD_POOL_SIZE)
            loop.add_close_callback(lambda: _close_pool(loop))
            _pools[loop] = pool
        return pool


def _close_pool(loop: Any) -> None:
    with _pools_lock:
        pool = _pools.pop(loop, None)
    if pool is not None:
        pool.shutdown()


def set_thread_pool_size(loop: Any, size: int) -> None:
    """Let at most ``size`` worker threads run ``loop``'s calls at once.

    Takes effect at once: extra threads start when calls are queued, and
    surplus idle ones exit (busy ones when their call returns).  Call it
    from the loop's thread, or before the loop runs.  The pool itself is
    still created on the first call.
    """
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    pool = _pool_for(loop, create=True)
    assert pool is not None
    pool.resize(size)


def get_thread_pool_size(loop: Any) -> int:
    """The most worker threads ``loop``'s calls may use at once."""
    pool = _pool_for(loop, create=False)
    return DEFAULT_THREAD_POOL_SIZE if pool is None else pool.size


@types.coroutine
def run_in_thread(fn: Callable[..., T], /, *args: Any) -> Generator[Any, Any, T]:
    """Run ``fn(*args)`` in one of the loop's worker threads; return its result.

    ``result = yield from run_in_thread(fn, *args)``, or ``await`` it.  The
    function's exception is raised here, with its traceback.  If the task is
    cancelled (or its deadline expires) meanwhile, the call still runs to
    completion in its thread and its outcome is dropped.
    """
    call = _Call(fn, args)
    try:
        yield call
    except BaseException:
        call.abandoned = True
        call.task = None
        raise
    call.task = None
    error = call.error
    if error is not None:
        call.error = None
        try:
            raise error
        finally:
            del error  # no cycle through this frame
    value: T = call.value
    call.value = None
    return value


@types.coroutine
def getaddrinfo(
    host: bytes | str | None,
    port: bytes | str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> Generator[Any, Any, list[tuple[Any, ...]]]:
    """``socket.getaddrinfo`` in a worker thread: name resolution blocks.

    ``infos = yield from getaddrinfo("example.org", 443, type=socket.SOCK_STREAM)``;
    raises ``socket.gaierror`` as the blocking call does.
    """
    infos: list[tuple[Any, ...]] = yield from run_in_thread(socket.getaddrinfo, host, port, family, type, proto, flags)
    return infos
