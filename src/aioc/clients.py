"""Clients: open a connection and get an ``aioc.Stream`` over it.

``stream = yield from open_tcp(host, port)`` resolves ``host`` in a worker
thread (``aioc.getaddrinfo``: resolution blocks), tries each address it
gets, IPv6 and IPv4 alike, in the resolver's order, and returns a stream
over the first connection that succeeds; if none does, the last connect
error is raised.  ``open_unix(path)`` connects to a Unix socket.

With ``ssl`` (an ``ssl.SSLContext``, or ``True`` for
``ssl.create_default_context()``) the stream is TLS-handshaken as a client
first; ``server_hostname`` (SNI, and the name the certificate must carry)
defaults to ``host``.  ``timeout`` bounds everything (resolution, connects
and handshake) and raises ``TimeoutError``.  A failure closes every socket
the attempt made.
"""

from __future__ import annotations

import socket
import ssl as _ssl
import types
from collections.abc import Generator
from typing import Any, Union

from .events import ConnectEvent, timeout_after
from .streams import Stream
from .threads import getaddrinfo
from .tls import DEFAULT_HANDSHAKE_TIMEOUT, new_stream, start_tls

__all__ = ["open_tcp", "open_unix"]

SSLArgument = Union[_ssl.SSLContext, bool, None]


@types.coroutine
def open_tcp(
    host: str,
    port: int,
    *,
    ssl: SSLArgument = None,
    server_hostname: str | None = None,
    timeout: float | None = None,
) -> Generator[Any, Any, Stream]:
    """Connect to ``host``:``port``; a Stream (over TLS with ``ssl``)."""
    context = _client_context(ssl, server_hostname)
    if context is not None and server_hostname is None:
        server_hostname = host
    stream: Stream = yield from _bounded(timeout, _open_tcp(host, port, context, server_hostname))
    return stream


@types.coroutine
def open_unix(
    path: str,
    *,
    ssl: SSLArgument = None,
    server_hostname: str | None = None,
    timeout: float | None = None,
) -> Generator[Any, Any, Stream]:
    """Connect to the Unix socket ``path``; a Stream (over TLS with ``ssl``).

    A context that checks host names needs ``server_hostname`` here: a path
    is not a name a certificate carries.
    """
    context = _client_context(ssl, server_hostname)
    stream: Stream = yield from _bounded(timeout, _open_unix(path, context, server_hostname))
    return stream


def _client_context(ssl: SSLArgument, server_hostname: str | None) -> _ssl.SSLContext | None:
    if ssl is True:
        return _ssl.create_default_context()
    if ssl is None or ssl is False:
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        return None
    if not isinstance(ssl, _ssl.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext, True or None, got {type(ssl).__name__}")
    return ssl


@types.coroutine
def _bounded(timeout: float | None, coro: Any) -> Generator[Any, Any, Any]:
    if timeout is None:
        return (yield from coro)
    return (yield from timeout_after(timeout, coro))


@types.coroutine
def _open_tcp(
    host: str, port: int, context: _ssl.SSLContext | None, server_hostname: str | None
) -> Generator[Any, Any, Stream]:
    infos = yield from getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last_error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            yield ConnectEvent(sock, address)
        except OSError as exc:
            sock.close()
            last_error = exc  # try the next address
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return (yield from _stream_over(sock, context, server_hostname))
    assert last_error is not None  # getaddrinfo gives at least one address or raises
    raise last_error


@types.coroutine
def _open_unix(path: str, context: _ssl.SSLContext | None, server_hostname: str | None) -> Generator[Any, Any, Stream]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        yield ConnectEvent(sock, path)
    except BaseException:
        sock.close()
        raise
    return (yield from _stream_over(sock, context, server_hostname))


@types.coroutine
def _stream_over(
    sock: socket.socket, context: _ssl.SSLContext | None, server_hostname: str | None
) -> Generator[Any, Any, Stream]:
    if context is None:
        return new_stream(sock)
    try:
        return (yield from start_tls(
            sock, context, server_side=False, server_hostname=server_hostname,
            handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT,
        ))
    except BaseException:
        sock.close()
        raise
