"""A line-based chat server: ``python examples/chat_server.py [--port PORT] [--queue LINES]``.

A client that connects gets ``welcome NAME`` (NAME is its address); each
line it sends then goes to every other client as ``NAME: line``.

A slow client must not stall the others, so nobody writes to a client's
socket but that client's own writer task, which takes lines from the
client's bounded queue (``--queue`` lines, 100 by default).  Passing a line
on is a ``put_nowait`` into each queue: it never waits.  A client whose
queue is full has stopped reading while others talk; it is disconnected
rather than sent an incomplete conversation (dropping lines would corrupt
it silently; an unbounded queue would let one idle client grow the server
without limit).

``--port 0`` (the default) picks a free port; the server prints ``listening
on 127.0.0.1:PORT`` once it accepts connections, and exits with status 0 on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import socket
from collections.abc import Callable, Generator
from typing import Any

import aioc

MAX_LINE = 4096
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Member:
    """One connected client: its stream, its queue of lines to send, its writer task."""

    def __init__(self, stream: aioc.Stream, queue_size: int) -> None:
        host, port = stream.peername[:2]
        self.name = f"{host}:{port}"
        self.stream = stream
        self.outbox: aioc.Queue[bytes] = aioc.Queue(maxsize=queue_size)
        self.writer: aioc.Task | None = None

    def write_loop(self) -> Generator[Any, Any, None]:
        """Send the queued lines, in order, as fast as the client reads them."""
        try:
            while True:
                line = yield from self.outbox.get()
                yield from self.stream.write(line)
        except ConnectionError:
            self.disconnect()  # its reader sees the end and leaves the room

    def disconnect(self) -> None:
        """End both directions now: the reader sees the end of the stream."""
        try:
            self.stream.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone


class Room:
    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.members: set[Member] = set()

    def join(self, member: Member) -> None:
        self.members.add(member)
        member.outbox.put_nowait(f"welcome {member.name}\n".encode())

    def leave(self, member: Member) -> None:
        self.members.discard(member)
        if member.writer is not None:
            member.writer.cancel()

    def broadcast(self, sender: Member, line: bytes) -> None:
        message = sender.name.encode() + b": " + line
        for member in list(self.members):
            if member is sender:
                continue
            try:
                member.outbox.put_nowait(message)
            except aioc.QueueFull:
                print(f"disconnecting {member.name}: it stopped reading", flush=True)
                self.leave(member)
                member.disconnect()


def handler(room: Room) -> Callable[[aioc.Stream], Generator[Any, Any, None]]:
    def handle(stream: aioc.Stream) -> Generator[Any, Any, None]:
        member = Member(stream, room.queue_size)
        member.writer = yield aioc.Spawn(member.write_loop())
        room.join(member)
        try:
            while True:
                line = yield from stream.readline(limit=MAX_LINE)
                if not line:
                    return
                room.broadcast(member, line)
                # A read served from the buffer does not yield: let the
                # writers send this line before the next one is queued, so
                # that a burst from one client fills only the queues of
                # clients that really are slow.
                yield aioc.Sleep(0)
        except (aioc.IncompleteReadError, aioc.LimitOverrunError, ConnectionError):
            pass  # a truncated or over-long line, or a reset: this client leaves
        finally:
            room.leave(member)

    return handle


def main(port: int, queue_size: int) -> Generator[Any, Any, None]:
    yield from aioc.watch_signals(*STOP_SIGNALS)
    listener = aioc.tcp_listener("127.0.0.1", port)
    server: aioc.Task = yield aioc.Spawn(aioc.serve_tcp(handler(Room(queue_size)), sock=listener))
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    yield from aioc.wait_signal(*STOP_SIGNALS)
    server.cancel()  # stops accepting, cancels the handlers and waits for them
    try:
        yield aioc.Join(server)
    except aioc.Cancelled:
        if not server.done():
            raise  # this task itself was cancelled


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A line-based chat server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--queue", type=int, default=100, help="lines queued per client before it is dropped")
    args = parser.parse_args()
    aioc.run(main(args.port, args.queue))
