"""Queue, LifoQueue, PriorityQueue and UniversalQueue on both loops and both backends."""

from __future__ import annotations

import random
import threading
import types

import pytest

from aioc import Cancelled, timeout_after
from aioc.queues import LifoQueue, PriorityQueue, QueueEmpty, QueueFull, UniversalQueue


@types.coroutine
def awaitable(gen):
    """``timeout_after`` is a plain generator: this makes it awaitable in async def."""
    return (yield from gen)


def test_nowait_operations_and_state(Queue):
    q: Queue[int] = Queue(2)
    assert q.empty() and not q.full() and q.maxsize == 2
    q.put_nowait(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(QueueFull):
        q.put_nowait(3)
    assert [q.get_nowait(), q.get_nowait()] == [1, 2]
    with pytest.raises(QueueEmpty):
        q.get_nowait()


def test_put_and_get_do_not_yield_when_they_can_complete(Queue):
    q: Queue[str] = Queue(1)
    with pytest.raises(StopIteration):
        q.put("x").send(None)
    with pytest.raises(StopIteration) as stop:
        q.get().send(None)
    assert stop.value.value == "x"


def test_lifo_and_priority_orders():
    lifo: LifoQueue[int] = LifoQueue()
    prio: PriorityQueue[tuple[int, str]] = PriorityQueue()
    for i in (1, 2, 3):
        lifo.put_nowait(i)
    for item in ((2, "b"), (3, "c"), (1, "a")):
        prio.put_nowait(item)
    assert [lifo.get_nowait() for _ in range(3)] == [3, 2, 1]
    assert [prio.get_nowait()[1] for _ in range(3)] == ["a", "b", "c"]


def test_bounded_queue_producer_consumer(aio, loop, runner, Queue):
    q: Queue[int] = Queue(3)
    got = []

    def producer():
        for i in range(200):
            yield from q.put(i)
            assert q.qsize() <= 3

    async def consumer():
        for _ in range(200):
            got.append(await q.get())

    loop.call_soon(producer())
    loop.call_soon(consumer())
    runner.forever()
    assert got == list(range(200)) and q.empty()


def test_getters_and_putters_wake_in_fifo_order(aio, loop, runner, Queue):
    q: Queue[str] = Queue(1)
    got, put = [], []

    def getter(label):
        got.append((label, (yield from q.get())))

    def putter(label):
        yield from q.put(label)
        put.append(label)

    def main():
        for label in "abc":
            loop.call_soon(getter(label))
        yield aio.Sleep(0.01)
        for item in "xyz":
            q.put_nowait(item)  # each goes to the next getter in line
        yield aio.Sleep(0.01)
        q.put_nowait("full")
        for label in "pqr":
            loop.call_soon(putter(label))
        yield aio.Sleep(0.01)
        drained = []
        for _ in range(4):
            drained.append((yield from q.get()))
            yield aio.Sleep(0.001)
        return drained

    assert runner.complete(main()) == ["full", "p", "q", "r"]
    assert got == [("a", "x"), ("b", "y"), ("c", "z")] and put == ["p", "q", "r"]


def test_an_item_handed_to_a_cancelled_getter_goes_back_to_the_front(aio, loop, runner, Queue):
    q: Queue[str] = Queue()

    def main():
        getter = loop.call_soon(q.get())
        yield aio.Sleep(0.01)
        q.put_nowait("first")  # handed to the getter ...
        getter.cancel()  # ... which is cancelled before it runs
        q.put_nowait("second")
        yield aio.Sleep(0.01)
        return getter.cancelled(), q.get_nowait(), q.get_nowait()

    assert runner.complete(main()) == (True, "first", "second")


def test_an_item_handed_to_a_cancelled_getter_goes_to_the_next_getter(aio, loop, runner, Queue):
    q: Queue[str] = Queue()

    def main():
        first = loop.call_soon(q.get())
        second = loop.call_soon(q.get())
        yield aio.Sleep(0.01)
        q.put_nowait("item")
        first.cancel()
        yield aio.Sleep(0.01)
        return first.cancelled(), second.result(), q.qsize()

    assert runner.complete(main()) == (True, "item", 0)


def test_room_given_to_a_cancelled_putter_goes_to_the_next_putter(aio, loop, runner, Queue):
    q: Queue[str] = Queue(1)

    def main():
        q.put_nowait("old")
        first = loop.call_soon(q.put("first"))
        second = loop.call_soon(q.put("second"))
        yield aio.Sleep(0.01)
        assert q.get_nowait() == "old"  # room for "first" ...
        first.cancel()  # ... cancelled before it runs: its item is not put
        yield aio.Sleep(0.01)
        return first.cancelled(), second.done(), q.get_nowait(), q.qsize()

    assert runner.complete(main()) == (True, True, "second", 0)


def test_timeouts_around_get_and_put(aio, loop, runner, Queue):
    q: Queue[int] = Queue(1)

    def main():
        with pytest.raises(TimeoutError):
            yield from timeout_after(0.02, q.get())
        q.put_nowait(1)
        with pytest.raises(TimeoutError):
            yield from timeout_after(0.02, q.put(2))
        assert len(q._getters) == len(q._putters) == 0
        return (yield from timeout_after(1.0, q.get()))

    assert runner.complete(main()) == 1


def test_await_forms_with_timeout(aio, loop, runner, Queue):
    q: Queue[int] = Queue()

    async def main():
        with pytest.raises(TimeoutError):
            await awaitable(timeout_after(0.02, q.get()))
        await q.put(5)
        return await q.get()

    assert runner.complete(main()) == 5


def test_join_waits_for_task_done(aio, loop, runner, Queue):
    q: Queue[int] = Queue()
    done = []

    def worker():
        while True:
            item = yield from q.get()
            yield aio.Sleep(0.001)
            done.append(item)
            q.task_done()

    def main():
        yield from q.join()  # nothing put: returns at once
        w = loop.call_soon(worker())
        for i in range(5):
            yield from q.put(i)
        yield from q.join()
        w.cancel()
        return list(done)

    assert runner.complete(main()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        q.task_done()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_cancellations_lose_and_duplicate_nothing(aio, loop, runner, seed, Queue):
    """Producers and consumers are cancelled at random points (some woken but
    not yet run); every item put is consumed exactly once."""
    rng = random.Random(seed)
    q: Queue[int] = Queue(rng.choice([1, 2, 5]))
    items = iter(range(600))
    consumed: list[int] = []
    put_ok: list[int] = []
    kept: list[int] = []  # items whose put was cancelled: not in the queue
    producers: list = []
    consumers: list = []

    def producer():
        for item in items:
            try:
                yield from q.put(item)
            except Cancelled:
                kept.append(item)
                raise
            put_ok.append(item)

    def consumer():
        while True:
            consumed.append((yield from q.get()))
            if rng.random() < 0.3:
                yield aio.Sleep(0)

    def chaos():
        for _ in range(300):
            for _ in range(rng.randint(0, 3)):
                if rng.random() < 0.4:
                    producers.append(loop.call_soon(producer()))
                else:
                    consumers.append(loop.call_soon(consumer()))
            alive = [t for t in producers + consumers if not t.done()]
            for task in rng.sample(alive, min(len(alive), rng.randint(0, 2))):
                task.cancel()  # anywhere: parked, woken but not run, or ready
            yield aio.Sleep(0)
        consumers.append(loop.call_soon(consumer()))
        while kept:
            item = kept.pop()
            yield from q.put(item)
            put_ok.append(item)
        # Items handed to a parked getter are in no queue: wait for the count.
        while len(consumed) < len(put_ok) or not all(t.done() for t in producers):
            yield aio.Sleep(0.001)
        for task in consumers:
            task.cancel()
        yield aio.Sleep(0)

    runner.complete(chaos(), limit=20)
    assert len(consumed) == len(set(consumed))  # nothing twice
    assert sorted(consumed) == sorted(put_ok)  # nothing lost
    assert q.qsize() == 0 and len(put_ok) > 100


def test_universal_queue_fed_by_threads(aio, loop, runner):
    uq: UniversalQueue[tuple[int, int]] = UniversalQueue()
    threads_n, per_thread = 4, 10_000

    def feeder(n):
        for i in range(per_thread):
            uq.put((n, i))

    def main():
        threads = [threading.Thread(target=feeder, args=(n,)) for n in range(threads_n)]
        for t in threads:
            t.start()
        got = []
        for _ in range(threads_n * per_thread):
            got.append((yield from uq.get()))
        for t in threads:
            t.join()
        return got

    got = runner.complete(main(), limit=30)
    assert len(got) == len(set(got)) == threads_n * per_thread
    for n in range(threads_n):  # each thread's items arrive in its order
        assert [i for m, i in got if m == n] == list(range(per_thread))
    assert uq.empty()


def test_universal_queue_getters_in_fifo_order_and_cancel(aio, loop, runner):
    uq: UniversalQueue[str] = UniversalQueue()
    got = []

    async def getter(label):
        got.append((label, await uq.get()))

    def main():
        cancelled = loop.call_soon(getter("cancelled"))
        for label in "ab":
            loop.call_soon(getter(label))
        yield aio.Sleep(0.01)
        cancelled.cancel()
        thread = threading.Thread(target=lambda: [uq.put(x) for x in "xy"])
        thread.start()
        thread.join()
        yield aio.Sleep(0.05)
        with pytest.raises(TimeoutError):
            yield from timeout_after(0.02, uq.get())
        return cancelled.cancelled()

    assert runner.complete(main()) is True
    assert got == [("a", "x"), ("b", "y")]


def test_universal_queue_item_handed_to_a_cancelled_getter_goes_back(aio, loop, runner):
    uq: UniversalQueue[str] = UniversalQueue()

    def main():
        getter = loop.call_soon(uq.get())
        yield aio.Sleep(0.01)
        thread = threading.Thread(target=uq.put, args=("item",))
        thread.start()
        thread.join()
        # The hand-over runs on this loop's next pass; cancel the getter right after it.
        while not (uq._getters == type(uq._getters)() and uq.empty()):
            yield aio.Sleep(0)
        getter.cancel()
        yield aio.Sleep(0.01)
        return getter.cancelled(), uq.get_nowait()

    assert runner.complete(main()) == (True, "item")
