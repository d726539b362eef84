"""The program tests/test_workers.py supervises: ``python workers_app.py PORT WORKERS MODE [GRACE]``.

Each worker listens on 127.0.0.1:PORT with SO_REUSEPORT and answers every
connection with its pid and a newline.  MODE:

- ``serve``: SIGTERM or SIGINT make the worker print ``stopped PID`` and exit 0;
- ``ignore-term``: the worker ignores SIGTERM (so it must be killed);
- ``crash``: the worker raises at start, every time.

The supervisor's log goes to stderr; its status is the program's.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Generator
from typing import Any

import aioc


def serve(port: int, mode: str) -> Generator[Any, Any, None]:
    if mode == "crash":
        raise RuntimeError("this worker fails at start")
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        yield from aioc.watch_signals(signal.SIGTERM, signal.SIGINT)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    accepting = yield aioc.Spawn(accept_loop(listener))
    if mode == "ignore-term":
        yield aioc.Join(accepting)
    yield from aioc.wait_signal(signal.SIGTERM, signal.SIGINT)
    accepting.cancel()
    listener.close()
    sys.stdout.write(f"stopped {os.getpid()}\n")  # one write: the workers share this stdout
    sys.stdout.flush()


def accept_loop(listener: socket.socket) -> Generator[Any, Any, None]:
    while True:
        conn, _ = yield aioc.AcceptEvent(listener)
        yield aioc.Spawn(answer(conn))


def answer(conn: socket.socket) -> Generator[Any, Any, None]:
    try:
        yield from aioc.sendall(conn, b"%d\n" % os.getpid())
    finally:
        conn.close()


def main() -> None:
    port, workers, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    grace = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="supervisor: %(message)s")
    status = aioc.run_workers(lambda: serve(port, mode), workers=workers, grace=grace,
                              min_uptime=0.5, max_failures=3, backoff=0.05)
    print(f"supervisor exits {status}", flush=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
