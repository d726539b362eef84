"""Buffered byte streams over connected sockets: :class:`Stream`.

A ``Stream`` wraps a connected non-blocking socket (TCP or Unix) and adds what
protocols need on top of raw events: reading exactly ``n`` bytes, reading up
to a separator (``readline``), writing with backpressure and sending files
with ``os.sendfile``.  Every operation is a generator coroutine
(``yield from stream.read()``, or ``await stream.read()``), written only
against the loop's contract (:mod:`aioc.lowlevel`), so it runs on both loops
and obeys deadlines (``timeout_after``) and ``Task.cancel``.

The buffer
    Received bytes land in a :class:`StreamBuffer`: one ``bytearray`` whose
    consumed prefix is dropped only once it is large (or everything is
    consumed), so taking a short line costs no copy of the rest.  A search
    for a separator looks only at the bytes that arrived since its previous
    pass, so a peer that sends one byte at a time costs linear, not
    quadratic, time.  Bytes are put in the buffer by the receiving event
    itself, before the task resumes: a read cancelled (or timed out) after
    the bytes arrived leaves them buffered for the next read.

Limits and ends
    ``readline``/``read_until`` give the data up to and including the
    separator, which must lie within ``limit`` bytes.  When it does not,
    :class:`LimitOverrunError` is raised and nothing is consumed: the stream
    stays usable, and the over-limit bytes can be read with ``read()`` (or
    the connection closed).  At a clean end of stream they return ``b''``;
    an unterminated tail at the end of stream raises
    :class:`IncompleteReadError` carrying the tail in ``.partial``, and the
    tail is consumed (the next call returns ``b''``), so a truncated line is
    never mistaken for a complete one.

One reader and one writer
    One task reads a stream at a time and one task writes it (a second
    waiting reader gets ``ResourceBusy``, as on a socket); a reader and a
    writer may run at once.

Writing
    ``write`` returns once the kernel has taken every byte, waiting while the
    socket's send buffer is full: a peer that never reads stalls its writer
    instead of growing the server's memory.  A write cancelled midway has
    sent an unknown prefix; the connection should then be closed.
    ``write_eof`` ends the writing half only (a half-close), so a peer that
    reads until end of stream can answer on the same connection.

The TLS hook
    ``Stream(sock, tls=layer)`` runs the stream over an already-handshaken
    layer object instead of the raw socket.  The layer provides three
    generator methods, and the stream then does all its I/O through them
    (its buffering sits above the layer, since one TLS record can hold many
    lines and one line many records):

    - ``layer.receive(max_bytes) -> bytes``: up to ``max_bytes`` of
      plaintext, ``b''`` at a clean end;
    - ``layer.send(data) -> None``: returns once all of ``data`` is handed on;
    - ``layer.close() -> None``: close_notify, best effort.

    ``sendfile`` then reads the file and writes through the layer,
    ``write_eof`` closes the layer (the socket stays open), and ``close``
    closes the layer before the socket.  Without a layer the stream
    uses the socket directly: that is the fast path.

The compiled twin
    This module is the specification.  The compiled loop has twins of
    :class:`StreamBuffer` and :class:`Stream` with the same names and
    behaviour (``aioc/_compiled/streams.pxi``), and ``aioc.Stream`` is the
    compiled one when the compiled loop is in use.  Both twins run on both
    loops.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import types
from collections.abc import Generator
from typing import Any, BinaryIO, Optional, Union

from .events import SendAll, _DONTWAIT

__all__ = ["Stream", "IncompleteReadError", "LimitOverrunError"]

BytesLike = Union[bytes, bytearray, memoryview]

#: What ``read`` and ``readline`` default to, and what one receive asks for.
DEFAULT_LIMIT = 65536
#: The consumed prefix of the buffer is dropped once it is at least this
#: long and at least half the buffer (or at once when all is consumed).
COMPACT_AT = 65536
#: Bytes read from a file per write when ``sendfile`` cannot use os.sendfile.
SENDFILE_CHUNK = 65536


class IncompleteReadError(EOFError):
    """The stream ended before the expected bytes arrived.

    ``partial`` holds the bytes that did arrive (consumed from the stream);
    ``expected`` is the count asked for, or ``None`` when a separator was.
    """

    def __init__(self, partial: bytes, expected: Optional[int]) -> None:
        wanted = "a separator" if expected is None else f"{expected} bytes"
        super().__init__(f"stream ended after {len(partial)} bytes, expected {wanted}")
        self.partial = partial
        self.expected = expected

    def __reduce__(self) -> Any:
        return type(self), (self.partial, self.expected)


class LimitOverrunError(Exception):
    """No separator within ``limit`` bytes.

    Nothing was consumed: the ``consumed`` bytes searched are still buffered,
    and ``read()`` returns them.
    """

    def __init__(self, message: str, consumed: int) -> None:
        super().__init__(message)
        self.consumed = consumed

    def __reduce__(self) -> Any:
        return type(self), (self.args[0], self.consumed)


class StreamBuffer:
    """The bytes a stream received and its reader has not consumed yet.

    Offsets given to and returned by :meth:`find` count from the first
    unconsumed byte.  The compiled loop has a twin of this class, with the
    same methods, that keeps the bytes in C memory.
    """

    __slots__ = ("_data", "_start")

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0  # bytes of _data already consumed

    def __len__(self) -> int:
        return len(self._data) - self._start

    def append(self, data: BytesLike) -> None:
        """Add received bytes at the end."""
        self._data += data

    def find(self, separator: bytes, begin: int, end: int) -> int:
        """Where ``separator`` first lies wholly within ``[begin, end)``; -1 if nowhere."""
        if begin < 0 or end < 0:
            raise ValueError("begin and end must be zero or more")
        start = self._start
        index = self._data.find(separator, start + begin, start + end)
        return index - start if index >= 0 else -1

    def take(self, n: int) -> bytes:
        """Consume and return the first ``n`` bytes (all of them if fewer are buffered)."""
        if n < 0:
            raise ValueError(f"n must be zero or more, got {n}")
        data, start = self._data, self._start
        end = start + n
        if end >= len(data):
            taken = bytes(data) if start == 0 else bytes(data[start:])
            data.clear()
            self._start = 0
            return taken
        taken = bytes(data[start:end])
        if end >= COMPACT_AT and end * 2 >= len(data):
            del data[:end]
            end = 0
        self._start = end
        return taken


class Receive:
    """Waits until the stream's socket is readable, then receives into its buffer.

    The bytes go into the buffer in ``_resume``, before the task runs again,
    so a cancel or a deadline that reaches the task in between loses nothing.
    Resumes with the number of bytes received (0 at end of stream).
    """

    __slots__ = ("stream", "nbytes")

    def __init__(self, stream: Stream, nbytes: int) -> None:
        self.stream = stream
        self.nbytes = nbytes

    def _yield(self, loop: Any, task: Any) -> None:
        sock = self.stream._sock
        loop.wait_readable(sock.fileno(), self, task, sock)

    def _resume(self, loop: Any, task: Any) -> None:
        # A BlockingIOError here (a spurious wake-up) makes the loop wait again.
        data = self.stream._sock.recv(self.nbytes, _DONTWAIT)
        self.stream._received(data)
        loop.reschedule(task, len(data))


class SendFile:
    """Sends ``count`` bytes of the file ``fd`` from ``offset`` with ``os.sendfile``.

    Like :class:`SendAll`: sends at once as far as the socket takes, waits
    for writability when its buffer is full, and resumes with the bytes sent
    (fewer than ``count`` only if the file ended first).
    """

    __slots__ = ("sock", "fd", "offset", "count", "sent")

    def __init__(self, sock: socket.socket, fd: int, offset: int, count: int) -> None:
        self.sock = sock
        self.fd = fd
        self.offset = offset
        self.count = count
        self.sent = 0

    def _yield(self, loop: Any, task: Any) -> None:
        out = self.sock.fileno()
        try:
            while self.sent < self.count:
                n = os.sendfile(out, self.fd, self.offset + self.sent, self.count - self.sent)
                if n == 0:
                    break  # the file is shorter than count
                self.sent += n
        except BlockingIOError:
            loop.wait_writable(out, self, task, self.sock)
        else:
            loop.reschedule(task, self.sent)

    _resume = _yield


class CloseSocket:
    """Closes a socket through the loop, so that tasks waiting on it are woken."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def _yield(self, loop: Any, task: Any) -> None:
        close_socket = getattr(loop, "close_socket", None)
        if close_socket is None:
            self.sock.close()
        else:
            close_socket(self.sock)
        loop.reschedule(task, None)

    def _resume(self, loop: Any, task: Any) -> None:  # never called: completes in _yield
        raise NotImplementedError


def check_size(value: object, what: str) -> int:
    """A byte count that must be an int above zero."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{what} must be above zero, got {value}")
    return value


class Stream:
    """A buffered byte stream over a connected non-blocking socket.

    ``tls`` is an already-handshaken layer with generator methods
    ``receive``, ``send`` and ``close``; see the module's documentation.
    """

    __slots__ = ("_sock", "_tls", "_buffer", "_eof", "_closed", "_peername")

    def __init__(self, sock: socket.socket, *, tls: Any = None) -> None:
        if sock.getblocking():
            sock.setblocking(False)
        self._sock = sock
        self._tls = tls
        self._buffer = StreamBuffer()
        self._eof = False
        self._closed = False
        self._peername: Any = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._buffer)} bytes buffered"
        return f"<Stream fd={self._sock.fileno()} {state}{' tls' if self._tls is not None else ''}>"

    @property
    def socket(self) -> socket.socket:
        """The underlying socket."""
        return self._sock

    @property
    def tls(self) -> Any:
        """The TLS layer the stream runs over (an ``aioc.tls.TLSLayer``), or ``None``."""
        return self._tls

    @property
    def peername(self) -> Any:
        """The peer's address (asked once, then remembered)."""
        if self._peername is None:
            self._peername = self._sock.getpeername()
        return self._peername

    # -- the buffer ------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        if data:
            self._buffer.append(data)
        else:
            self._eof = True

    @types.coroutine
    def _fill(self, nbytes: int) -> Generator[Any, Any, int]:
        """Receive once into the buffer; the count received, 0 at end of stream."""
        if self._eof:
            return 0
        if self._closed:
            raise OSError(errno.EBADF, "the stream is closed")
        if self._tls is None:
            # A new event each time: one kept on the stream would make a cycle.
            received: int = yield Receive(self, nbytes)
            return received
        data = yield from self._tls.receive(nbytes)
        self._received(data)
        return len(data)

    # -- reading ---------------------------------------------------------------

    @types.coroutine
    def read(self, max_bytes: int = DEFAULT_LIMIT) -> Generator[Any, Any, bytes]:
        """Up to ``max_bytes``: the buffered bytes if any, else one receive; ``b''`` at end of stream."""
        check_size(max_bytes, "max_bytes")
        if not self._buffer:
            yield from self._fill(max_bytes)
        return self._buffer.take(max_bytes)

    @types.coroutine
    def read_exactly(self, n: int) -> Generator[Any, Any, bytes]:
        """Exactly ``n`` bytes; :class:`IncompleteReadError` if the stream ends first."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be zero or more, got {n}")
        buffer = self._buffer
        while len(buffer) < n:
            if not (yield from self._fill(DEFAULT_LIMIT)):
                raise IncompleteReadError(buffer.take(len(buffer)), n)
        return buffer.take(n)

    @types.coroutine
    def readline(self, limit: int = DEFAULT_LIMIT) -> Generator[Any, Any, bytes]:
        """``read_until(b"\\n", limit)``."""
        return (yield from self.read_until(b"\n", limit))

    @types.coroutine
    def read_until(self, separator: bytes = b"\n", limit: int = DEFAULT_LIMIT) -> Generator[Any, Any, bytes]:
        """The data up to and including ``separator``, which must lie within ``limit`` bytes.

        ``b''`` at a clean end of stream; :class:`IncompleteReadError` (with
        the tail, now consumed) if the stream ends inside a line;
        :class:`LimitOverrunError` (nothing consumed) if no separator lies
        within ``limit`` bytes.
        """
        width = len(separator)
        if not width:
            raise ValueError("the separator must not be empty")
        check_size(limit, "limit")
        buffer = self._buffer
        searched = 0  # no separator starts before this offset
        while True:
            end = min(len(buffer), limit)
            index = buffer.find(separator, searched, end)
            if index >= 0:
                return buffer.take(index + width)
            if end >= limit:
                raise LimitOverrunError(f"no separator within {limit} bytes", end)
            # Only the last width - 1 bytes can start a separator that the
            # next bytes complete.
            searched = max(0, end - width + 1)
            if not (yield from self._fill(DEFAULT_LIMIT)):
                tail = buffer.take(len(buffer))
                if tail:
                    raise IncompleteReadError(tail, None)
                return b""

    # -- writing ---------------------------------------------------------------

    @types.coroutine
    def write(self, data: BytesLike) -> Generator[Any, Any, None]:
        """Hand every byte of ``data`` to the kernel, waiting while its buffer is full."""
        if self._closed:
            raise OSError(errno.EBADF, "the stream is closed")
        if self._tls is None:
            yield SendAll(self._sock, data)
        else:
            yield from self._tls.send(data)

    @types.coroutine
    def sendfile(self, file: BinaryIO, offset: int = 0, count: Optional[int] = None) -> Generator[Any, Any, int]:
        """Send ``count`` bytes of ``file`` from ``offset`` (to its end when ``count`` is None).

        Uses ``os.sendfile`` on a raw socket and a file with a ``fileno``;
        otherwise (a TLS layer, an in-memory file) reads the file and writes
        (those file reads block, as reads of local files do).  Returns the
        bytes sent, fewer than ``count`` only if the file ended first, and
        leaves the file's position just after them.
        """
        if self._closed:
            raise OSError(errno.EBADF, "the stream is closed")
        if offset < 0 or (count is not None and count < 0):
            raise ValueError("offset and count must be zero or more")
        fd = self._file_descriptor(file) if self._tls is None else None
        if fd is None:
            return (yield from self._copy_file(file, offset, count))
        if count is None:
            count = max(0, os.fstat(fd).st_size - offset)
        sent: int = yield SendFile(self._sock, fd, offset, count)
        file.seek(offset + sent)
        return sent

    @staticmethod
    def _file_descriptor(file: Any) -> Optional[int]:
        try:
            fd: int = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            return None
        return fd

    @types.coroutine
    def _copy_file(self, file: BinaryIO, offset: int, count: Optional[int]) -> Generator[Any, Any, int]:
        file.seek(offset)
        sent = 0
        while count is None or sent < count:
            chunk = file.read(SENDFILE_CHUNK if count is None else min(SENDFILE_CHUNK, count - sent))
            if not chunk:
                break
            yield from self.write(chunk)
            sent += len(chunk)
        return sent

    @types.coroutine
    def write_eof(self) -> Generator[Any, Any, None]:
        """End the writing half: the peer reads end of stream after the last
        byte written.  Reading goes on; a later write raises BrokenPipeError.

        Over TLS it sends close_notify: TLS 1.3 keeps the other half open
        (the peer may go on writing), while a TLS 1.2 peer ends the session.
        """
        if self._closed:
            raise OSError(errno.EBADF, "the stream is closed")
        if self._tls is None:
            self._sock.shutdown(socket.SHUT_WR)
        else:
            yield from self._tls.close()

    # -- closing ---------------------------------------------------------------

    @types.coroutine
    def close(self) -> Generator[Any, Any, None]:
        """Close the TLS layer (if any), then the socket.  Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._tls is not None:
                yield from self._tls.close()
        except BaseException:
            self._sock.close()  # no waiting here: the task may be being closed
            raise
        yield CloseSocket(self._sock)

    @types.coroutine
    def __aenter__(self) -> Generator[Any, Any, Stream]:
        return self
        yield  # a generator, so that it can be awaited

    @types.coroutine
    def __aexit__(self, *exc_info: Any) -> Generator[Any, Any, None]:
        yield from self.close()
