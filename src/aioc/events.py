"""The Event API: what a coroutine yields to the loop.

An event has two methods.  ``_yield(loop, task)`` runs when a task yields the
event: it registers interest with ``loop._read_wait``/``loop._write_wait``/
``loop._timer_wait``, or completes at once with ``loop._ready.append((task,
value))``.  ``_resume(loop, task)`` runs when the awaited condition holds: it
does the I/O that is now possible and queues ``(task, result)``.  An exception
raised by either is thrown into the task at its ``yield``; a
``BlockingIOError`` from ``_resume`` (readiness is only a hint) makes the loop
call ``_yield`` again.

The loop accepts any object with these two methods; subclassing :class:`Event`
is optional.  This module is the pure-Python specification of the built-in
events; the compiled loop ships twins of the hot ones with identical behaviour.
"""

from __future__ import annotations

import abc
import errno
import math
import os
import socket
import time
from collections.abc import Generator
from typing import Any

__all__ = [
    "Cancelled",
    "ResourceBusy",
    "ClosedResourceError",
    "InvalidStateError",
    "Event",
    "ReadEvent",
    "WriteEvent",
    "SendAll",
    "AcceptEvent",
    "ConnectEvent",
    "Sleep",
    "Spawn",
    "Join",
    "Timeout",
    "sendall",
    "timeout_after",
]

#: Bytes asked of ``recv`` when ``ReadEvent`` is given no size.
DEFAULT_READ_SIZE = 65536

# Per-call non-blocking I/O: a socket left in blocking mode by its owner can
# then never freeze the loop after a spurious wake-up.
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


class Cancelled(BaseException):
    """Thrown into a task by :meth:`Task.cancel`.

    A BaseException, so that ``except Exception`` in user code does not
    swallow a cancellation.
    """


class ResourceBusy(RuntimeError):
    """Another task already waits to read (or to write) this file descriptor."""


class ClosedResourceError(OSError):
    """The socket was closed by ``EventLoop.close_socket`` while a task waited on it."""

    def __init__(self, message: str = "socket was closed while a task waited on it") -> None:
        super().__init__(errno.EBADF, message)


class InvalidStateError(RuntimeError):
    """A task's result or exception was asked for before it finished."""


class Event(metaclass=abc.ABCMeta):
    """Base class of everything a coroutine may yield.

    ABCMeta only so that the compiled twins of the built-in events, which
    cannot inherit from a Python class, still pass ``isinstance(ev, Event)``.
    """

    __slots__ = ()

    def _yield(self, loop: Any, task: Any) -> None:
        """Register interest, or complete at once."""
        raise NotImplementedError

    def _resume(self, loop: Any, task: Any) -> None:
        """Do the now-possible work and queue ``(task, result)``."""
        raise NotImplementedError

    def __await__(self) -> Generator[Event, Any, Any]:
        return (yield self)

    # ``yield from event`` behaves like ``yield event``.
    __iter__ = __await__


def _check_nbytes(nbytes: int) -> int:
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise TypeError(f"nbytes must be an int, got {type(nbytes).__name__}")
    if nbytes <= 0:
        raise ValueError(f"nbytes must be positive, got {nbytes}")
    return nbytes


def _check_seconds(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
    seconds = float(seconds)
    if math.isnan(seconds):
        raise ValueError("seconds must not be NaN")
    return seconds


def _check_event(event: object) -> None:
    if not hasattr(event, "_yield"):
        raise TypeError(f"expected an event, got {event!r}")


class ReadEvent(Event):
    """Wait until ``sock`` is readable, then receive up to ``nbytes``.

    Resumes with the bytes received, ``b''`` at end of file.
    """

    __slots__ = ("sock", "nbytes")

    def __init__(self, sock: socket.socket, nbytes: int = DEFAULT_READ_SIZE) -> None:
        self.sock = sock
        self.nbytes = _check_nbytes(nbytes)

    def _yield(self, loop: Any, task: Any) -> None:
        loop._read_wait(self.sock.fileno(), self, task)

    def _resume(self, loop: Any, task: Any) -> None:
        loop._ready.append((task, self.sock.recv(self.nbytes, _DONTWAIT)))


class WriteEvent(Event):
    """Send what ``sock`` accepts of ``data`` in one call; resumes with the count.

    The send is tried at once; the task waits for writability only when the
    socket's buffer is full.
    """

    __slots__ = ("sock", "data")

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        self.sock = sock
        self.data = data

    def _yield(self, loop: Any, task: Any) -> None:
        try:
            sent = self.sock.send(self.data, _DONTWAIT)
        except BlockingIOError:
            loop._write_wait(self.sock.fileno(), self, task)
        else:
            loop._ready.append((task, sent))

    def _resume(self, loop: Any, task: Any) -> None:
        loop._ready.append((task, self.sock.send(self.data, _DONTWAIT)))


class SendAll(Event):
    """Send every byte of ``data``, waiting for writability as often as needed.

    Resumes with ``len(data)`` in bytes.
    """

    __slots__ = ("sock", "data", "sent")

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        self.sock = sock
        self.data = memoryview(data).cast("B")
        self.sent = 0

    def _yield(self, loop: Any, task: Any) -> None:
        data = self.data
        try:
            while self.sent < len(data):
                self.sent += self.sock.send(data[self.sent :], _DONTWAIT)
        except BlockingIOError:
            loop._write_wait(self.sock.fileno(), self, task)
        else:
            loop._ready.append((task, self.sent))

    _resume = _yield


def sendall(sock: socket.socket, data: bytes) -> SendAll:
    """``yield from sendall(sock, data)``: send all of ``data``, return its length."""
    return SendAll(sock, data)


class AcceptEvent(Event):
    """Accept a connection on a listening socket; resumes with ``(conn, address)``.

    ``conn`` is non-blocking.  The listening socket is made non-blocking too.
    """

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        if sock.getblocking():
            sock.setblocking(False)
        self.sock = sock

    def _yield(self, loop: Any, task: Any) -> None:
        loop._read_wait(self.sock.fileno(), self, task)

    def _resume(self, loop: Any, task: Any) -> None:
        try:
            conn, address = self.sock.accept()
        except OSError as exc:
            # Out of descriptors or buffers: the listening socket stays
            # readable, so waiting again at once would spin.
            if exc.errno in loop.ACCEPT_BACKOFF_ERRNOS:
                loop._accept_backoff(self, task, exc)
                return
            # The peer left before we accepted: not the server's problem.
            if exc.errno == errno.ECONNABORTED:
                self._yield(loop, task)
                return
            raise
        conn.setblocking(False)
        loop._ready.append((task, (conn, address)))


class ConnectEvent(Event):
    """Connect ``sock`` to ``address`` without blocking; resumes with ``None``.

    Raises the connection's real error (``ConnectionRefusedError``, ...).
    Give a numeric address: name resolution would block.
    """

    __slots__ = ("sock", "address")

    def __init__(self, sock: socket.socket, address: Any) -> None:
        if sock.getblocking():
            sock.setblocking(False)
        self.sock = sock
        self.address = address

    def _yield(self, loop: Any, task: Any) -> None:
        err = self.sock.connect_ex(self.address)
        if err == 0:
            loop._ready.append((task, None))
        elif err in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
            loop._write_wait(self.sock.fileno(), self, task)
        else:
            raise OSError(err, os.strerror(err))

    def _resume(self, loop: Any, task: Any) -> None:
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        loop._ready.append((task, None))


class Sleep(Event):
    """Resume after ``seconds``.  ``Sleep(0)`` moves the task to the back of the ready queue."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = _check_seconds(seconds)

    def _yield(self, loop: Any, task: Any) -> None:
        if self.seconds <= 0:
            loop._ready.append((task, None))
        else:
            loop._timer_wait(loop.time() + self.seconds, self, task)

    def _resume(self, loop: Any, task: Any) -> None:
        loop._ready.append((task, None))


class Spawn(Event):
    """Start ``coro`` as a new task; resumes with its :class:`Task`."""

    __slots__ = ("coro",)

    def __init__(self, coro: Any) -> None:
        self.coro = coro

    def _yield(self, loop: Any, task: Any) -> None:
        loop._ready.append((task, loop.call_soon(self.coro)))

    def _resume(self, loop: Any, task: Any) -> None:
        raise NotImplementedError


class Join(Event):
    """Wait for ``task`` to finish; resumes with its result or raises its exception."""

    __slots__ = ("task",)

    def __init__(self, task: Any) -> None:
        self.task = task

    def _yield(self, loop: Any, task: Any) -> None:
        loop._join_wait(self.task, self, task)

    def _resume(self, loop: Any, task: Any) -> None:
        loop._ready.append((task, self.task.result()))


class Timeout(Event):
    """Bound one wait: ``yield Timeout(ReadEvent(conn), 5.0)``.

    Raises the built-in ``TimeoutError`` at the yield when ``seconds`` pass
    before ``event`` completes; its registration is removed.
    """

    __slots__ = ("event", "deadline")

    def __init__(self, event: Any, seconds: float) -> None:
        _check_event(event)
        self.event = event
        self.deadline = time.monotonic() + _check_seconds(seconds)

    def _yield(self, loop: Any, task: Any) -> None:
        loop._set_deadline(task, self.deadline)
        self.event._yield(loop, task)

    def _resume(self, loop: Any, task: Any) -> None:
        raise NotImplementedError


def timeout_after(seconds: float, coro: Any) -> Generator[Any, Any, Any]:
    """Bound a whole sub-coroutine: ``result = yield from timeout_after(5.0, fetch(conn))``.

    Every event ``coro`` yields is wrapped in :class:`Timeout` with the time
    left, so ``TimeoutError`` is raised inside ``coro`` at whichever yield is
    pending when the time runs out, and propagates out unless ``coro``
    handles it.  Nests: the earliest deadline wins.
    """
    deadline = time.monotonic() + _check_seconds(seconds)
    send, throw = coro.send, coro.throw
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            event = send(value) if error is None else throw(error)
        except StopIteration as stop:
            return stop.value
        value = error = None
        try:
            # A non-event goes out as it is, so the loop's TypeError lands in coro.
            if hasattr(event, "_yield"):
                left = deadline - time.monotonic()
                if left <= 0:
                    # The time ran out while coro never blocked (its events
                    # completed at once): a Timeout would not fire, so the
                    # bound is enforced here, at the pending yield.
                    error = TimeoutError()
                    continue
                event = Timeout(event, left)
            value = yield event
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            error = exc
