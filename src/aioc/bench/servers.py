"""The Python servers under test, each run in its own process.

``python -m aioc.bench.servers KIND`` listens on 127.0.0.1, one ephemeral port
per reply mode (see :mod:`aioc.bench.protocol`), prints one line
``READY <pid> <implementation> <port>...`` and serves until it is killed or
its ``--lifetime`` runs out.  KIND is ``aioc`` (raw events, with
``--backend``), ``aioc-streams`` (``aioc.serve_tcp`` and ``aioc.Stream``),
``asyncio-protocol`` or ``asyncio-streams`` (with ``--uvloop`` for uvloop's
loop), ``curio`` or ``trio``.  The streams servers speak TLS on every port
with ``--tls CERT KEY``.  The aioc server is written the way the seed
tutorial writes one; curio's and trio's are its closest match, a task per
connection over their socket wrappers.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import sys

from . import protocol
from .system import raise_nofile_limit

KINDS = ("aioc", "aioc-streams", "asyncio-protocol", "asyncio-streams", "curio", "trio")
BACKLOG = 4096


def listen_sockets() -> list[socket.socket]:
    """One listening socket per reply mode, on 127.0.0.1 and ephemeral ports."""
    socks = []
    for _ in protocol.MODES:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(BACKLOG)
        socks.append(sock)
    return socks


def modes(socks: list[socket.socket]) -> list[tuple[socket.socket, bytes, bool]]:
    """Each listening socket with what its port serves: ``(sock, reply, close after it)``."""
    return [(sock, protocol.reply_for(mode), protocol.closes(mode)) for sock, mode in zip(socks, protocol.MODES)]


def announce(socks: list[socket.socket], implementation: str) -> None:
    ports = " ".join(str(sock.getsockname()[1]) for sock in socks)
    sys.stdout.write(f"READY {os.getpid()} {implementation} {ports}\n")
    sys.stdout.flush()


# -- aioc ----------------------------------------------------------------------


def _run_aioc(socks: list[socket.socket], backend: str, serve) -> None:
    """Run ``serve(loop, sock, reply, close)``, a server coroutine, for every port on one aioc loop."""
    import aioc

    loop = aioc.EventLoop(backend=backend)
    for sock, reply, close in modes(socks):
        loop.call_soon(serve(loop, sock, reply, close))
    announce(socks, f"aioc-{aioc.IMPLEMENTATION}-{loop.backend}")
    loop.run_forever()


def serve_aioc(socks: list[socket.socket], backend: str) -> None:
    from aioc import AcceptEvent, ReadEvent, SendAll

    def handle(conn, reply, close):
        pending = b""
        try:
            while True:
                data = yield ReadEvent(conn)
                if not data:
                    break
                count, pending = protocol.split_requests(pending, data)
                if count:
                    yield SendAll(conn, reply if count == 1 else reply * count)
                    if close:
                        break
                elif len(pending) > protocol.MAX_REQUEST:
                    break
        except OSError:
            pass
        finally:
            conn.close()

    def server_loop(loop, sock, reply, close):
        while True:
            try:
                conn, addr = yield AcceptEvent(sock)
            except OSError:
                continue
            loop.call_soon(handle(conn, reply, close))

    _run_aioc(socks, backend, server_loop)


def serve_aioc_streams(socks: list[socket.socket], backend: str, context: ssl.SSLContext | None) -> None:
    """The same server through aioc's streams API, the counterpart of ``asyncio.start_server``:
    ``aioc.serve_tcp`` hands each connection to the handler as an ``aioc.Stream`` (TLS-handshaken
    first when ``context`` is given), which reads and writes instead of raw events."""
    import aioc

    def handler(reply: bytes, close: bool):
        def handle(stream):
            pending = b""
            try:
                while True:
                    data = yield from stream.read(65536)
                    if not data:
                        break
                    count, pending = protocol.split_requests(pending, data)
                    if count:
                        yield from stream.write(reply if count == 1 else reply * count)
                        if close:
                            break
                    elif len(pending) > protocol.MAX_REQUEST:
                        break
            except OSError:  # a peer that resets is not the server's failure (ssl.SSLError is an OSError)
                pass

        return handle

    def serve(loop, sock: socket.socket, reply: bytes, close: bool):
        sock.setblocking(False)
        return aioc.serve_tcp(handler(reply, close), sock=sock, ssl=context)

    _run_aioc(socks, backend, serve)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """Every TLS server's context: the defaults of a server, with the run's certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# -- asyncio and uvloop ---------------------------------------------------------


def _run_asyncio(socks: list[socket.socket], use_uvloop: bool, start_server) -> None:
    """Start ``start_server(loop, sock, reply, close)`` for every port on one asyncio (or uvloop) loop, and run it."""
    import asyncio

    if use_uvloop:
        import uvloop

        loop, name = uvloop.new_event_loop(), f"uvloop-{uvloop.__version__}"
    else:
        loop, name = asyncio.new_event_loop(), "asyncio"
    asyncio.set_event_loop(loop)
    for sock, reply, close in modes(socks):
        loop.run_until_complete(start_server(loop, sock, reply, close))
    announce(socks, name)
    loop.run_forever()


def serve_asyncio_protocol(socks: list[socket.socket], use_uvloop: bool) -> None:
    import asyncio

    class Server(asyncio.Protocol):
        __slots__ = ("transport", "pending", "reply", "close")

        def __init__(self, reply: bytes, close: bool) -> None:
            self.reply = reply
            self.close = close
            self.pending = b""
            self.transport = None

        def connection_made(self, transport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            count, self.pending = protocol.split_requests(self.pending, data)
            if count:
                self.transport.write(self.reply if count == 1 else self.reply * count)
                if self.close:
                    self.transport.close()
            elif len(self.pending) > protocol.MAX_REQUEST:
                self.transport.close()

    def start_server(loop, sock: socket.socket, reply: bytes, close: bool):
        return loop.create_server(lambda: Server(reply, close), sock=sock, backlog=BACKLOG)

    _run_asyncio(socks, use_uvloop, start_server)


def serve_asyncio_streams(socks: list[socket.socket], use_uvloop: bool, context: ssl.SSLContext | None) -> None:
    import asyncio

    def handler(reply: bytes, close: bool):
        async def handle(reader, writer) -> None:
            pending = b""
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    count, pending = protocol.split_requests(pending, data)
                    if count:
                        writer.write(reply if count == 1 else reply * count)
                        await writer.drain()
                        if close:
                            break
                    elif len(pending) > protocol.MAX_REQUEST:
                        break
            except OSError:
                pass
            finally:
                writer.close()

        return handle

    def start_server(loop, sock: socket.socket, reply: bytes, close: bool):
        return asyncio.start_server(handler(reply, close), sock=sock, backlog=BACKLOG, ssl=context)

    _run_asyncio(socks, use_uvloop, start_server)


# -- curio and trio -------------------------------------------------------------------


def serve_curio(socks: list[socket.socket]) -> None:
    """curio's own idiom for aioc's raw-event server: ``curio.io.Socket`` accept,
    ``recv`` and ``sendall``, a daemon task per connection."""
    import curio
    from curio.io import Socket

    async def handle(conn, reply: bytes, close: bool) -> None:
        pending = b""
        async with conn:
            try:
                while True:
                    data = await conn.recv(65536)
                    if not data:
                        break
                    count, pending = protocol.split_requests(pending, data)
                    if count:
                        await conn.sendall(reply if count == 1 else reply * count)
                        if close:
                            break
                    elif len(pending) > protocol.MAX_REQUEST:
                        break
            except OSError:
                pass

    async def server_loop(sock: socket.socket, reply: bytes, close: bool) -> None:
        listener = Socket(sock)
        while True:
            try:
                conn, addr = await listener.accept()
            except OSError:
                continue
            await curio.spawn(handle, conn, reply, close, daemon=True)

    async def main() -> None:
        async with curio.TaskGroup() as group:
            for sock, reply, close in modes(socks):
                await group.spawn(server_loop, sock, reply, close)
            announce(socks, f"curio-{curio.__version__}")

    curio.run(main)


def serve_trio(socks: list[socket.socket]) -> None:
    """trio at the level of aioc's raw-event server: ``trio.socket`` accept,
    ``recv`` and ``send`` (trio sockets have no ``sendall``, so a short loop),
    a nursery task per connection.  ``trio.serve_tcp`` with ``SocketStream``
    would add its stream layer on top of these same calls."""
    import trio

    async def sendall(conn, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = await conn.send(view)
            view = view[sent:]

    async def handle(conn, reply: bytes, close: bool) -> None:
        pending = b""
        with conn:
            try:
                while True:
                    data = await conn.recv(65536)
                    if not data:
                        break
                    count, pending = protocol.split_requests(pending, data)
                    if count:
                        await sendall(conn, reply if count == 1 else reply * count)
                        if close:
                            break
                    elif len(pending) > protocol.MAX_REQUEST:
                        break
            except OSError:
                pass

    async def server_loop(nursery, sock: socket.socket, reply: bytes, close: bool) -> None:
        listener = trio.socket.from_stdlib_socket(sock)
        while True:
            try:
                conn, addr = await listener.accept()
            except OSError:
                continue
            nursery.start_soon(handle, conn, reply, close)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for sock, reply, close in modes(socks):
                nursery.start_soon(server_loop, nursery, sock, reply, close)
            announce(socks, f"trio-{trio.__version__}")

    trio.run(main)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aioc.bench.servers", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--backend", choices=("epoll", "select", "io_uring"), default="epoll", help="aioc's poller")
    parser.add_argument("--uvloop", action="store_true", help="asyncio servers on uvloop's loop")
    parser.add_argument("--lifetime", type=float, default=900.0, help="exit after this many seconds")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="streams servers: serve TLS with these files")
    args = parser.parse_args(argv)
    raise_nofile_limit()
    # Bounded in time even if whoever started it forgets to stop it.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, int(args.lifetime)))
    if args.tls and args.kind not in ("aioc-streams", "asyncio-streams"):
        parser.error("--tls: only the streams servers speak TLS")
    context = server_context(*args.tls) if args.tls else None
    socks = listen_sockets()
    if args.kind == "aioc":
        serve_aioc(socks, args.backend)
    elif args.kind == "aioc-streams":
        serve_aioc_streams(socks, args.backend, context)
    elif args.kind == "asyncio-protocol":
        serve_asyncio_protocol(socks, args.uvloop)
    elif args.kind == "asyncio-streams":
        serve_asyncio_streams(socks, args.uvloop, context)
    elif args.kind == "curio":
        serve_curio(socks)
    else:
        serve_trio(socks)


if __name__ == "__main__":
    main()
