"""aioc.Stream on both loops, over real sockets: reading, limits, writing with
backpressure, sendfile, closing, the TLS hook, and the faults peers commit.

Each test runs both twins of Stream (the pure specification in
``aioc.streams`` and the compiled one in ``aioc._loop_c``) on both loops."""

from __future__ import annotations

import gc
import importlib.util
import io
import os
import pathlib
import socket
import struct
import tracemalloc
import types
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aioc
from aioc import _env, streams

try:
    from aioc import _loop_c
except ImportError:
    if _env.require_extensions():
        raise
    _loop_c = None

STREAMS = {"pure-stream": streams.Stream, "compiled-stream": getattr(_loop_c, "Stream", None)}
BUFFERS = {"pure-buffer": streams.StreamBuffer, "compiled-buffer": getattr(_loop_c, "StreamBuffer", None)}


@pytest.fixture(params=list(STREAMS), ids=list(STREAMS))
def Stream(request: pytest.FixtureRequest) -> type:
    """The Stream twin under test."""
    if STREAMS[request.param] is None:
        pytest.skip("the compiled loop is not built")
    return STREAMS[request.param]


@pytest.fixture(params=list(BUFFERS), ids=list(BUFFERS))
def StreamBuffer(request: pytest.FixtureRequest) -> type:
    """The StreamBuffer twin under test."""
    if BUFFERS[request.param] is None:
        pytest.skip("the compiled loop is not built")
    return BUFFERS[request.param]


@types.coroutine
def counting(coro: Any, counter: list[int]) -> Any:
    """Runs ``coro``, counting the events it yields in ``counter[0]``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            event = coro.send(value) if error is None else coro.throw(error)
        except StopIteration as stop:
            return stop.value
        counter[0] += 1
        value = error = None
        try:
            value = yield event
        except BaseException as exc:
            error = exc


def wait_until(aio: Any, condition: Any) -> Any:
    """Yield short sleeps until ``condition()`` holds (the watchdog bounds it)."""
    while not condition():
        yield aio.Sleep(0.001)


def receive_all(aio, sock, into, count):
    while len(into) < count:
        into.extend((yield aio.ReadEvent(sock)))


def send_all(aio, sock, data):
    yield aio.SendAll(sock, data)


# -- the buffer ----------------------------------------------------------------


def test_buffer_appends_finds_and_takes(StreamBuffer):
    buffer = StreamBuffer()
    assert len(buffer) == 0 and buffer.take(5) == b""
    buffer.append(b"abc\r")
    buffer.append(memoryview(b"\ndef"))
    buffer.append(bytearray(b"\r\n"))
    assert len(buffer) == 10
    assert buffer.find(b"\r\n", 0, 10) == 3
    assert buffer.find(b"\r\n", 0, 4) == -1  # the separator must lie wholly within
    assert buffer.find(b"\r\n", 4, 10) == 8
    assert buffer.find(b"\r\n", 4, 1000) == 8
    assert buffer.find(b"x", 0, 10) == -1
    assert buffer.take(5) == b"abc\r\n"
    assert buffer.find(b"\r\n", 0, 5) == 3  # offsets count from the first unconsumed byte
    assert buffer.take(100) == b"def\r\n"
    assert len(buffer) == 0
    buffer.append(b"")
    assert len(buffer) == 0
    for bad in (lambda: buffer.take(-1), lambda: buffer.find(b"x", -1, 5), lambda: buffer.find(b"x", 0, -1)):
        with pytest.raises(ValueError):
            bad()


def test_buffer_keeps_order_through_compaction(StreamBuffer):
    buffer = StreamBuffer()
    sent = os.urandom(600_000)
    taken = bytearray()
    position = 0
    for size in (70_000, 1, 3, 65_536, 100_000, 7) * 4:
        buffer.append(sent[position : position + size])
        position += size
        taken += buffer.take(size // 2 + 1)
    taken += buffer.take(len(buffer))
    assert bytes(taken) == sent[:position]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.binary(max_size=70_000).map(lambda raw: raw[:5] * (len(raw) // 5 + 1))),
            st.tuples(st.just("take"), st.integers(0, 90_000)),
            st.tuples(st.just("find"), st.tuples(st.sampled_from([b"\n", b"ab", b"\x00\x00"]),
                                                 st.integers(0, 100), st.integers(0, 100_000))),
        ),
        max_size=30,
    )
)
def test_buffer_twins_agree(StreamBuffer, steps):
    twin, reference = StreamBuffer(), streams.StreamBuffer()
    for op, argument in steps:
        if op == "append":
            twin.append(argument)
            reference.append(argument)
        elif op == "take":
            assert twin.take(argument) == reference.take(argument)
        else:
            assert twin.find(*argument) == reference.find(*argument)
        assert len(twin) == len(reference)


# -- reading -----------------------------------------------------------------


def test_read_gives_buffered_bytes_first_then_one_receive(aio, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    def main():
        b.send(b"0123456789")
        first = yield from stream.read(4)
        second = yield from stream.read(100)  # the rest of the buffer, no receive
        b.send(b"more")
        third = yield from stream.read()
        b.close()
        end = yield from stream.read()
        again = yield from stream.read()
        return first, second, third, end, again

    assert runner.complete(main()) == (b"0123", b"456789", b"more", b"", b"")


def test_read_waits_for_data(aio, loop, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)
    trace = []

    def reader():
        trace.append("waiting")
        trace.append((yield from stream.read()))

    def writer():
        yield aio.Sleep(0.01)
        trace.append("sending")
        b.send(b"late")

    loop.call_soon(reader())
    loop.call_soon(writer())
    runner.forever()
    assert trace == ["waiting", "sending", b"late"]


def test_read_rejects_bad_sizes(aio, runner, socketpair, Stream):
    stream = Stream(socketpair()[0])

    def main():
        for size, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)):
            with pytest.raises(error):
                yield from stream.read(size)
        with pytest.raises(ValueError):
            yield from stream.read_exactly(-1)
        with pytest.raises(ValueError):
            yield from stream.read_until(b"")
        with pytest.raises(ValueError):
            yield from stream.readline(0)

    runner.complete(main())


def test_read_exactly_collects_across_receives(aio, loop, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    def writer():
        for piece in (b"ab", b"cde", b"fghij"):
            b.send(piece)
            yield aio.Sleep(0.002)

    def main():
        loop.call_soon(writer())
        first = yield from stream.read_exactly(4)
        second = yield from stream.read_exactly(6)
        nothing = yield from stream.read_exactly(0)
        return first, second, nothing

    assert runner.complete(main()) == (b"abcd", b"efghij", b"")


def test_read_exactly_at_end_raises_incomplete_read_with_partial(aio, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    def main():
        b.send(b"abc")
        b.close()
        with pytest.raises(aioc.IncompleteReadError) as caught:
            yield from stream.read_exactly(10)
        return caught.value, (yield from stream.read())

    error, after = runner.complete(main())
    assert isinstance(error, EOFError)
    assert (error.partial, error.expected) == (b"abc", 10)
    assert after == b""


def test_readline_splits_and_joins_lines(aio, loop, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    def writer():
        b.send(b"one\ntwo\nthr")
        yield aio.Sleep(0.002)
        b.send(b"ee\nfour")
        yield aio.Sleep(0.002)
        b.send(b"\n")
        b.close()

    def main():
        loop.call_soon(writer())
        lines = []
        while True:
            line = yield from stream.readline()
            if not line:
                return lines
            lines.append(line)

    assert runner.complete(main()) == [b"one\n", b"two\n", b"three\n", b"four\n"]


def test_read_until_finds_a_separator_split_across_receives(aio, loop, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    def writer():
        for piece in (b"GET / HTTP/1.1\r", b"\nHost: x\r\n\r", b"\n", b"body"):
            b.send(piece)
            yield aio.Sleep(0.002)

    def main():
        loop.call_soon(writer())
        request_line = yield from stream.read_until(b"\r\n")
        headers = yield from stream.read_until(b"\r\n\r\n")
        body = yield from stream.read_exactly(4)
        return request_line, headers, body

    assert runner.complete(main()) == (b"GET / HTTP/1.1\r\n", b"Host: x\r\n\r\n", b"body")


def test_unterminated_tail_at_end_raises_incomplete_read_then_ends(aio, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    def main():
        b.send(b"whole\npart")
        b.close()
        whole = yield from stream.readline()
        with pytest.raises(aioc.IncompleteReadError) as caught:
            yield from stream.readline()
        end = yield from stream.readline()
        return whole, caught.value.partial, caught.value.expected, end

    assert runner.complete(main()) == (b"whole\n", b"part", None, b"")


def test_line_over_the_limit_raises_and_leaves_the_bytes_readable(aio, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    def main():
        b.send(b"x" * 20 + b"\nshort\n")
        with pytest.raises(aioc.LimitOverrunError) as caught:
            yield from stream.readline(limit=10)
        assert caught.value.consumed == 10
        # Nothing was consumed: the stream stays usable.
        with pytest.raises(aioc.LimitOverrunError):
            yield from stream.readline(limit=10)
        long_line = yield from stream.readline(limit=21)
        short = yield from stream.readline(limit=6)  # exactly the limit, separator included
        return long_line, short

    assert runner.complete(main()) == (b"x" * 20 + b"\n", b"short\n")


def test_limit_overrun_waits_only_until_limit_bytes_arrived(aio, loop, runner, socketpair, Stream):
    """A peer that never sends a separator cannot make the reader buffer forever."""
    a, b = socketpair()
    stream = Stream(a)

    def writer():
        for _ in range(8):
            b.send(b"y" * 1000)
            yield aio.Sleep(0.001)

    def main():
        loop.call_soon(writer())
        with pytest.raises(aioc.LimitOverrunError):
            yield from stream.readline(limit=3000)
        rest = yield from stream.read(100_000)
        return len(rest)

    assert 3000 <= runner.complete(main()) < 8000


def test_slow_sender_one_byte_at_a_time_waits_for_readiness(aio, loop, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)
    line = b"GET /slow HTTP/1.1\r\n"
    steps = [0]

    def writer():
        for byte in line:
            yield aio.Sleep(0.001)
            b.send(bytes([byte]))

    def main():
        loop.call_soon(writer())
        return (yield from counting(stream.read_until(b"\r\n"), steps))

    assert runner.complete(main()) == line
    # One wait per byte at most: the reader sleeps until readable, never spins.
    assert steps[0] <= len(line)


def test_separator_search_covers_each_byte_about_once(aio, loop, runner, socketpair):
    """A line sent one byte at a time is searched in linear, not quadratic, work
    (shown on the specification, whose buffer a test can watch)."""
    a, b = socketpair()
    stream = streams.Stream(a)
    searched = [0]

    class Watched(streams.StreamBuffer):
        __slots__ = ()

        def find(self, separator, begin, end):
            searched[0] += max(0, end - begin)
            return super().find(separator, begin, end)

    stream._buffer = Watched()
    line = b"x" * 300 + b"\r\n"

    def writer():
        for byte in line:
            b.send(bytes([byte]))
            yield aio.Sleep(0)

    def main():
        loop.call_soon(writer())
        return (yield from stream.read_until(b"\r\n"))

    assert runner.complete(main()) == line
    assert searched[0] <= 2 * len(line)


def oracle(data: bytes, ops: list) -> list:
    """What the reads give on ``data``, worked out on the whole byte string at once."""
    results, rest = [], data
    for op, size, separator in ops:
        if op == "exactly":
            if len(rest) >= size:
                results.append(rest[:size])
                rest = rest[size:]
            else:
                results.append(("incomplete", rest, size))
                rest = b""
            continue
        index = rest.find(separator)
        if index >= 0 and index + len(separator) <= size:
            results.append(rest[: index + len(separator)])
            rest = rest[index + len(separator) :]
        elif len(rest) >= size:
            results.append(("limit", size))
        elif rest:
            results.append(("incomplete", rest, None))
            rest = b""
        else:
            results.append(b"")
    return results


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=300).map(lambda raw: bytes(b"ab\r\n"[byte % 4] for byte in raw)),
    cuts=st.lists(st.integers(1, 40), max_size=30),
    ops=st.lists(
        st.tuples(st.sampled_from(["exactly", "until"]), st.integers(0, 50), st.sampled_from([b"\n", b"\r\n", b"ab"])),
        max_size=20,
    ),
)
def test_reads_agree_with_the_whole_string_however_bytes_arrive(aio, Stream, data, cuts, ops):
    ops = [(op, size if op == "exactly" else size + 1, separator) for op, size, separator in ops]
    a, b = socket.socketpair()
    a.setblocking(False)
    chunks, position = [], 0
    for cut in cuts:
        chunks.append(data[position : position + cut])
        position += cut
    chunks.append(data[position:])

    def sender():
        for chunk in chunks:
            if chunk:
                b.send(chunk)
            yield aio.Sleep(0)
        b.close()

    def main():
        stream = Stream(a)
        sending = yield aio.Spawn(sender())
        results = []
        for op, size, separator in ops:
            try:
                if op == "exactly":
                    results.append((yield from stream.read_exactly(size)))
                else:
                    results.append((yield from stream.read_until(separator, size)))
            except aioc.IncompleteReadError as error:
                results.append(("incomplete", error.partial, error.expected))
            except aioc.LimitOverrunError as error:
                results.append(("limit", error.consumed))
        yield aio.Join(sending)
        yield from stream.close()
        return results

    try:
        assert aio.run(main()) == oracle(data, ops)
    finally:
        a.close()
        b.close()


def test_buffered_reads_complete_without_waiting(aio, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)
    steps = [0]

    def reads():
        return [
            (yield from stream.readline()),
            (yield from stream.read_until(b"\r\n")),
            (yield from stream.read_exactly(3)),
            (yield from stream.read(2)),
        ]

    def main():
        b.send(b"line\nrequest\r\nabcde")
        yield aio.Sleep(0.01)
        yield from stream.read_exactly(1)  # one receive buffers everything sent
        return (yield from counting(reads(), steps))

    assert runner.complete(main()) == [b"ine\n", b"request\r\n", b"abc", b"de"]
    assert steps[0] == 0  # each came from the buffer, without a trip through the loop


def test_read_larger_than_one_chunk(aio, loop, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)
    payload = os.urandom(150_000)

    def main():
        task = loop.call_soon(send_all(aio, b, payload))
        data = bytearray()
        while len(data) < len(payload):
            data += yield from stream.read(1 << 20)
        yield aio.Join(task)
        return bytes(data)

    assert runner.complete(main()) == payload


def test_socket_subclass_takes_the_general_path(aio, runner, Stream):
    class Traced(socket.socket):
        received = 0

        def recv(self, *args):
            data = super().recv(*args)
            Traced.received += len(data)
            return data

    a = Traced(socket.AF_UNIX, socket.SOCK_STREAM)
    b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        a.bind("\0aioc-streams-%d" % os.getpid())
        a.listen()
        b.connect(a.getsockname())
        conn_fd, _ = a._accept()
        conn = Traced(socket.AF_UNIX, socket.SOCK_STREAM, fileno=conn_fd)
        stream = Stream(conn)

        def main():
            b.send(b"through recv\n")
            return (yield from stream.readline())

        assert runner.complete(main()) == b"through recv\n"
        assert Traced.received == 13  # the subclass's own recv ran
        conn.close()
    finally:
        a.close()
        b.close()


def test_a_read_yielded_instead_of_run_raises_type_error(aio, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    def main():
        b.send(b"kept\n")
        with pytest.raises(TypeError):
            yield stream.readline()
        with pytest.raises(TypeError):
            yield aio.Timeout(stream.readline(), 1.0)
        return (yield from stream.readline())

    assert runner.complete(main()) == b"kept\n"


def test_one_reader_at_a_time_while_a_writer_runs_beside_it(aio, loop, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)
    payload = os.urandom(500_000)  # more than the socket pair's buffers
    echoed = bytearray()

    def reader():
        return (yield from stream.readline())

    def writer():
        yield from stream.write(payload)

    def main():
        first = loop.call_soon(reader())
        yield aio.Sleep(0)
        with pytest.raises(aio.ResourceBusy):
            yield from stream.readline()
        sending = loop.call_soon(writer())
        yield from receive_all(aio, b, echoed, len(payload))
        yield aio.Join(sending)
        b.send(b"done\n")
        return (yield aio.Join(first))

    assert runner.complete(main()) == b"done\n"
    assert bytes(echoed) == payload


def test_async_def_awaits_stream_operations(aio, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    async def main():
        b.send(b"ping\nrest")
        line = await stream.readline()
        rest = await stream.read_exactly(4)
        await stream.write(b"pong")
        async with stream:
            pass
        return line, rest, b.recv(10)

    assert runner.complete(main()) == (b"ping\n", b"rest", b"pong")
    assert stream.socket.fileno() == -1


def test_properties(aio, runner, tcp_pair, Stream):
    client, server = tcp_pair()
    stream = Stream(server)
    assert stream.socket is server
    assert stream.peername == client.getsockname()
    assert "Stream" in repr(stream)


def test_a_stream_is_freed_without_the_cycle_collector(socketpair, Stream):
    a, b = socketpair()
    gc.collect()
    gc.disable()
    try:
        stream = Stream(a)
        stream._buffer.append(b"unread")
        del stream
        assert gc.collect() == 0  # nothing was left for the collector
    finally:
        gc.enable()


def test_a_waiting_reader_shows_what_it_waits_on(aio, loop, runner, socketpair, Stream):
    a, _ = socketpair()
    stream = Stream(a)

    def reader():
        return (yield from stream.read_until(b"\r\n", 100))

    def main():
        task = loop.call_soon(reader())
        yield aio.Sleep(0)
        stack = task.stack()
        task.cancel()
        return stack

    stack = runner.complete(main())
    assert stack.frames[0].function == "reader"
    if Stream is streams.Stream:
        assert isinstance(stack.waiting_on, streams.Receive)
    else:
        assert repr(stack.waiting_on).startswith("<StreamRead read_until(b'\\r\\n', 100) of <Stream fd=")


def test_stream_makes_a_blocking_socket_non_blocking(socketpair, Stream):
    a, _ = socketpair(blocking=True)
    Stream(a)
    assert not a.getblocking()


# -- cancellation and deadlines -------------------------------------------------


def test_cancelled_readline_keeps_partial_line(aio, loop, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    def reader():
        return (yield from stream.readline())

    def main():
        task = loop.call_soon(reader())
        b.send(b"hel")
        yield from wait_until(aio, lambda: len(stream._buffer) == 3)
        task.cancel()
        yield from wait_until(aio, task.done)
        assert task.cancelled()
        b.send(b"lo\n")
        return (yield from stream.readline())

    assert runner.complete(main()) == b"hello\n"


def test_read_cancelled_after_its_bytes_arrived_loses_nothing(aio, loop, runner, socketpair, Stream):
    """The receive completes in a loop pass, then the task is cancelled before it runs."""
    a, b = socketpair()
    stream = Stream(a)

    def reader():
        return (yield from stream.read())

    def main():
        task = loop.call_soon(reader())
        yield aio.Sleep(0)  # the reader now waits
        b.send(b"data")
        # The next pass polls, receives into the stream and queues the reader
        # after this task: the cancel reaches it with its bytes received.
        yield aio.Sleep(0)
        assert len(stream._buffer) == 4  # received, and the reader not yet run
        task.cancel()
        yield from wait_until(aio, task.done)
        assert task.cancelled()
        return (yield from stream.read())

    assert runner.complete(main()) == b"data"


def test_timeout_after_bounds_readline_and_keeps_data(aio, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    def main():
        b.send(b"partial ")
        with pytest.raises(TimeoutError):
            yield from aio.timeout_after(0.02, stream.readline())
        b.send(b"line\n")
        return (yield from stream.readline())

    assert runner.complete(main()) == b"partial line\n"


# -- writing -----------------------------------------------------------------


def test_write_hands_everything_to_the_kernel(aio, loop, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)
    payload = os.urandom(1 << 20)
    expected = payload + b"tail!"
    received = bytearray()

    def main():
        task = loop.call_soon(receive_all(aio, b, received, len(expected)))
        yield from stream.write(payload)  # larger than the socket's buffers
        yield from stream.write(memoryview(b"tail"))
        yield from stream.write(bytearray(b"!"))
        yield aio.Join(task)

    runner.complete(main())
    assert bytes(received) == expected


def test_write_to_a_peer_that_never_reads_waits_with_bounded_memory(aio, loop, runner, tcp_pair, Stream):
    client, server = tcp_pair()  # the client never reads
    stream = Stream(server)
    chunk = b"x" * 65536
    total = 64 << 20
    written = [0]

    def writer():
        while written[0] < total:
            yield from stream.write(chunk)
            written[0] += len(chunk)

    def main():
        tracemalloc.start()
        try:
            task = loop.call_soon(writer())
            # Until the writer stops making progress: the kernel's buffers are full.
            stalled, last = 0, -1
            while stalled < 20:
                yield aio.Sleep(0.005)
                stalled = stalled + 1 if written[0] == last else 0
                last = written[0]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        pending = not task.done()
        task.cancel()
        return pending, written[0], len(stream._buffer), peak

    pending, sent, buffered, peak = runner.complete(main())
    assert pending
    assert sent < total
    assert buffered == 0
    assert peak < 4 << 20  # nothing in user space grows with what the peer refuses


def test_write_after_close_raises(aio, runner, socketpair, Stream):
    stream = Stream(socketpair()[0])

    def main():
        yield from stream.close()
        with pytest.raises(OSError):
            yield from stream.write(b"x")
        with pytest.raises(OSError):
            yield from stream.read()

    runner.complete(main())


# -- sendfile -----------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    content = os.urandom(300_000)
    path = tmp_path / "payload.bin"
    path.write_bytes(content)
    with open(path, "rb") as file:
        yield file, content


@pytest.mark.parametrize("offset, count", [(0, None), (1000, None), (1000, 5000), (299_990, 100)])
def test_sendfile_sends_the_range(aio, loop, runner, tcp_pair, Stream, data_file, offset, count):
    client, server = tcp_pair()
    stream = Stream(server)
    file, content = data_file
    expected = content[offset:] if count is None else content[offset : offset + count]
    received = bytearray()

    def main():
        task = loop.call_soon(receive_all(aio, client, received, len(expected)))
        sent = yield from stream.sendfile(file, offset, count)
        yield aio.Join(task)
        return sent

    sent = runner.complete(main())
    assert sent == len(expected)
    assert bytes(received) == expected
    assert file.tell() == offset + sent


def test_sendfile_to_a_slow_reader_waits_for_writability(aio, loop, runner, socketpair, Stream, data_file):
    a, b = socketpair()
    stream = Stream(a)
    file, content = data_file
    received = bytearray()
    steps = [0]

    def slow_reader():
        while len(received) < len(content):
            yield aio.Sleep(0.001)
            received.extend((yield aio.ReadEvent(b, 32768)))

    def main():
        task = loop.call_soon(slow_reader())
        sent = yield from counting(stream.sendfile(file), steps)
        yield aio.Join(task)
        return sent

    assert runner.complete(main()) == len(content)
    assert bytes(received) == content
    assert steps[0] >= 1  # it had to wait: the socket's buffer is smaller than the file


def test_sendfile_past_the_end_sends_what_there_is(aio, loop, runner, socketpair, Stream, data_file):
    a, b = socketpair()
    stream = Stream(a)
    file, content = data_file
    received = bytearray()

    def main():
        task = loop.call_soon(receive_all(aio, b, received, 100))
        sent = yield from stream.sendfile(file, len(content) - 100, 1000)
        yield aio.Join(task)
        return sent

    assert runner.complete(main()) == 100
    assert bytes(received) == content[-100:]


def test_sendfile_without_a_fileno_reads_and_writes(aio, loop, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)
    content = os.urandom(200_000)
    file = io.BytesIO(content)
    received = bytearray()

    def main():
        task = loop.call_soon(receive_all(aio, b, received, 150_000))
        sent = yield from stream.sendfile(file, 50_000)
        yield aio.Join(task)
        return sent

    assert runner.complete(main()) == 150_000
    assert bytes(received) == content[50_000:]
    assert file.tell() == 200_000


# -- closing -----------------------------------------------------------------


def test_close_is_idempotent_and_wakes_a_waiting_reader(aio, loop, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a)

    def reader():
        return (yield from stream.read())

    def main():
        task = loop.call_soon(reader())
        yield aio.Sleep(0)
        yield from stream.close()
        yield from stream.close()
        yield from wait_until(aio, task.done)
        return task.exception()

    assert isinstance(runner.complete(main()), aio.ClosedResourceError)
    assert a.fileno() == -1


# -- faults --------------------------------------------------------------------


def test_peer_reset_mid_line_raises_connection_reset(aio, runner, tcp_pair, Stream):
    client, server = tcp_pair()
    stream = Stream(server)

    def main():
        client.send(b"half a li")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # an RST, not a FIN
        with pytest.raises(ConnectionResetError):
            yield from stream.readline()

    runner.complete(main())


def test_half_closed_peer_still_reads_the_reply(aio, loop, runner, tcp_pair, Stream):
    client, server = tcp_pair()

    def serve():
        stream = Stream(server)
        lines = []
        while True:
            line = yield from stream.readline()
            if not line:
                break
            lines.append(line)
        yield from stream.write(b"got %d lines\n" % len(lines))
        yield from stream.close()

    def main():
        loop.call_soon(serve())
        yield aio.SendAll(client, b"a\nb\nc\n")
        client.shutdown(socket.SHUT_WR)
        reply = Stream(client)
        return (yield from reply.readline()), (yield from reply.read())

    assert runner.complete(main()) == (b"got 3 lines\n", b"")


def test_write_eof_ends_only_the_writing_half(aio, loop, runner, tcp_pair, Stream):
    client, server = tcp_pair()

    def serve():
        stream = Stream(server)
        request = bytearray()
        while chunk := (yield from stream.read()):  # until the client's end of stream
            request += chunk
        yield from stream.write(b"got %d bytes\n" % len(request))
        yield from stream.close()

    def main():
        loop.call_soon(serve())
        stream = Stream(client)
        yield from stream.write(b"x" * 100_000)
        yield from stream.write_eof()
        reply = (yield from stream.readline()), (yield from stream.read())
        with pytest.raises(BrokenPipeError):
            yield from stream.write(b"more")
        yield from stream.close()
        with pytest.raises(OSError):
            yield from stream.write_eof()
        return reply

    assert runner.complete(main()) == (b"got 100000 bytes\n", b"")


# -- the TLS hook -------------------------------------------------------------


class XorLayer:
    """A stand-in for a TLS layer: xors every byte over the raw socket, and
    records the calls the stream makes."""

    def __init__(self, aio: Any, sock: socket.socket) -> None:
        self.aio, self.sock = aio, sock
        self.calls: list[str] = []

    @staticmethod
    def scramble(data: bytes) -> bytes:
        return bytes(byte ^ 0x5A for byte in data)

    @types.coroutine
    def receive(self, max_bytes: int):
        self.calls.append("receive")
        return self.scramble((yield self.aio.ReadEvent(self.sock, max_bytes)))

    @types.coroutine
    def send(self, data):
        self.calls.append("send")
        yield self.aio.SendAll(self.sock, self.scramble(bytes(data)))

    @types.coroutine
    def close(self):
        self.calls.append("close")
        self.sock.send(b"<bye>")
        return None
        yield


def test_tls_layer_carries_all_io_with_buffering_above_it(aio, runner, socketpair, Stream):
    a, b = socketpair()
    layer = XorLayer(aio, a)
    stream = Stream(a, tls=layer)

    def main():
        b.send(XorLayer.scramble(b"line one\nline two\n"))
        first = yield from stream.readline()
        second = yield from stream.readline()  # from the buffer: no receive
        yield from stream.write(b"reply")
        yield from stream.sendfile(io.BytesIO(b"0123456789"), 2, 5)
        with open(os.devnull, "rb") as empty:
            yield from stream.sendfile(empty)  # a real file, still through the layer
        yield from stream.close()
        return first, second

    assert runner.complete(main()) == (b"line one\n", b"line two\n")
    assert layer.calls == ["receive", "send", "send", "close"]
    assert b.recv(100) == XorLayer.scramble(b"reply") + XorLayer.scramble(b"23456") + b"<bye>"
    assert a.fileno() == -1


def test_tls_layer_end_of_stream(aio, runner, socketpair, Stream):
    a, b = socketpair()
    stream = Stream(a, tls=XorLayer(aio, a))

    def main():
        b.send(XorLayer.scramble(b"abc"))
        b.close()
        with pytest.raises(aioc.IncompleteReadError) as caught:
            yield from stream.read_exactly(5)
        return caught.value.partial, (yield from stream.read())

    assert runner.complete(main()) == (b"abc", b"")


def test_a_failing_tls_close_still_closes_the_socket(aio, runner, socketpair, Stream):
    a, _ = socketpair()

    class Failing(XorLayer):
        @types.coroutine
        def close(self):
            raise ConnectionResetError
            yield

    stream = Stream(a, tls=Failing(aio, a))

    def main():
        with pytest.raises(ConnectionResetError):
            yield from stream.close()
        yield from stream.close()  # already closed: nothing to do

    runner.complete(main())
    assert a.fileno() == -1


def test_typed_line_server_runs(backend):
    """tests/typed/streams.py, which mypy --strict checks, also works."""
    path = pathlib.Path(__file__).parent / "typed" / "streams.py"
    spec = importlib.util.spec_from_file_location("aioc_typed_streams", path)
    assert spec is not None and spec.loader is not None
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    assert program.main(["streams.py", backend]) == 0


def test_public_names():
    assert aioc.Stream is (streams.Stream if aioc.IMPLEMENTATION == "pure" else _loop_c.Stream)
    assert issubclass(aioc.IncompleteReadError, EOFError)
    for name in ("Stream", "IncompleteReadError", "LimitOverrunError"):
        assert name in aioc.__all__
