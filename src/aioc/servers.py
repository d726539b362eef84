"""Servers: accept connections and run a handler on each, as a task of its own.

``yield from serve_tcp(handler, host, port)`` (or ``serve_unix(handler,
path)``) accepts connections until the task running it is cancelled.  Each
connection becomes an ``aioc.Stream`` (TLS-handshaken first when ``ssl=`` is
a context) and runs ``handler(stream)`` (a generator function or an ``async
def``) in a task of its own.  The rules:

- the stream is closed when the handler returns or fails;
- a handler's exception goes to the loop's exception handler
  (``loop.set_exception_handler``) and never stops the server; a failed or
  timed-out TLS handshake ends that connection only (logged at DEBUG on the
  ``aioc`` logger: scanners make many);
- with ``max_connections``, accepting pauses while that many connections are
  being served (a TLS handshake counts), and resumes when one ends;
- cancelling the server stops accepting, cancels every handler, waits until
  each has finished (their ``finally`` blocks run, their streams close) and
  closes the listening socket: no fd is left behind.

The server owns its handler tasks the way a ``TaskGroup`` owns its children
(none outlives it), but keeps only the live ones: a group keeps every child
for its results, which a server that runs for months cannot afford.  Unlike
a group's children, a failing handler does not cancel its siblings.

To learn the port the kernel picked (``port=0``), make the listening socket
first and pass it as ``sock``: ``sock = tcp_listener("127.0.0.1", 0)``,
``sock.getsockname()[1]``, then ``serve_tcp(handler, sock=sock)``.  The
server owns ``sock`` from then on and closes it when it ends.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl as _ssl
import stat
import types
from collections.abc import Callable, Generator
from typing import Any

from ._constants import ACCEPT_BACKOFF_ERRNOS
from .events import Event, accept_backoff
from .streams import CloseSocket, Stream
from .sync import Semaphore
from .taskgroups import CurrentTask, TaskSlot, WaitFinished
from .threads import getaddrinfo
from .tls import DEFAULT_HANDSHAKE_TIMEOUT, handshake, new_stream

__all__ = ["serve_tcp", "serve_unix", "tcp_listener", "unix_listener"]

logger = logging.getLogger("aioc")

#: Listening sockets' default queue of connections not yet accepted.
DEFAULT_BACKLOG = 1024

#: What the loop's exception handler is told when a handler fails.
HANDLER_FAILED = "a connection handler failed"

Handler = Callable[[Stream], Any]


# -- listening sockets ------------------------------------------------------------


def tcp_listener(
    host: str | None = None, port: int = 0, *, backlog: int = DEFAULT_BACKLOG, reuse_port: bool = False
) -> socket.socket:
    """A listening TCP socket, non-blocking; ``getsockname()`` tells its port.

    ``host=None`` listens on every interface, IPv6 and IPv4 on one socket
    where the machine has IPv6.  A name is resolved here, blocking: call it
    before the loop runs, or give an address.  A name with several addresses
    listens on the first.  ``SO_REUSEADDR`` is set; ``reuse_port`` sets
    ``SO_REUSEPORT`` (several processes then share the port).
    """
    if host is None or host == "":
        return _listen_anywhere(port, backlog, reuse_port)
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    return _listen(family, address, backlog, reuse_port)


def unix_listener(path: str, *, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    """A listening Unix socket at ``path``, non-blocking.

    A socket file left at ``path`` by an earlier run is replaced; any other
    file there is an error (``FileExistsError``).
    """
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _listen(family: int, address: Any, backlog: int, reuse_port: bool, dual_stack: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()  # a port in use, say: no fd is left behind
        raise
    return sock


def _listen_anywhere(port: int, backlog: int, reuse_port: bool) -> socket.socket:
    if socket.has_ipv6:
        try:
            return _listen(socket.AF_INET6, ("::", port), backlog, reuse_port, dual_stack=True)
        except OSError as exc:
            if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise  # a port in use is an error on IPv4 too
    return _listen(socket.AF_INET, ("0.0.0.0", port), backlog, reuse_port)


def _remove_stale_socket(path: Any) -> None:
    if _is_abstract(path):
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(errno.EEXIST, f"{path!r} exists and is not a socket")
    os.unlink(path)


def _is_abstract(path: Any) -> bool:
    """Linux's abstract namespace: a name with no file behind it."""
    return isinstance(path, (str, bytes)) and path[:1] in ("\0", b"\0")


# -- serving ----------------------------------------------------------------------


@types.coroutine
def serve_tcp(
    handler: Handler,
    host: str | None = None,
    port: int = 0,
    *,
    sock: socket.socket | None = None,
    ssl: _ssl.SSLContext | None = None,
    backlog: int = DEFAULT_BACKLOG,
    reuse_port: bool = False,
    max_connections: int | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
) -> Generator[Any, Any, None]:
    """Serve TCP connections with ``handler(stream)`` until cancelled.

    Listens on ``host``/``port`` (a name is resolved in a worker thread; see
    :func:`tcp_listener` for ``host=None``), or on ``sock``, a listening
    socket the server then owns.  ``ssl``: a server-side ``ssl.SSLContext``;
    each connection is handshaken within ``handshake_timeout`` seconds before
    its handler runs.  Binding errors (a port in use) raise ``OSError`` here.
    """
    if sock is None:
        sock = yield from _resolve_and_listen(host, port, backlog, reuse_port)
    yield from _serve(sock, handler, ssl, max_connections, handshake_timeout)


@types.coroutine
def serve_unix(
    handler: Handler,
    path: str | None = None,
    *,
    sock: socket.socket | None = None,
    ssl: _ssl.SSLContext | None = None,
    backlog: int = DEFAULT_BACKLOG,
    max_connections: int | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
) -> Generator[Any, Any, None]:
    """Serve connections on the Unix socket ``path`` with ``handler(stream)`` until cancelled.

    Listens on ``path`` (see :func:`unix_listener`; the socket file is
    removed when the server ends) or on ``sock``, a listening Unix socket
    the server then owns (its file is left in place).  The rest is as for
    :func:`serve_tcp`.
    """
    if sock is None:
        if path is None:
            raise TypeError("serve_unix needs a path or a listening sock")
        sock = unix_listener(path, backlog=backlog)
        try:
            yield from _serve(sock, handler, ssl, max_connections, handshake_timeout)
        finally:
            if not _is_abstract(path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
    else:
        yield from _serve(sock, handler, ssl, max_connections, handshake_timeout)


def _check_server_context(context: object) -> None:
    if context is not None and not isinstance(context, _ssl.SSLContext):
        raise TypeError(f"ssl must be a server-side ssl.SSLContext or None, got {type(context).__name__}")


@types.coroutine
def _resolve_and_listen(host: str | None, port: int, backlog: int, reuse_port: bool) -> Generator[Any, Any, socket.socket]:
    if host is None or host == "":
        return _listen_anywhere(port, backlog, reuse_port)
    try:  # an address needs no resolver, and no thread
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST)
    except socket.gaierror:
        infos = yield from getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    return _listen(family, address, backlog, reuse_port)


class _Accept(Event):
    """Accepts a connection on the listening socket into ``connections.accepted``.

    Like ``AcceptEvent`` (it backs off when fds or memory run out and skips
    ECONNABORTED), except that the new socket is kept by the server, not in
    the value the task resumes with: a cancel that reaches the server after
    the accept but before it runs would otherwise drop the socket unclosed.
    """

    __slots__ = ("listener", "connections")

    def __init__(self, listener: socket.socket, connections: _Connections) -> None:
        self.listener = listener
        self.connections = connections

    def _yield(self, loop: Any, task: Any) -> None:
        loop.wait_readable(self.listener.fileno(), self, task, self.listener)

    def _resume(self, loop: Any, task: Any) -> None:
        try:
            conn, address = self.listener.accept()
        except OSError as exc:
            if exc.errno in ACCEPT_BACKOFF_ERRNOS:
                accept_backoff(loop, self, task, self.listener, exc)
                return
            if exc.errno == errno.ECONNABORTED:
                self._yield(loop, task)  # the peer left first: not the server's problem
                return
            raise
        conn.setblocking(False)
        self.connections.accepted.append((conn, address))
        loop.reschedule(task, None)


class _Connections:
    """One server's connections: accepted ones not yet handed to a task, and
    each live handler task with its socket."""

    __slots__ = ("loop", "accepted", "live", "permits")

    def __init__(self, loop: Any, max_connections: int | None) -> None:
        self.loop = loop
        self.accepted: list[tuple[socket.socket, Any]] = []
        self.live: dict[Any, socket.socket] = {}
        self.permits = None if max_connections is None else Semaphore(_check_max_connections(max_connections))

    def close_accepted(self) -> None:
        for conn, _ in self.accepted:
            conn.close()
        self.accepted.clear()

    @types.coroutine
    def cancel_all(self) -> Generator[Any, Any, None]:
        """Cancel every handler and wait until each has finished."""
        interruption: BaseException | None = None
        for task in list(self.live):
            task.cancel()
        while self.live:
            task = next(iter(self.live))
            try:
                yield WaitFinished(task)
            except GeneratorExit:
                raise
            except BaseException as exc:
                # Cancelled again while waiting: the handlers still end first.
                interruption = interruption or exc
                continue
            self.live.pop(task, None)  # its cleanup did; never wait on it twice
        if interruption is not None:
            raise interruption


def _check_max_connections(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_connections must be an int or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"max_connections must be at least 1, got {value}")
    return value


@types.coroutine
def _serve(
    listener: socket.socket,
    handler: Handler,
    context: _ssl.SSLContext | None,
    max_connections: int | None,
    handshake_timeout: float | None,
) -> Generator[Any, Any, None]:
    try:
        _check_server_context(context)
        if listener.getblocking():
            listener.setblocking(False)
        loop, _ = yield CurrentTask()
        connections = _Connections(loop, max_connections)
        permits = connections.permits
        accept = _Accept(listener, connections)
    except BaseException:
        listener.close()
        raise
    try:
        while True:
            if permits is not None:
                yield from permits.acquire()  # pauses accepting at max_connections
            try:
                yield accept
            except BaseException:
                if permits is not None:
                    permits.release()
                raise
            conn, address = connections.accepted.pop()
            _no_delay(conn)
            slot = TaskSlot()
            serving = _serve_connection(conn, address, handler, context, handshake_timeout, connections, slot)
            next(serving)  # into its try: a cancel before its first step still runs its cleanup
            task = loop.call_soon(serving)
            slot.task = task
            task.name = f"connection from {_describe(address)}"
            connections.live[task] = conn
    except GeneratorExit:
        listener.close()  # the loop is closing: it closes the handlers itself
        connections.close_accepted()
        raise
    finally:
        if listener.fileno() >= 0:
            try:
                yield CloseSocket(listener)  # no new connection from here on
            finally:  # even if a second cancel lands right here
                connections.close_accepted()
                yield from connections.cancel_all()


@types.coroutine
def _serve_connection(
    conn: socket.socket,
    address: Any,
    handler: Handler,
    context: _ssl.SSLContext | None,
    handshake_timeout: float | None,
    connections: _Connections,
    slot: TaskSlot,
) -> Generator[Any, Any, None]:
    stream: Stream | None = None
    loop_closing = False
    try:
        yield  # where _serve starts it, before the loop does
        if context is None:
            stream = new_stream(conn)
        else:
            try:
                layer = yield from handshake(conn, context, server_side=True, handshake_timeout=handshake_timeout)
            except (_ssl.SSLError, OSError) as exc:  # TimeoutError is an OSError
                logger.debug("TLS handshake with %s failed: %r", _describe(address), exc)
                return
            stream = new_stream(conn, tls=layer)
        yield from handler(stream)
    except GeneratorExit:
        loop_closing = True  # nothing may wait now
        raise
    except Exception as exc:  # a Cancelled (a BaseException) goes on, as it must
        connections.loop.call_exception_handler(
            {"message": HANDLER_FAILED, "exception": exc, "task": slot.task, "peername": address}
        )
    finally:
        connections.live.pop(slot.task, None)
        if connections.permits is not None:
            connections.permits.release()
        if loop_closing or stream is None:
            conn.close()
        else:
            try:
                yield from stream.close()  # close_notify first, with TLS
            except OSError:
                pass  # the peer is gone; the socket is closed all the same


def _no_delay(conn: socket.socket) -> None:
    """Send small replies at once (no Nagle delay), as request/response protocols need."""
    if conn.family in (socket.AF_INET, socket.AF_INET6):
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the peer already left; the handler will find out


def _describe(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return repr(address) if address else "a Unix socket"
