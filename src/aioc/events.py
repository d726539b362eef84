"""The Event API: what a coroutine yields to the loop.

An event has two methods, ``_yield(loop, task)`` and ``_resume(loop, task)``;
:mod:`aioc.lowlevel` documents the contract between them and the loop, and
the built-in events below use nothing else.  The loop accepts any object with
these two methods; subclassing :class:`Event` is optional.

This module is the pure-Python specification of the built-in events; the
compiled loop ships twins of them with identical behaviour.  Fields that the
compiled loop reads from C (``ReadEvent.nbytes``, ``SendAll.data`` and
``SendAll.sent``, ``RecvFrom.max_bytes``, ``SendTo.data`` and
``SendTo.address``, ``Sleep.seconds``, ``Timeout.deadline``) are checked when
they are assigned, exactly as the constructor checks them.
"""

from __future__ import annotations

import abc
import errno
import logging
import math
import os
import socket
import sys
import time
import types
import weakref
from collections.abc import Generator
from typing import Any, Union

from ._constants import ACCEPT_BACKOFF, ACCEPT_BACKOFF_ERRNOS, ACCEPT_RETRY, DEFAULT_READ_SIZE

#: The public names of the Event API; the loop modules add theirs to these.
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
    "RecvFrom",
    "SendTo",
    "Sleep",
    "Spawn",
    "Join",
    "Timeout",
    "sendall",
    "timeout_after",
    "DEFAULT_READ_SIZE",
]

logger = logging.getLogger("aioc")

#: What the sending events take: any bytes-like object.
BytesLike = Union[bytes, bytearray, memoryview]

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
        """Do the now-possible work and reschedule the task with the result."""
        raise NotImplementedError

    def __await__(self) -> Generator[Event, Any, Any]:
        return (yield self)

    # ``yield from event`` behaves like ``yield event``.
    __iter__ = __await__


def check_nbytes(nbytes: object, what: str = "nbytes") -> int:
    """A ``recv`` size: an int above zero."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise TypeError(f"{what} must be an int, got {type(nbytes).__name__}")
    if not 0 < nbytes <= sys.maxsize:
        raise ValueError(f"{what} must be between 1 and {sys.maxsize}, got {nbytes}")
    return nbytes


def check_seconds(seconds: object, what: str = "seconds") -> float:
    """A duration or a deadline: a real number, not NaN."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(seconds).__name__}")
    seconds = float(seconds)
    if math.isnan(seconds):
        raise ValueError(f"{what} must not be NaN")
    return seconds


def check_sent(sent: object) -> int:
    """A count of bytes already sent: an int, zero or more."""
    if isinstance(sent, bool) or not isinstance(sent, int):
        raise TypeError(f"sent must be an int, got {type(sent).__name__}")
    if not 0 <= sent <= sys.maxsize:
        raise ValueError(f"sent must be between 0 and {sys.maxsize}, got {sent}")
    return sent


def as_send_buffer(data: object) -> bytes | memoryview:
    """``bytes`` as they are; any other bytes-like object as a flat byte view."""
    if type(data) is bytes:
        return data
    return memoryview(data).cast("B")  # type: ignore[arg-type]  # raises TypeError if not bytes-like


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_address(sock: Any, address: object) -> Any:
    """A datagram's destination, in the shape ``sock``'s family takes.

    AF_INET: ``(host, port)``; AF_INET6: ``(host, port[, flowinfo[,
    scope_id]])``, the host a str and the numbers ints; AF_UNIX: a path (str
    or bytes).  Other families are left to ``sendto``.  Checked here so that
    a wrong shape fails where the event is made, with a message that says
    what was expected.
    """
    family = getattr(sock, "family", None)
    if family == socket.AF_INET or family == socket.AF_INET6:
        name = "AF_INET" if family == socket.AF_INET else "AF_INET6"
        shape = "(host, port)" if family == socket.AF_INET else "(host, port[, flowinfo[, scope_id]])"
        sizes = (2,) if family == socket.AF_INET else (2, 3, 4)
        if not isinstance(address, tuple) or len(address) not in sizes:
            raise TypeError(f"address for an {name} socket must be a tuple {shape}, got {address!r}")
        if not isinstance(address[0], str) or not all(_is_int(number) for number in address[1:]):
            raise TypeError(f"address for an {name} socket must be a tuple {shape} of a str and ints, got {address!r}")
        if not 0 <= address[1] <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {address[1]}")
    elif family == getattr(socket, "AF_UNIX", None):
        if not isinstance(address, (str, bytes, bytearray)):
            raise TypeError(f"address for an AF_UNIX socket must be a str or bytes path, got {type(address).__name__}")
    return address


def _check_event(event: object) -> None:
    if not hasattr(event, "_yield"):
        raise TypeError(f"expected an event, got {event!r}")


class ReadEvent(Event):
    """Wait until ``sock`` is readable, then receive up to ``nbytes``.

    Resumes with the bytes received, ``b''`` at end of file.
    """

    __slots__ = ("sock", "_nbytes")

    def __init__(self, sock: socket.socket, nbytes: int = DEFAULT_READ_SIZE) -> None:
        self.sock = sock
        self._nbytes = check_nbytes(nbytes)

    @property
    def nbytes(self) -> int:
        return self._nbytes

    @nbytes.setter
    def nbytes(self, nbytes: int) -> None:
        self._nbytes = check_nbytes(nbytes)

    def _yield(self, loop: Any, task: Any) -> None:
        loop.wait_readable(self.sock.fileno(), self, task, self.sock)

    def _resume(self, loop: Any, task: Any) -> None:
        loop.reschedule(task, self.sock.recv(self._nbytes, _DONTWAIT))


class WriteEvent(Event):
    """Send what ``sock`` accepts of ``data`` in one call; resumes with the count.

    The send is tried at once; the task waits for writability only when the
    socket's buffer is full.
    """

    __slots__ = ("sock", "data")

    def __init__(self, sock: socket.socket, data: BytesLike) -> None:
        self.sock = sock
        self.data = data

    def _yield(self, loop: Any, task: Any) -> None:
        try:
            sent = self.sock.send(self.data, _DONTWAIT)
        except BlockingIOError:
            loop.wait_writable(self.sock.fileno(), self, task, self.sock)
        else:
            loop.complete(task, sent)

    def _resume(self, loop: Any, task: Any) -> None:
        loop.reschedule(task, self.sock.send(self.data, _DONTWAIT))


class SendAll(Event):
    """Send every byte of ``data``, waiting for writability as often as needed.

    Resumes with ``len(data)`` in bytes.  ``sent`` counts the bytes already
    sent; the send continues from there.
    """

    __slots__ = ("sock", "_data", "_sent")

    def __init__(self, sock: socket.socket, data: BytesLike) -> None:
        self.sock = sock
        self._data = as_send_buffer(data)
        self._sent = 0

    @property
    def data(self) -> bytes | memoryview:
        return self._data

    @data.setter
    def data(self, data: BytesLike) -> None:
        self._data = as_send_buffer(data)

    @property
    def sent(self) -> int:
        return self._sent

    @sent.setter
    def sent(self, sent: int) -> None:
        self._sent = check_sent(sent)

    def _yield(self, loop: Any, task: Any) -> None:
        data = self._data
        check_sent(self._sent)  # _sent is writable: never slice from before the data
        try:
            while self._sent < len(data):
                rest = memoryview(data)[self._sent :] if self._sent else data
                self._sent += self.sock.send(rest, _DONTWAIT)
        except BlockingIOError:
            loop.wait_writable(self.sock.fileno(), self, task, self.sock)
        else:
            loop.complete(task, self._sent)

    _resume = _yield


def sendall(sock: socket.socket, data: BytesLike) -> SendAll:
    """``yield from sendall(sock, data)``: send all of ``data``, return its length."""
    return SendAll(sock, data)


# Listening sockets whose accept() back-off has been logged: once each.
_backoff_logged: weakref.WeakSet[Any] = weakref.WeakSet()


def accept_backoff(loop: Any, event: Any, task: Any, listener: Any, exc: OSError) -> None:
    """Retry an accept that ran out of fds or memory after ``ACCEPT_BACKOFF`` s.

    The listening socket stays readable meanwhile, so waiting on it at once
    would spin.  Logged once per listening socket.
    """
    if listener not in _backoff_logged:
        _backoff_logged.add(listener)
        logger.warning(ACCEPT_RETRY, exc, ACCEPT_BACKOFF)
    loop.wait_until(loop.time() + ACCEPT_BACKOFF, event, task)


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
        loop.wait_readable(self.sock.fileno(), self, task, self.sock)

    def _resume(self, loop: Any, task: Any) -> None:
        try:
            conn, address = self.sock.accept()
        except OSError as exc:
            if exc.errno in ACCEPT_BACKOFF_ERRNOS:
                accept_backoff(loop, self, task, self.sock, exc)
                return
            # The peer left before we accepted: not the server's problem.
            if exc.errno == errno.ECONNABORTED:
                self._yield(loop, task)
                return
            raise
        conn.setblocking(False)
        loop.reschedule(task, (conn, address))


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
            loop.reschedule(task, None)
        elif err in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
            loop.wait_writable(self.sock.fileno(), self, task, self.sock)
        else:
            raise OSError(err, os.strerror(err))

    def _resume(self, loop: Any, task: Any) -> None:
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        loop.reschedule(task, None)


class RecvFrom(Event):
    """Wait until the datagram socket ``sock`` is readable, then receive one
    datagram of up to ``max_bytes``; resumes with ``(data, address)``.

    A longer datagram is truncated, its rest discarded, as ``recvfrom`` does.
    """

    __slots__ = ("sock", "_max_bytes")

    def __init__(self, sock: socket.socket, max_bytes: int = DEFAULT_READ_SIZE) -> None:
        self.sock = sock
        self._max_bytes = check_nbytes(max_bytes, "max_bytes")

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, max_bytes: int) -> None:
        self._max_bytes = check_nbytes(max_bytes, "max_bytes")

    def _yield(self, loop: Any, task: Any) -> None:
        loop.wait_readable(self.sock.fileno(), self, task, self.sock)

    def _resume(self, loop: Any, task: Any) -> None:
        loop.reschedule(task, self.sock.recvfrom(self._max_bytes, _DONTWAIT))


class SendTo(Event):
    """Send ``data`` as one datagram to ``address``; resumes with the count sent.

    The send is tried at once; the task waits for writability only when the
    socket's buffer is full.  Give a numeric address: name resolution would
    block the loop.
    """

    __slots__ = ("sock", "_data", "_address")

    def __init__(self, sock: socket.socket, data: BytesLike, address: Any) -> None:
        self.sock = sock
        self._data = as_send_buffer(data)
        self._address = check_address(sock, address)

    @property
    def data(self) -> bytes | memoryview:
        return self._data

    @data.setter
    def data(self, data: BytesLike) -> None:
        self._data = as_send_buffer(data)

    @property
    def address(self) -> Any:
        return self._address

    @address.setter
    def address(self, address: Any) -> None:
        self._address = check_address(self.sock, address)

    def _yield(self, loop: Any, task: Any) -> None:
        try:
            sent = self.sock.sendto(self._data, _DONTWAIT, self._address)
        except BlockingIOError:
            loop.wait_writable(self.sock.fileno(), self, task, self.sock)
        else:
            loop.complete(task, sent)

    def _resume(self, loop: Any, task: Any) -> None:
        loop.reschedule(task, self.sock.sendto(self._data, _DONTWAIT, self._address))


class Sleep(Event):
    """Resume after ``seconds``.  ``Sleep(0)`` moves the task to the back of the ready queue."""

    __slots__ = ("_seconds",)

    def __init__(self, seconds: float) -> None:
        self._seconds = check_seconds(seconds)

    @property
    def seconds(self) -> float:
        return self._seconds

    @seconds.setter
    def seconds(self, seconds: float) -> None:
        self._seconds = check_seconds(seconds)

    def _yield(self, loop: Any, task: Any) -> None:
        if self._seconds <= 0:
            loop.reschedule(task, None)
        else:
            loop.wait_until(loop.time() + self._seconds, self, task)

    def _resume(self, loop: Any, task: Any) -> None:
        loop.reschedule(task, None)


class Spawn(Event):
    """Start ``coro`` as a new task; resumes with its :class:`Task`."""

    __slots__ = ("coro",)

    def __init__(self, coro: Any) -> None:
        self.coro = coro

    def _yield(self, loop: Any, task: Any) -> None:
        loop.complete(task, loop.call_soon(self.coro))

    def _resume(self, loop: Any, task: Any) -> None:
        raise NotImplementedError


class Join(Event):
    """Wait for ``task`` to finish; resumes with its result or raises its exception."""

    __slots__ = ("task",)

    def __init__(self, task: Any) -> None:
        self.task = task

    def _yield(self, loop: Any, task: Any) -> None:
        loop.wait_task(self.task, self, task)

    def _resume(self, loop: Any, task: Any) -> None:
        loop.reschedule(task, self.task.result())


class Timeout(Event):
    """Bound one wait: ``yield Timeout(ReadEvent(conn), 5.0)``.

    Raises the built-in ``TimeoutError`` at the yield when ``seconds`` pass
    before ``event`` completes; its registration is removed.  ``deadline`` is
    the absolute time (``loop.time()`` seconds) it fires at.
    """

    __slots__ = ("event", "_deadline")

    def __init__(self, event: Any, seconds: float) -> None:
        _check_event(event)
        self.event = event
        self._deadline = time.monotonic() + check_seconds(seconds)

    @property
    def deadline(self) -> float:
        return self._deadline

    @deadline.setter
    def deadline(self, deadline: float) -> None:
        self._deadline = check_seconds(deadline, "deadline")

    def _yield(self, loop: Any, task: Any) -> None:
        loop.set_deadline(task, self._deadline)
        self.event._yield(loop, task)

    def _resume(self, loop: Any, task: Any) -> None:
        raise NotImplementedError


@types.coroutine
def timeout_after(seconds: float, coro: Any) -> Generator[Any, Any, Any]:
    """Bound a whole sub-coroutine: ``result = yield from timeout_after(5.0, fetch(conn))``.

    Every event ``coro`` yields is wrapped in :class:`Timeout` with the time
    left, so ``TimeoutError`` is raised inside ``coro`` at whichever yield is
    pending when the time runs out, and propagates out unless ``coro``
    handles it.  It is raised once: a ``coro`` that catches it can still wait
    to clean up (take a lock back, say).  Nests: the earliest deadline wins.
    """
    deadline = time.monotonic() + check_seconds(seconds)
    send, throw = coro.send, coro.throw
    value: Any = None
    error: BaseException | None = None
    expired = False
    while True:
        try:
            event = send(value) if error is None else throw(error)
        except StopIteration as stop:
            return stop.value
        value = error = None
        try:
            # A non-event goes out as it is, so the loop's TypeError lands in coro.
            if not expired and hasattr(event, "_yield"):
                left = deadline - time.monotonic()
                if left <= 0:
                    # The time ran out while coro never blocked (its events
                    # completed at once): a Timeout would not fire, so the
                    # bound is enforced here, at the pending yield.
                    error = TimeoutError()
                    expired = True
                    continue
                event = Timeout(event, left)
            value = yield event
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            # This bound's own TimeoutError (not an inner, shorter one's).
            expired = expired or (isinstance(exc, TimeoutError) and time.monotonic() >= deadline)
            error = exc
