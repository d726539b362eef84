"""An echo server in the seed's style: ``python examples/echo_server.py [port]``."""

import socket
import sys
from collections.abc import Generator
from typing import Any

import aioc
from aioc import AcceptEvent, ReadEvent, sendall


def handle(conn: socket.socket) -> Generator[Any, Any, None]:
    try:
        while True:
            data = yield ReadEvent(conn)
            if not data:
                break
            yield from sendall(conn, data)
    except ConnectionError:
        pass  # the peer went away
    finally:
        conn.close()


def server(loop: aioc.EventLoop, port: int) -> Generator[Any, Any, None]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    print(f"echo server on 127.0.0.1:{port} ({aioc.IMPLEMENTATION} loop)")
    while True:
        conn, _ = yield AcceptEvent(sock)
        loop.call_soon(handle(conn))


if __name__ == "__main__":
    with aioc.EventLoop() as loop:
        loop.call_soon(server(loop, int(sys.argv[1]) if len(sys.argv) > 1 else 8888))
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            pass
