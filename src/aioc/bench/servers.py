"""The Python servers under test, each run in its own process.

``python -m aioc.bench.servers KIND`` listens on 127.0.0.1, one ephemeral port
per reply mode (see :mod:`aioc.bench.protocol`), prints one line
``READY <pid> <implementation> <port>...`` and serves until it is killed or
its ``--lifetime`` runs out.  KIND is ``aioc`` (with ``--backend``),
``asyncio-protocol`` or ``asyncio-streams`` (with ``--uvloop`` for uvloop's
loop).  The aioc server is written the way the seed tutorial writes one.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys

from . import protocol
from .system import raise_nofile_limit

KINDS = ("aioc", "asyncio-protocol", "asyncio-streams")
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


def announce(socks: list[socket.socket], implementation: str) -> None:
    ports = " ".join(str(sock.getsockname()[1]) for sock in socks)
    sys.stdout.write(f"READY {os.getpid()} {implementation} {ports}\n")
    sys.stdout.flush()


# -- aioc ----------------------------------------------------------------------


def serve_aioc(socks: list[socket.socket], backend: str) -> None:
    import aioc
    from aioc import AcceptEvent, ReadEvent, sendall

    def handle(conn, reply, close):
        pending = b""
        try:
            while True:
                data = yield ReadEvent(conn)
                if not data:
                    break
                count, pending = protocol.split_requests(pending, data)
                if count:
                    yield from sendall(conn, reply if count == 1 else reply * count)
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

    loop = aioc.EventLoop(backend=backend)
    for sock, mode in zip(socks, protocol.MODES):
        loop.call_soon(server_loop(loop, sock, protocol.reply_for(mode), protocol.closes(mode)))
    announce(socks, f"aioc-{aioc.IMPLEMENTATION}-{loop.backend}")
    loop.run_forever()


# -- asyncio and uvloop ---------------------------------------------------------


def _new_loop(use_uvloop: bool):
    import asyncio

    if use_uvloop:
        import uvloop

        return uvloop.new_event_loop(), f"uvloop-{uvloop.__version__}"
    return asyncio.new_event_loop(), "asyncio"


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

    loop, name = _new_loop(use_uvloop)
    asyncio.set_event_loop(loop)
    for sock, mode in zip(socks, protocol.MODES):
        reply, close = protocol.reply_for(mode), protocol.closes(mode)
        loop.run_until_complete(
            loop.create_server(lambda reply=reply, close=close: Server(reply, close), sock=sock, backlog=BACKLOG)
        )
    announce(socks, name)
    loop.run_forever()


def serve_asyncio_streams(socks: list[socket.socket], use_uvloop: bool) -> None:
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

    loop, name = _new_loop(use_uvloop)
    asyncio.set_event_loop(loop)
    for sock, mode in zip(socks, protocol.MODES):
        loop.run_until_complete(
            asyncio.start_server(
                handler(protocol.reply_for(mode), protocol.closes(mode)), sock=sock, backlog=BACKLOG
            )
        )
    announce(socks, name)
    loop.run_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aioc.bench.servers", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--backend", choices=("epoll", "select", "io_uring"), default="epoll", help="aioc's poller")
    parser.add_argument("--uvloop", action="store_true", help="asyncio servers on uvloop's loop")
    parser.add_argument("--lifetime", type=float, default=900.0, help="exit after this many seconds")
    args = parser.parse_args(argv)
    raise_nofile_limit()
    # Bounded in time even if whoever started it forgets to stop it.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, int(args.lifetime)))
    socks = listen_sockets()
    if args.kind == "aioc":
        serve_aioc(socks, args.backend)
    elif args.kind == "asyncio-protocol":
        serve_asyncio_protocol(socks, args.uvloop)
    else:
        serve_asyncio_streams(socks, args.uvloop)


if __name__ == "__main__":
    main()
