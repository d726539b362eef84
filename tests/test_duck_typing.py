"""Events need not subclass aioc.Event: the seed's own classes run on the loop.

The classes below keep the seed tutorial's design (an ``Event`` base with
``_yield``/``_resume``, a ``ReadEvent`` that does ``recv(1024)``, an
``AcceptEvent`` that does ``accept()``); only the loop comes from aioc.
"""

from __future__ import annotations

import gc
import json
import socket
import struct
import threading
import time

import aioc.events

# -- the seed's events, as the tutorial wrote them (no aioc base class) --------


class SeedEvent:
    def _yield(self, loop, task):
        raise NotImplementedError

    def _resume(self, loop, task):
        raise NotImplementedError


class SeedReadEvent(SeedEvent):
    def __init__(self, sock):
        self.sock = sock

    def _yield(self, loop, task):
        loop._read_wait(self.sock.fileno(), self, task)

    def _resume(self, loop, task):
        data = self.sock.recv(1024)
        loop._ready.append((task, data))


class SeedAcceptEvent(SeedEvent):
    def __init__(self, sock):
        self.sock = sock

    def _yield(self, loop, task):
        loop._read_wait(self.sock.fileno(), self, task)

    def _resume(self, loop, task):
        r = self.sock.accept()
        loop._ready.append((task, r))


# -- more custom events on the protected API ----------------------------------


class SeedWriteEvent(SeedEvent):
    def __init__(self, sock, data):
        self.sock = sock
        self.data = data

    def _yield(self, loop, task):
        loop._write_wait(self.sock.fileno(), self, task)

    def _resume(self, loop, task):
        loop._ready.append((task, self.sock.send(self.data)))


class SeedSleep(SeedEvent):
    def __init__(self, seconds):
        self.seconds = seconds

    def _yield(self, loop, task):
        loop._timer_wait(time.monotonic() + self.seconds, self, task)

    def _resume(self, loop, task):
        loop._ready.append((task, "woke"))


class LoopStats(SeedEvent):
    """Completes at once with (len(loop._ready), loop._num_tasks)."""

    def _yield(self, loop, task):
        loop._ready.append((task, (len(loop._ready), loop._num_tasks)))

    def _resume(self, loop, task):
        raise AssertionError("never waits")


class FlakyRead:
    """A read whose first wake-up is spurious: ``_resume`` raises BlockingIOError once."""

    def __init__(self, sock, spurious=1):
        self.sock = sock
        self.spurious = spurious
        self.yields = 0
        self.resumes = 0

    def _yield(self, loop, task):
        self.yields += 1
        loop._read_wait(self.sock.fileno(), self, task)

    def _resume(self, loop, task):
        self.resumes += 1
        if self.spurious:
            self.spurious -= 1
            raise BlockingIOError("readiness was only a hint")
        loop._ready.append((task, self.sock.recv(100)))


def test_seed_classes_do_not_subclass_aioc_event():
    assert not issubclass(SeedEvent, aioc.events.Event)
    assert not isinstance(SeedReadEvent(None), aioc.events.Event)


def test_seed_program_runs_on_the_loop(aio, loop, runner, listener, sockets):
    lsock = listener()
    lsock.setblocking(False)  # as the seed's server_loop does
    received = []

    def handle_events(conn):
        line = yield SeedReadEvent(conn)
        received.append(json.loads(line.decode("utf-8")))
        conn.close()

    def server_loop(loop, sock, connections):
        for _ in range(connections):
            conn, a = yield SeedAcceptEvent(sock)
            loop.call_soon(handle_events(conn))

    # The seed's clients: blocking sockets that connect, send JSON and close.
    messages = [{"send_user": f"user{i}", "send_msg": "BIO test..."} for i in range(4)]
    for message in messages:
        client = socket.create_connection(lsock.getsockname(), timeout=5)
        sockets.append(client)
        client.sendall(json.dumps(message).encode("utf-8"))
        client.close()

    loop.call_soon(server_loop(loop, lsock, len(messages)))
    runner.forever()
    assert sorted(received, key=lambda m: m["send_user"]) == messages
    assert loop._num_tasks == 0


def test_custom_events_use_write_wait_timer_wait_and_queue_state(aio, loop, runner, socketpair):
    a, b = socketpair()

    def idle():
        yield SeedSleep(0.001)

    def main():
        first = yield LoopStats()
        loop.call_soon(idle())
        loop.call_soon(idle())
        second = yield LoopStats()
        sent = yield SeedWriteEvent(a, b"ping")
        data = yield SeedReadEvent(b)
        deadline = time.monotonic() + 0.02
        woke = yield SeedSleep(0.02)
        late_enough = time.monotonic() >= deadline
        return first, second, sent, data, woke, late_enough

    first, second, sent, data, woke, late_enough = runner.complete(main())
    assert first == (0, 1)  # only the main task exists, and it is running
    assert second == (2, 3)  # two new tasks wait in the ready queue
    assert sent == 4
    assert data == b"ping"
    assert woke == "woke"
    assert late_enough


def test_custom_events_mix_with_builtin_events(aio, loop, runner, socketpair):
    a, b = socketpair()

    def main():
        sent = yield SeedWriteEvent(a, b"one")
        data = yield aio.ReadEvent(b)
        woke = yield SeedSleep(0.001)
        yield aio.Sleep(0)
        return sent, data, woke

    assert runner.complete(main()) == (3, b"one", "woke")


def test_spurious_wakeup_waits_again_silently(aio, loop, runner, socketpair):
    a, b = socketpair()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    event = FlakyRead(a)

    def main():
        return (yield event)

    def sender():
        yield aio.Sleep(0.005)
        b.send(b"real data")

    t = loop.call_soon(main())
    loop.call_soon(sender())
    runner.forever()
    assert t.result() == b"real data"
    assert event.resumes == 2  # one spurious wake-up, one real
    assert event.yields == 2  # the loop registered the wait again
    gc.collect()
    assert errors == []


def test_repeated_spurious_wakeups_then_data(aio, loop, runner, socketpair):
    a, b = socketpair()
    b.send(b"ready from the start")
    event = FlakyRead(a, spurious=5)

    def main():
        return (yield event)

    assert runner.complete(main()) == b"ready from the start"
    assert event.resumes == 6


def test_seed_style_server_survives_a_client_reset(aio, loop, runner, listener):
    """A server written with the seed's events keeps serving after a client resets."""
    lsock = listener()
    lsock.setblocking(False)
    address = lsock.getsockname()
    conns = []
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx.get("exception")))

    def handle(conn):
        # Seed style: no error handling; a reset ends this task only.
        while True:
            line = yield SeedReadEvent(conn)
            if not line:
                break
            conn.sendall(b"echo:" + line)
        conn.close()

    def server():
        while True:
            conn, _ = yield SeedAcceptEvent(lsock)
            conns.append(conn)
            loop.call_soon(handle(conn))

    replies = {}
    failures = []

    def talk(name, reset=False):
        sock = socket.create_connection(address, timeout=5)
        try:
            sock.sendall(name.encode())
            replies[name] = sock.recv(100)
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            sock.close()  # with SO_LINGER (1, 0): an RST

    def clients():
        try:
            for i in range(3):
                talk(f"early{i}")
            talk("resetter", reset=True)
            time.sleep(0.02)  # let the reset reach the server first
            for i in range(3):
                talk(f"late{i}")
        except BaseException as exc:  # reported below, in the main thread
            failures.append(exc)
        finally:
            loop.stop()

    loop.call_soon(server())
    thread = threading.Thread(target=clients)
    thread.start()
    try:
        runner.forever()
    finally:
        thread.join(10)
        for conn in conns:
            conn.close()
    assert failures == []
    expected = ["early0", "early1", "early2", "resetter", "late0", "late1", "late2"]
    assert replies == {name: b"echo:" + name.encode() for name in expected}
    gc.collect()
    assert any(isinstance(exc, ConnectionResetError) for exc in errors), errors
