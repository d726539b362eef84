"""An echo server in several processes: ``python examples/workers_server.py [--port PORT] [--workers N]``.

``aioc.run_workers`` forks N workers (2 by default) and supervises them;
each listens on the same port with ``SO_REUSEPORT`` (``reuse_port=True``),
so the kernel spreads connections among their accept queues.  A worker
answers each line with ``PID: line``, PID being its own, which shows which
process served a connection.

Each worker prints ``worker PID listening on 127.0.0.1:PORT`` once it
accepts connections.  SIGTERM or SIGINT to the supervisor stops the workers
(each prints ``worker PID stopped``), and the program exits with the status
``run_workers`` returns: 0 when every worker stopped cleanly.  The port
must be given (default 8000): with port 0 each worker would get a port of
its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Generator
from typing import Any

import aioc

MAX_LINE = 65536
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def say(line: str) -> None:
    """One write per line: the workers share the supervisor's stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def echo(stream: aioc.Stream) -> Generator[Any, Any, None]:
    prefix = b"%d: " % os.getpid()
    try:
        while True:
            line = yield from stream.readline(limit=MAX_LINE)
            if not line:
                return
            yield from stream.write(prefix + line)
    except (aioc.IncompleteReadError, aioc.LimitOverrunError, ConnectionError):
        pass  # a truncated or over-long line, or a reset


def worker(port: int) -> Generator[Any, Any, None]:
    """One worker's life: listen, serve until a stop signal, stop."""
    yield from aioc.watch_signals(*STOP_SIGNALS)
    listener = aioc.tcp_listener("127.0.0.1", port, reuse_port=True)
    server: aioc.Task = yield aioc.Spawn(aioc.serve_tcp(echo, sock=listener))
    say(f"worker {os.getpid()} listening on 127.0.0.1:{port}")
    yield from aioc.wait_signal(*STOP_SIGNALS)
    server.cancel()  # stops accepting, cancels the handlers and waits for them
    try:
        yield aioc.Join(server)
    except aioc.Cancelled:
        if not server.done():
            raise  # this task itself was cancelled
    say(f"worker {os.getpid()} stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="An echo server in several processes.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--grace", type=float, default=10.0, help="seconds the workers get to stop")
    args = parser.parse_args()
    if args.port == 0:
        parser.error("give a port: with port 0 each worker would listen on a port of its own")
    logging.basicConfig(level=logging.INFO, format="supervisor: %(message)s")
    sys.exit(aioc.run_workers(lambda: worker(args.port), workers=args.workers, grace=args.grace))
