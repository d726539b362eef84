"""Queues between tasks: Queue (FIFO), LifoQueue, PriorityQueue, and UniversalQueue,
which threads outside the loop can feed.

Like :mod:`aioc.sync` they use only the loop's contract, so they serve both
loops.  ``put`` and ``get`` work as ``yield from`` and as ``await`` and do
not yield when they can complete at once (room to put, an item to get), so a
busy producer and consumer pass most items without a trip through the loop.
Waiters wake in FIFO order, and what a waiter is granted is never lost: a
getter cancelled after it was handed an item puts the item back at the front
(or hands it to the next getter); a putter cancelled after it was given room
gives the room to the next putter, and its item is not put.

This module is the specification.  The compiled loop has a twin of
``Queue`` (``aioc._loop_c.Queue``), which ``aioc.Queue`` gives when the loop
is compiled: it puts and gets in C when nobody waits, and waits through
``put_when_room``, ``get_when_available`` and ``join_when_done`` below.  The
twin is a final class; ``LifoQueue`` and ``PriorityQueue`` subclass this
module's ``Queue``, so they are not subclasses of the compiled one.
"""

from __future__ import annotations

import heapq
import threading
import types
from collections import deque
from collections.abc import Generator
from typing import Any, Generic, TypeVar

from .sync import Waiter, forget, grant_first, park

__all__ = ["QueueEmpty", "QueueFull", "Queue", "LifoQueue", "PriorityQueue", "UniversalQueue"]

T = TypeVar("T")


class QueueEmpty(Exception):
    """``get_nowait`` found the queue empty."""


class QueueFull(Exception):
    """``put_nowait`` found the queue full."""


class Queue(Generic[T]):
    """A FIFO queue of at most ``maxsize`` items (unbounded if ``maxsize <= 0``).

    ``put`` waits while the queue is full, ``get`` while it is empty;
    ``task_done`` and ``join`` let a producer wait until every item put has
    been processed.
    """

    def __init__(self, maxsize: int = 0) -> None:
        self._maxsize = maxsize
        self._init()
        # Getters wait only while the queue is empty: put hands its item
        # straight to the first of them.
        self._getters: deque[Waiter] = deque()
        self._putters: deque[Waiter] = deque()
        # Room granted to woken putters that have not put yet: it counts as
        # taken, so that nobody else fills it in the meantime.
        self._reserved = 0
        self._unfinished = 0
        self._joiners: deque[Waiter] = deque()

    # -- storage: the hooks LifoQueue and PriorityQueue override ------------

    def _init(self) -> None:
        self._items: Any = deque()

    def _put_item(self, item: T) -> None:
        self._items.append(item)

    def _get_item(self) -> T:
        return self._items.popleft()  # type: ignore[no-any-return]

    def _put_back(self, item: T) -> None:
        """Return an item a cancelled getter was handed, where ``get`` takes it next."""
        self._items.appendleft(item)

    # -- state ----------------------------------------------------------------

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self._maxsize <= len(self._items) + self._reserved

    # -- putting ----------------------------------------------------------------

    def put_nowait(self, item: T) -> None:
        """Put ``item`` at once; QueueFull if there is no room."""
        if self.full():
            raise QueueFull
        self._deliver(item)

    @types.coroutine
    def put(self, item: T) -> Generator[Any, Any, None]:
        """Put ``item``, waiting while the queue is full."""
        if not self.full():
            self._deliver(item)
            return
        yield from put_when_room(self, item)

    def _put_in_reserved_room(self, item: T) -> None:
        # A putter woken with room reserved for it puts now.
        self._reserved -= 1
        self._deliver(item)

    def _deliver(self, item: T) -> None:
        self._unfinished += 1
        if not grant_first(self._getters, item):
            self._put_item(item)

    def _pass_room_on(self, _: Any) -> None:
        # A woken putter was cancelled before it ran: its room goes to the next.
        self._reserved -= 1
        self._wake_putters()

    def _wake_putters(self) -> None:
        putters = self._putters
        while putters and not self.full():
            self._reserved += 1
            if not grant_first(putters):
                self._reserved -= 1

    # -- getting ------------------------------------------------------------------

    def get_nowait(self) -> T:
        """Take an item at once; QueueEmpty if there is none."""
        if not self._items:
            raise QueueEmpty
        item = self._get_item()
        if self._putters:
            self._wake_putters()
        return item

    @types.coroutine
    def get(self) -> Generator[Any, Any, T]:
        """Take an item, waiting while the queue is empty."""
        if self._items:
            item = self._get_item()
            if self._putters:
                self._wake_putters()
            return item
        return (yield from get_when_available(self))

    def _give_item_back(self, item: T) -> None:
        # A getter handed ``item`` was cancelled before it ran: the next
        # getter gets it, else it goes back where get takes from first.
        if not grant_first(self._getters, item):
            self._put_back(item)

    # -- joining ------------------------------------------------------------------

    def task_done(self) -> None:
        """Say one item taken by ``get`` has been processed; ValueError if none is left."""
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0:
            while grant_first(self._joiners):
                pass

    @types.coroutine
    def join(self) -> Generator[Any, Any, None]:
        """Wait until every item put has been marked done by ``task_done``."""
        if self._unfinished == 0:
            return
        yield from join_when_done(self)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} maxsize={self._maxsize} qsize={self.qsize()} "
                f"getters={len(self._getters)} putters={len(self._putters)}>")


# The waiting halves of put, get and join, shared with the compiled Queue.

@types.coroutine
def put_when_room(queue: Any, item: Any) -> Generator[Any, Any, None]:
    """Wait in a full queue's line of putters, then put ``item`` in the room reserved for it."""
    yield from park(Waiter(queue._putters), queue._pass_room_on)
    queue._put_in_reserved_room(item)


@types.coroutine
def get_when_available(queue: Any) -> Generator[Any, Any, Any]:
    """Wait in an empty queue's line of getters; returns the item put for it."""
    return (yield from park(Waiter(queue._getters), queue._give_item_back))


@types.coroutine
def join_when_done(queue: Any) -> Generator[Any, Any, None]:
    """Wait until every item put in ``queue`` has been marked done."""
    yield from park(Waiter(queue._joiners), _nothing_to_give_back)


def _nothing_to_give_back(_: Any) -> None:
    """A woken joiner takes nothing from anyone."""


class LifoQueue(Queue[T]):
    """A queue that gives the most recently put item first."""

    def _init(self) -> None:
        self._items = []

    def _get_item(self) -> T:
        return self._items.pop()  # type: ignore[no-any-return]

    def _put_back(self, item: T) -> None:
        self._items.append(item)


class PriorityQueue(Queue[T]):
    """A queue that gives the smallest item first (put ``(priority, data)`` tuples)."""

    def _init(self) -> None:
        self._items = []

    def _put_item(self, item: T) -> None:
        heapq.heappush(self._items, item)

    def _get_item(self) -> T:
        return heapq.heappop(self._items)  # type: ignore[no-any-return]

    def _put_back(self, item: T) -> None:
        heapq.heappush(self._items, item)


class UniversalQueue(Generic[T]):
    """An unbounded FIFO queue that any thread can ``put`` into and tasks ``get`` from.

    ``put`` is a plain call, safe from any thread and needing no loop.  A
    put that finds a task waiting does not touch the loop from its thread:
    it asks the waiter's loop (``call_soon_threadsafe``) to run a tiny
    coroutine that hands items to the waiting getters on the loop's thread.
    ``get`` is for tasks, on the loop's thread.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._items: deque[T] = deque()
        self._getters: deque[Waiter] = deque()  # touched on the loop's thread only
        self._waiting = 0  # len(_getters), read by other threads under the mutex
        self._handing = False  # a hand-over coroutine is scheduled and has not run yet

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put(self, item: T) -> None:
        """Add ``item``; from any thread, never waits."""
        with self._mutex:
            self._items.append(item)
            if not self._waiting or self._handing:
                return
            self._handing = True
            loop = self._getters[0].loop
        loop.call_soon_threadsafe(self._hand_over())

    put_nowait = put

    def _hand_over(self) -> Generator[Any, Any, None]:
        # Runs on the loop's thread: there, and only there, getters are woken.
        with self._mutex:
            self._handing = False
            self._serve_getters()
        return
        yield

    def _serve_getters(self) -> None:
        # Called with the mutex held, on the loop's thread.
        getters, items = self._getters, self._items
        while items and grant_first(getters, items[0]):
            items.popleft()
        self._waiting = len(getters)

    def get_nowait(self) -> T:
        """Take an item at once; QueueEmpty if there is none."""
        with self._mutex:
            if not self._items:
                raise QueueEmpty
            return self._items.popleft()

    @types.coroutine
    def get(self) -> Generator[Any, Any, T]:
        """Take an item, waiting (in the calling task) while there is none."""
        with self._mutex:
            if self._items:
                return self._items.popleft()
            waiter = _UniversalWaiter(self)
        try:
            return (yield waiter)
        except BaseException as exc:
            with self._mutex:
                if not waiter.granted:
                    forget(waiter)
                    self._waiting = len(self._getters)
                    raise
                if isinstance(exc, TimeoutError):
                    return waiter.value  # the wake-up itself
                # Handed an item, then cancelled before it ran: the item goes back first.
                self._items.appendleft(waiter.value)
                self._serve_getters()
            raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} qsize={self.qsize()} getters={self._waiting}>"


class _UniversalWaiter(Waiter):
    """A getter of a UniversalQueue: it joins the line under the queue's mutex."""

    __slots__ = ("queue",)

    def __init__(self, queue: UniversalQueue[Any]) -> None:
        super().__init__(queue._getters)
        self.queue = queue

    def _yield(self, loop: Any, task: Any) -> None:
        queue = self.queue
        with queue._mutex:
            if queue._items:  # an item arrived between get's check and this yield
                self.granted, self.value = True, queue._items.popleft()
                loop.reschedule(task, self.value)
                return
            self.loop, self.task = loop, task
            self.line.append(self)
            queue._waiting = len(self.line)
            loop.park(task)
