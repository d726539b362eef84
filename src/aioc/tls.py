"""TLS driven by the loop: ``ssl.SSLObject`` over two memory buffers.

``ssl.SSLSocket`` cannot be driven by readiness: it decrypts ahead into a
buffer of its own, so a readable socket says nothing about what its ``recv``
returns.  Here OpenSSL never touches the socket.  It reads ciphertext from
one ``ssl.MemoryBIO`` (``incoming``) and writes ciphertext to another
(``outgoing``), and :class:`TLSLayer` moves the bytes between those buffers
and the socket with the loop's ordinary events (``ReadEvent``, ``SendAll``),
so TLS runs on both loops and on every backend.

The pump, the rule every method follows:

- after every ``SSLObject`` call, whatever OpenSSL wrote to ``outgoing`` is
  sent (handshake messages, alerts, session tickets, key updates and data
  alike), in the order it was written, even when several tasks share the
  layer (one reads while another writes);
- ``SSLWantReadError`` means "feed me ciphertext": one ``ReadEvent`` goes
  into ``incoming`` and the call is retried;
- data that OpenSSL has already decrypted is handed out before the socket
  is waited on again: :meth:`TLSLayer.receive` always asks OpenSSL first.

Cancellation never corrupts the session: ciphertext enters ``incoming`` in
the receiving event's ``_resume``, before the task runs again (a cancel
that lands in between loses nothing), ``receive`` does not wait once it
holds plaintext, and ciphertext that a cancelled send had not sent yet goes
out first at the next send.

Records and lines are unrelated (one record can hold many lines, one line
many records): buffering by line belongs to ``aioc.Stream`` above.

Ends of a session:

- :meth:`TLSLayer.close` sends close_notify and does not wait for the
  peer's (RFC 8446 §6.1 allows it; many peers just close);
- a peer that closes the connection without close_notify (a "ragged EOF",
  ``ssl.SSLEOFError``) is treated like one that sent it: :meth:`receive`
  returns ``b''``.  Protocols that frame their own messages (HTTP with
  Content-Length, say) lose nothing by it; the rare protocol that needs to
  tell truncation apart checks :attr:`TLSLayer.ragged_eof`.

Failed handshakes (garbage instead of a ClientHello, a certificate that does
not verify, a peer that leaves) raise ``ssl.SSLError`` in the task that
handshakes, so they end that connection only.  A handshake that does not
finish within ``handshake_timeout`` seconds raises ``TimeoutError``.

``stream = yield from start_tls(sock, context, server_side=...)`` handshakes
and returns an ``aioc.Stream`` that reads and writes through the layer;
``stream.tls`` is the layer, which tells what was negotiated
(:meth:`TLSLayer.selected_alpn_protocol`, :meth:`TLSLayer.version`,
:meth:`TLSLayer.getpeercert`, ...).
"""

from __future__ import annotations

import errno
import socket
import ssl
import types
from collections.abc import Callable, Generator
from typing import Any, Union

from .events import _DONTWAIT, DEFAULT_READ_SIZE, Event, check_nbytes, timeout_after
from ._loop import implementation
from .scopes import ignore_after
from .streams import Stream
from . import sync

__all__ = ["TLSLayer", "start_tls", "handshake", "DEFAULT_HANDSHAKE_TIMEOUT", "CLOSE_TIMEOUT"]

#: Seconds a handshake may take unless the caller says otherwise.
DEFAULT_HANDSHAKE_TIMEOUT = 60.0

#: Seconds :meth:`TLSLayer.close` may spend handing close_notify (and any
#: ciphertext still queued) to a peer that does not read.
CLOSE_TIMEOUT = 5.0

BytesLike = Union[bytes, bytearray, memoryview]

# Plaintext per SSLObject.write: big enough that large writes cost few sends,
# small enough that the ciphertext waiting in memory stays bounded.
_WRITE_CHUNK = 256 * 1024

# Plaintext asked of one SSLObject.read: a TLS record carries at most 16 KiB,
# and SSLObject.read allocates what it is asked for before it shrinks it.
_RECORD_SIZE = 16 * 1024

# The loop's own SendAll and Lock: the compiled loop runs its twins in C.
SendAll = implementation.SendAll
Lock = getattr(implementation, "Lock", sync.Lock)

#: Makes the streams the runtime hands out, as ``aioc.Stream`` does: the
#: compiled twin when the compiled loop is in use (it reads raw sockets in C).
new_stream: Callable[..., Stream] = getattr(implementation, "Stream", Stream)


class _ReceiveCiphertext(Event):
    """Waits until the layer's socket is readable, then feeds ``incoming``.

    The bytes go into the buffer in ``_resume``, before the task runs again,
    so a cancel or a deadline that reaches the task in between loses none.
    Resumes with the count received (0 at the end of the connection).
    """

    __slots__ = ("layer",)

    def __init__(self, layer: TLSLayer) -> None:
        self.layer = layer

    def _yield(self, loop: Any, task: Any) -> None:
        sock = self.layer.sock
        loop.wait_readable(sock.fileno(), self, task, sock)

    def _resume(self, loop: Any, task: Any) -> None:
        # A BlockingIOError here (a spurious wake-up) makes the loop wait again.
        data = self.layer.sock.recv(DEFAULT_READ_SIZE, _DONTWAIT)
        self.layer._feed(data)
        loop.reschedule(task, len(data))


class TLSLayer:
    """One TLS session over a connected socket, driven by the loop.

    Built by :func:`handshake` (or ``TLSLayer(...)`` then ``yield from
    layer.do_handshake()``).  Its I/O methods are generator coroutines that
    work with ``yield from`` and ``await``:

    - ``data = yield from layer.receive(max_bytes)``: up to ``max_bytes`` of
      plaintext, ``b''`` once the peer has ended the session (close_notify or
      a ragged EOF);
    - ``yield from layer.send(data)``: returns once every byte's ciphertext
      has been handed to the socket;
    - ``yield from layer.close()``: sends close_notify, best effort, within
      :data:`CLOSE_TIMEOUT` seconds; never waits for the peer's.  It leaves
      the socket open: the socket belongs to whoever made the layer.

    One task may receive while another sends.  A send cancelled half-way
    keeps the ciphertext it had not sent and the next send (or close) sends
    it first, so the session stays intact.
    """

    __slots__ = (
        "sock", "_sslobj", "_incoming", "_outgoing", "_unsent", "_sending", "_receiving", "_ciphertext",
        "_fills", "_eof_received", "_peer_done", "ragged_eof", "_closed",
    )

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._sslobj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self._unsent: bytes | memoryview = b""  # ciphertext taken from `outgoing` but not yet sent
        self._sending = Lock()  # keeps ciphertext in order when several tasks flush
        self._receiving = Lock()  # one reader of the socket at a time
        self._ciphertext = _ReceiveCiphertext(self)
        self._fills = 0  # how many times ciphertext went into `incoming`
        self._eof_received = False
        self._peer_done = False  # receive has returned b'' once: it always will
        #: True if the peer closed the connection without sending close_notify.
        self.ragged_eof = False
        self._closed = False

    def __repr__(self) -> str:
        side = "server" if self._sslobj.server_side else "client"
        return f"<TLSLayer {side} {self._sslobj.version() or 'handshaking'} fd={self.sock.fileno()}>"

    # -- what was negotiated ---------------------------------------------------

    @property
    def sslobject(self) -> ssl.SSLObject:
        """The ``ssl.SSLObject`` itself, for anything not mirrored below."""
        return self._sslobj

    @property
    def server_side(self) -> bool:
        return self._sslobj.server_side

    @property
    def server_hostname(self) -> str | None:
        """The name the client asked for (SNI) as this side knows it."""
        return self._sslobj.server_hostname

    def selected_alpn_protocol(self) -> str | None:
        """The protocol ALPN agreed on, or ``None``."""
        return self._sslobj.selected_alpn_protocol()

    def version(self) -> str | None:
        """``"TLSv1.3"``, ``"TLSv1.2"``, ...; ``None`` before the handshake."""
        return self._sslobj.version()

    def cipher(self) -> tuple[str, str, int] | None:
        return self._sslobj.cipher()

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The peer's certificate, as ``ssl.SSLSocket.getpeercert`` gives it."""
        return self._sslobj.getpeercert(binary_form)

    # -- the session -----------------------------------------------------------

    @types.coroutine
    def do_handshake(self) -> Generator[Any, Any, None]:
        """Run the handshake to its end; ``ssl.SSLError`` if it fails."""
        sslobj = self._sslobj
        while True:
            try:
                sslobj.do_handshake()
                break
            except ssl.SSLWantReadError:
                yield from self._flush()
                yield from self._fill()
            except ssl.SSLError:
                self._send_alert()
                raise
        yield from self._flush()  # the last flight, and a server's session tickets

    @types.coroutine
    def receive(self, max_bytes: int = DEFAULT_READ_SIZE) -> Generator[Any, Any, bytes]:
        """Up to ``max_bytes`` of plaintext; ``b''`` once the peer has ended the session.

        Returns as soon as some plaintext is there: it waits on the socket
        only when OpenSSL holds nothing decrypted, and never once it holds
        plaintext (so a cancel cannot lose any).  Whatever reading made
        OpenSSL say back (a key update, say) goes out at the next flush:
        before this layer next waits on the socket, or with the next send.
        """
        check_nbytes(max_bytes)
        if self._peer_done:
            return b""
        sslobj, incoming = self._sslobj, self._incoming
        chunks: list[bytes] = []
        total = 0
        while total < max_bytes:
            chunk: bytes | None = None  # None: nothing to hand out without more ciphertext
            # With nothing buffered a read could only say "want read": its exception is spared.
            if sslobj.pending() or incoming.pending or self._eof_received:
                try:
                    chunk = sslobj.read(min(max_bytes - total, _RECORD_SIZE))
                except ssl.SSLWantReadError:
                    pass  # part of a record, or a handshake message
                except ssl.SSLZeroReturnError:
                    chunk = b""  # close_notify, after we sent ours
                except ssl.SSLEOFError:
                    chunk = b""  # the connection ended without close_notify: a clean end (see above)
                    self.ragged_eof = True
            if chunk is None:
                if total:
                    break  # hand out what is there rather than wait with it
                if self._unsent or self._outgoing.pending:  # _flush's own test, spared a generator
                    yield from self._flush()
                yield from self._fill()
                continue
            if not chunk:
                self._peer_done = True
                break
            chunks.append(chunk)
            total += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @types.coroutine
    def send(self, data: BytesLike) -> Generator[Any, Any, None]:
        """Encrypt ``data`` and hand all of it to the socket."""
        if self._closed:
            raise BrokenPipeError(errno.EPIPE, "the TLS session's sending half is closed")
        view = memoryview(data).cast("B")
        sslobj = self._sslobj
        for start in range(0, len(view), _WRITE_CHUNK):
            piece = view[start : start + _WRITE_CHUNK]
            while True:
                try:
                    sslobj.write(piece)  # the outgoing buffer is unbounded: all of it
                    break
                except ssl.SSLWantReadError:
                    # Only a TLS 1.2 renegotiation asks a writer to read first.
                    yield from self._flush()
                    yield from self._fill()
            yield from self._flush()

    @types.coroutine
    def close(self) -> Generator[Any, Any, None]:
        """Send close_notify, best effort, without waiting for the peer's."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sslobj.unwrap()
        except ssl.SSLWantReadError:
            pass  # ours is written; the peer's has not come, and is not awaited
        except (ssl.SSLError, ValueError):
            return  # no session to close (a failed handshake, say)
        try:
            yield from ignore_after(CLOSE_TIMEOUT, self._flush())
        except OSError:
            pass  # the peer is gone: nobody is left to tell

    # -- the pump ----------------------------------------------------------------

    @types.coroutine
    def _flush(self) -> Generator[Any, Any, None]:
        """Send everything OpenSSL has written to ``outgoing``, in order."""
        if not self._unsent and not self._outgoing.pending:
            return
        yield from self._sending.acquire()
        try:
            # Another task may have sent our bytes while we waited for the
            # lock: ciphertext is one ordered byte stream, whoever sends it.
            while True:
                data = self._unsent or self._outgoing.read()
                if not data:
                    return
                self._unsent = b""
                event = SendAll(self.sock, data)
                try:
                    yield event
                except BaseException:
                    # Keep the rest: a record sent in part would corrupt the session.
                    self._unsent = memoryview(data)[event.sent :]
                    raise
        finally:
            self._sending.release()

    @types.coroutine
    def _fill(self) -> Generator[Any, Any, None]:
        """Move the ciphertext the socket has (waiting for some) into ``incoming``."""
        if self._eof_received:
            # OpenSSL asked for more after the connection ended: never wait again.
            raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol")
        fills = self._fills
        yield from self._receiving.acquire()
        try:
            if self._fills == fills:  # else another task fed `incoming` meanwhile: use that
                yield self._ciphertext
        finally:
            self._receiving.release()

    def _feed(self, data: bytes) -> None:
        """Put ciphertext from the socket into ``incoming``; ``b''`` marks its end."""
        if data:
            self._incoming.write(data)
        else:
            self._eof_received = True
            self._incoming.write_eof()
        self._fills += 1

    def _send_alert(self) -> None:
        """Tell the peer why its handshake failed, if the socket takes it at once."""
        alert = self._outgoing.read()
        if alert:
            try:
                self.sock.send(alert, _DONTWAIT)
            except OSError:
                pass  # best effort: the handshake's error is the one that matters


@types.coroutine
def handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
) -> Generator[Any, Any, TLSLayer]:
    """``layer = yield from handshake(sock, context, server_side=...)``: a TLS session.

    ``server_hostname`` is the name a client asks for (SNI) and checks the
    certificate against (when ``context.check_hostname``).  ALPN, certificates
    and verification are as ``context`` configures them.  Raises
    ``ssl.SSLError`` if the handshake fails and ``TimeoutError`` if it takes
    longer than ``handshake_timeout`` seconds (``None``: no bound).  The
    socket stays open either way: it is the caller's.
    """
    layer = TLSLayer(sock, context, server_side=server_side, server_hostname=server_hostname)
    if handshake_timeout is None:
        yield from layer.do_handshake()
    else:
        yield from timeout_after(handshake_timeout, layer.do_handshake())
    return layer


@types.coroutine
def start_tls(
    sock: socket.socket,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
) -> Generator[Any, Any, Stream]:
    """``stream = yield from start_tls(sock, context, server_side=...)``: a TLS stream.

    :func:`handshake`, then an ``aioc.Stream`` that reads and writes through
    the layer; ``stream.tls`` is the layer.  ``stream.close()`` sends
    close_notify and closes the socket.  If the handshake fails the socket
    stays open: it is the caller's to close.
    """
    layer = yield from handshake(
        sock, context, server_side=server_side, server_hostname=server_hostname, handshake_timeout=handshake_timeout
    )
    return new_stream(sock, tls=layer)
