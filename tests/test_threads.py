"""run_in_thread and getaddrinfo: blocking calls in a bounded pool of worker threads."""

from __future__ import annotations

import socket
import threading
import time
import traceback
from typing import Any

import pytest

from aioc import threads
from aioc.threads import getaddrinfo, get_thread_pool_size, run_in_thread, set_thread_pool_size


def test_result_comes_back(aio, loop, runner):
    def main():
        return (yield from run_in_thread(lambda a, b: (a + b, threading.current_thread()), 40, 2))

    value, worker = runner.complete(main())
    assert value == 42
    assert worker is not threading.current_thread()


def test_async_def_awaits_it(aio, loop, runner):
    async def main():
        return await run_in_thread(sorted, [3, 1, 2])

    assert runner.complete(main()) == [1, 2, 3]


def test_exception_is_raised_with_its_traceback(aio, loop, runner):
    def failing(x):
        raise KeyError(x)

    def main():
        try:
            yield from run_in_thread(failing, "k")
        except KeyError as exc:
            return exc

    exc = runner.complete(main())
    assert exc.args == ("k",)
    frames = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
    assert "failing" in frames and "main" in frames


def test_other_tasks_run_while_a_call_blocks(aio, loop, runner):
    started, release = threading.Event(), threading.Event()
    ticks = []

    def blocking():
        started.set()
        assert release.wait(5)
        return "released"

    def ticker():
        while not started.is_set():
            yield aio.Sleep(0.001)
        for i in range(3):
            ticks.append(i)
            yield aio.Sleep(0.001)
        release.set()

    def main():
        return (yield from run_in_thread(blocking))

    loop.call_soon(ticker())
    assert runner.complete(main()) == "released"
    assert ticks == [0, 1, 2]


def test_a_thousand_calls_on_eight_threads(aio, loop, runner):
    set_thread_pool_size(loop, 8)
    lock = threading.Lock()
    running = peak = 0
    workers = set()

    def work(i):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            workers.add(threading.current_thread())
        time.sleep(0.0005)
        with lock:
            running -= 1
        return i * i

    def one(i):
        return (yield from run_in_thread(work, i))

    def main():
        tasks = []
        for i in range(1000):
            tasks.append((yield aio.Spawn(one(i))))
        results = []
        for task in tasks:
            results.append((yield aio.Join(task)))
        return results

    assert runner.complete(main()) == [i * i for i in range(1000)]
    assert peak <= 8
    assert len(workers) <= 8
    assert peak >= 2  # the calls did overlap


def test_calls_queue_in_order_behind_a_pool_of_one(aio, loop, runner):
    set_thread_pool_size(loop, 1)
    order = []

    def main():
        tasks = []
        for i in range(20):
            tasks.append((yield aio.Spawn(run_in_thread(order.append, i))))
        for task in tasks:
            yield aio.Join(task)

    runner.complete(main())
    assert order == list(range(20))


def test_cancel_while_the_call_runs_drops_its_result(aio, loop, runner):
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow():
        started.set()
        assert release.wait(5)
        finished.set()
        return "dropped"

    def waiter():
        return (yield from run_in_thread(slow))

    def main():
        task = yield aio.Spawn(waiter())
        while not started.is_set():
            yield aio.Sleep(0.001)
        task.cancel()
        try:
            yield aio.Join(task)
        except aio.Cancelled:
            pass
        assert task.cancelled()
        release.set()  # the call runs to completion in its thread...
        while not finished.is_set():
            yield aio.Sleep(0.001)
        yield aio.Sleep(0.01)  # ...and its delivery finds nobody waiting
        # The pool still works.
        return (yield from run_in_thread(lambda: "after"))

    assert runner.complete(main()) == "after"


def test_a_deadline_abandons_the_call(aio, loop, runner):
    release = threading.Event()

    def main():
        try:
            yield from aio.timeout_after(0.02, run_in_thread(release.wait, 5))
        except TimeoutError:
            release.set()
            return (yield from run_in_thread(lambda: "still usable"))

    assert runner.complete(main()) == "still usable"


def test_pool_size_setting(aio, loop, runner):
    assert get_thread_pool_size(loop) == threads.DEFAULT_THREAD_POOL_SIZE
    set_thread_pool_size(loop, 3)
    assert get_thread_pool_size(loop) == 3
    with pytest.raises(ValueError):
        set_thread_pool_size(loop, 0)
    with pytest.raises(TypeError):
        set_thread_pool_size(loop, 2.5)  # type: ignore[arg-type]


def test_growing_the_pool_starts_workers_for_queued_calls(aio, loop, runner):
    set_thread_pool_size(loop, 1)
    release = threading.Event()
    lock = threading.Lock()
    running = peak = 0

    def work():
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        assert release.wait(5)
        with lock:
            running -= 1

    def main():
        tasks = []
        for _ in range(4):
            tasks.append((yield aio.Spawn(run_in_thread(work))))
        yield aio.Sleep(0.01)
        set_thread_pool_size(loop, 4)
        deadline = time.monotonic() + 5
        while running < 4 and time.monotonic() < deadline:
            yield aio.Sleep(0.001)
        release.set()
        for task in tasks:
            yield aio.Join(task)

    runner.complete(main())
    assert peak == 4


def test_pool_is_shut_down_when_the_loop_closes(aio, backend):
    loop = aio.EventLoop(backend=backend)
    workers = set()

    def work():
        workers.add(threading.current_thread())
        time.sleep(0.001)

    def main():
        tasks = []
        for _ in range(8):
            tasks.append((yield aio.Spawn(run_in_thread(work))))
        for task in tasks:
            yield aio.Join(task)

    try:
        loop.run_until_complete(main())
        assert workers and all(worker.is_alive() for worker in workers)  # idle, kept
    finally:
        loop.close()
    assert not any(worker.is_alive() for worker in workers)
    assert threads._pools.get(loop) is None


def test_closing_the_loop_while_a_call_runs_does_not_wait_for_it(aio, backend):
    loop = aio.EventLoop(backend=backend)
    started, release = threading.Event(), threading.Event()
    outcome: list[Any] = []

    workers = []

    def blocked():
        workers.append(threading.current_thread())
        started.set()
        release.wait(10)

    def waiter():
        try:
            yield from run_in_thread(blocked)
        except BaseException as exc:
            outcome.append(type(exc).__name__)
            raise

    def main():
        loop.call_soon(waiter())
        while not started.is_set():
            yield aio.Sleep(0.001)

    loop.run_until_complete(main())
    before = time.monotonic()
    try:
        loop.close()
        assert time.monotonic() - before < 0.5
        assert outcome == ["GeneratorExit"]
    finally:
        release.set()
    # The worker finishes its call, finds the loop closed, and exits.
    workers[0].join(5)
    assert not workers[0].is_alive()


def test_a_closed_loop_has_no_pool(aio, backend):
    loop = aio.EventLoop(backend=backend)
    loop.close()
    with pytest.raises(RuntimeError):
        set_thread_pool_size(loop, 2)


def test_getaddrinfo_localhost(aio, loop, runner):
    def main():
        return (yield from getaddrinfo("localhost", 80, type=socket.SOCK_STREAM))

    infos = runner.complete(main())
    assert infos
    for family, kind, _proto, _name, address in infos:
        assert family in (socket.AF_INET, socket.AF_INET6)
        assert kind == socket.SOCK_STREAM
        assert address[1] == 80


def test_getaddrinfo_of_a_name_that_does_not_exist(aio, loop, runner):
    # Resolution may fail at once or wait on DNS: bounded either way.
    def main():
        try:
            yield from aio.timeout_after(3.0, getaddrinfo("nonexistent.invalid", 80))
        except (socket.gaierror, TimeoutError) as exc:
            return exc
        return None

    assert isinstance(runner.complete(main()), (socket.gaierror, TimeoutError))
