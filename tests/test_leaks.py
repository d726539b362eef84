"""Many tasks and connections through the compiled loop leave nothing behind."""

from __future__ import annotations

import gc
import os
import socket
import struct
import tracemalloc

import pytest

from aioc import _env

try:
    from aioc import _loop_c as aio
except ImportError:
    if _env.require_extensions():
        raise
    pytest.skip("the compiled loop is not built", allow_module_level=True)

TASKS = 200_000
CONNECTIONS = 20_000
CLIENTS = 100
#: Allowed growth once warm: allocator and interning noise, far below one
#: object per task or connection.
MAX_OBJECT_GROWTH = 200
MAX_TRACED_GROWTH = 512 * 1024


def run_tasks(loop, count: int) -> None:
    def trivial(i):
        yield aio.Sleep(0)
        if i % 100 == 0:
            raise ValueError(i)
        return i

    def spawner():
        for start in range(0, count, 1000):
            batch = [loop.call_soon(trivial(i)) for i in range(start, start + 1000)]
            batch[1].cancel()
            yield aio.Join(batch[-1])
            yield aio.Sleep(0)
            for task in batch:
                task.exception()  # retrieved: nothing to report

    loop.run_until_complete(spawner())


def run_connections(loop, count: int) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    address = listener.getsockname()

    def handle(conn):
        try:
            request = yield aio.ReadEvent(conn)
            yield from aio.sendall(conn, b"re:" + request)
        finally:
            conn.close()

    def server():
        while True:
            conn, _ = yield aio.AcceptEvent(listener)
            loop.call_soon(handle(conn))

    def client(n):
        for _ in range(n):
            sock = socket.socket()
            try:
                yield aio.ConnectEvent(sock, address)
                yield from aio.sendall(sock, b"ping")
                assert (yield aio.ReadEvent(sock)) == b"re:ping"
                # An abortive close leaves no TIME_WAIT behind to exhaust ports.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            finally:
                sock.close()

    def main():
        accept = yield aio.Spawn(server())
        clients = [loop.call_soon(client(count // CLIENTS)) for _ in range(CLIENTS)]
        for task in clients:
            yield aio.Join(task)
        accept.cancel()
        yield aio.Sleep(0)

    loop.run_until_complete(main())
    listener.close()


def snapshot() -> tuple[int, int, int]:
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
    return len(gc.get_objects()), len(os.listdir("/proc/self/fd")), traced


@pytest.mark.parametrize("backend", ["epoll", "io_uring"])
def test_tasks_and_connections_leave_counts_fds_and_memory_flat(backend: str) -> None:
    if backend not in aio.available_backends():
        pytest.skip(f"{backend} is not available here")
    with aio.EventLoop(backend=backend) as loop:
        # Warm up caches, freelists and table sizes first.
        run_tasks(loop, 2_000)
        run_connections(loop, 500)
        tracemalloc.start()
        try:
            objects_before, fds_before, traced_before = snapshot()
            run_tasks(loop, TASKS)
            run_connections(loop, CONNECTIONS)
            objects_after, fds_after, traced_after = snapshot()
        finally:
            tracemalloc.stop()
        assert loop._num_tasks == 0
        assert len(loop._ready) == 0
    assert fds_after == fds_before
    assert objects_after - objects_before < MAX_OBJECT_GROWTH
    assert traced_after - traced_before < MAX_TRACED_GROWTH
