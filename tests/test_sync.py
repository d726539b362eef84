"""Lock, Semaphore, BoundedSemaphore, Condition and Flag on both loops and both backends."""

from __future__ import annotations

import types

import pytest

from aioc import Cancelled, timeout_after
from aioc.sync import BoundedSemaphore, Condition, Flag, Semaphore


@types.coroutine
def awaitable(gen):
    """``timeout_after`` is a plain generator: this makes it awaitable in async def."""
    return (yield from gen)


def test_uncontended_acquire_does_not_yield(Lock):
    lock, sem, flag = Lock(), Semaphore(2), Flag()
    flag.set()
    for op in (lock.acquire(), sem.acquire(), flag.wait()):
        with pytest.raises(StopIteration) as stop:
            op.send(None)
        assert stop.value.value is True
    assert lock.locked() and sem.value == 1


def test_lock_waiters_wake_in_fifo_order(aio, loop, runner, Lock):
    lock, order = Lock(), []

    def worker(label):
        yield from lock.acquire()
        try:
            order.append(label)
            yield aio.Sleep(0)
        finally:
            lock.release()

    for label in "abcde":
        loop.call_soon(worker(label))
    runner.forever()
    assert order == list("abcde") and not lock.locked()


def test_async_with_and_await_forms(aio, loop, runner, Lock):
    lock, sem, cond, flag = Lock(), Semaphore(1), Condition(), Flag()

    async def main():
        async with lock:
            assert lock.locked()
        async with sem:
            assert sem.locked()
        async with cond:
            cond.notify()
        flag.set()
        await flag.wait()
        assert await lock.acquire() is True
        lock.release()
        return "done"

    assert runner.complete(main()) == "done"
    assert not lock.locked() and sem.value == 1


def test_async_with_binds_none_as_asyncio_does(aio, loop, runner, Lock):
    lock, sem, cond = Lock(), Semaphore(1), Condition(Lock())
    bound = []

    async def holder():
        async with lock as held_lock, sem as held_sem, cond as held_cond:
            bound.extend([held_lock, held_sem, held_cond])
            await aio.Sleep(0.01)

    async def waiter():
        async with lock as held_lock, sem as held_sem, cond as held_cond:  # each waits its turn
            bound.extend([held_lock, held_sem, held_cond])

    loop.call_soon(holder())
    loop.call_soon(waiter())
    runner.forever()
    assert bound == [None] * 6
    assert not lock.locked() and not sem.locked() and not cond.locked()


def test_release_of_an_unlocked_lock_raises(Lock):
    with pytest.raises(RuntimeError):
        Lock().release()


def test_lock_held_across_io_is_released_when_the_holder_is_cancelled(aio, loop, runner, socketpair, Lock):
    a, b = socketpair()
    lock, got = Lock(), []

    async def holder():
        async with lock:
            await aio.ReadEvent(a)  # nothing is ever sent: waits until cancelled

    def other():
        yield from lock.acquire()
        got.append("acquired")
        lock.release()

    def canceller(task):
        yield aio.Sleep(0.01)
        task.cancel()

    task = loop.call_soon(holder())
    loop.call_soon(other())
    loop.call_soon(canceller(task))
    runner.forever()
    assert task.cancelled() and got == ["acquired"] and not lock.locked()


def test_a_lock_granted_then_cancelled_goes_to_the_next_waiter(aio, loop, runner, Lock):
    lock, got = Lock(), []

    def waiter(label):
        yield from lock.acquire()
        got.append(label)
        lock.release()

    def main():
        yield from lock.acquire()
        first = loop.call_soon(waiter("first"))
        loop.call_soon(waiter("second"))
        yield aio.Sleep(0.01)  # both are parked
        lock.release()  # granted to "first" ...
        first.cancel()  # ... which is cancelled before it runs
        yield aio.Sleep(0.01)
        return first.cancelled()

    assert runner.complete(main()) is True
    assert got == ["second"] and not lock.locked()


def test_cancelled_before_the_grant_is_not_woken_twice(aio, loop, runner, Lock):
    """Cancel a parked waiter, then release in the same step: the waiter survives
    its Cancelled and waits on a timer; no stale wake-up may resume it early."""
    lock, log = Lock(), []

    def waiter():
        try:
            yield from lock.acquire()
        except Cancelled:
            log.append("cancelled")
        start = loop.time()
        yield aio.Sleep(0.05)
        log.append(loop.time() - start >= 0.05)

    def main():
        yield from lock.acquire()
        task = loop.call_soon(waiter())
        nxt = loop.call_soon(waiter_that_gets_it())
        yield aio.Sleep(0.01)
        task.cancel()
        lock.release()  # task still sits in the line: the lock must skip it
        yield aio.Sleep(0.1)
        return nxt.result()

    def waiter_that_gets_it():
        yield from lock.acquire()
        lock.release()
        return "next got it"

    assert runner.complete(main()) == "next got it"
    assert log == ["cancelled", True] and not lock.locked()


def test_timeout_after_around_acquire(aio, loop, runner, Lock):
    lock = Lock()

    def main():
        yield from lock.acquire()
        with pytest.raises(TimeoutError):
            yield from timeout_after(0.02, lock.acquire())
        assert lock._waiters == type(lock._waiters)()  # the timed-out waiter left the line
        lock.release()
        assert (yield from timeout_after(1.0, lock.acquire())) is True
        lock.release()
        return "ok"

    assert runner.complete(main()) == "ok"


def test_timeout_after_in_async_def(aio, loop, runner):
    sem = Semaphore(0)

    async def main():
        with pytest.raises(TimeoutError):
            await awaitable(timeout_after(0.02, sem.acquire()))
        sem.release()
        await awaitable(timeout_after(1.0, sem.acquire()))
        return sem.value

    assert runner.complete(main()) == 0


def test_semaphore_counts_permits_in_fifo_order(aio, loop, runner):
    sem, active, peak, order = Semaphore(2), [0], [0], []

    def worker(label):
        yield from sem.acquire()
        order.append(label)
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        yield aio.Sleep(0.001)
        active[0] -= 1
        sem.release()

    for label in range(8):
        loop.call_soon(worker(label))
    runner.forever()
    assert peak[0] == 2 and order == list(range(8)) and sem.value == 2


def test_a_permit_granted_then_cancelled_is_handed_on(aio, loop, runner):
    sem, got = Semaphore(0), []

    def waiter(label):
        yield from sem.acquire()
        got.append(label)

    def main():
        first = loop.call_soon(waiter("first"))
        loop.call_soon(waiter("second"))
        yield aio.Sleep(0.01)
        sem.release()
        first.cancel()
        yield aio.Sleep(0.01)
        return sem.value

    assert runner.complete(main()) == 0
    assert got == ["second"]


def test_bounded_semaphore_refuses_over_release():
    sem = BoundedSemaphore(2)
    with pytest.raises(ValueError):
        sem.release()
    with pytest.raises(StopIteration):
        sem.acquire().send(None)
    sem.release()
    with pytest.raises(ValueError):
        sem.release()
    assert sem.value == 2


def test_bounded_semaphore_with_waiters(aio, loop, runner):
    sem = BoundedSemaphore(1)

    def main():
        yield from sem.acquire()
        waiter = loop.call_soon(sem.acquire())
        yield aio.Sleep(0.01)
        sem.release()  # goes straight to the waiter
        yield aio.Sleep(0.01)
        assert waiter.result() is True
        sem.release()
        with pytest.raises(ValueError):
            sem.release()
        return sem.value

    assert runner.complete(main()) == 1


def test_condition_notify_wakes_in_fifo_order(aio, loop, runner):
    cond, order = Condition(), []

    async def waiter(label):
        async with cond:
            await cond.wait()
            assert cond.locked()
            order.append(label)

    async def notifier():
        await aio.Sleep(0.01)
        async with cond:
            cond.notify(2)
        await aio.Sleep(0.01)
        async with cond:
            cond.notify_all()

    for label in "abcd":
        loop.call_soon(waiter(label))
    loop.call_soon(notifier())
    runner.forever()
    assert order == list("abcd") and not cond.locked()


def test_condition_wait_for_a_predicate(aio, loop, runner):
    cond, items = Condition(), []

    def consumer():
        yield from cond.acquire()
        try:
            value = yield from cond.wait_for(lambda: len(items) >= 3)
            return value, list(items)
        finally:
            cond.release()

    def producer():
        for i in range(3):
            yield aio.Sleep(0.001)
            yield from cond.acquire()
            items.append(i)
            cond.notify()
            cond.release()

    task = loop.call_soon(consumer())
    loop.call_soon(producer())
    runner.forever()
    assert task.result() == (True, [0, 1, 2])


def test_condition_needs_the_lock():
    cond = Condition()
    with pytest.raises(RuntimeError):
        cond.notify()
    with pytest.raises(RuntimeError):
        cond.wait().send(None)


def test_condition_wait_reacquires_after_cancel(aio, loop, runner):
    cond, seen = Condition(), []

    async def waiter():
        async with cond:
            try:
                await cond.wait()
            except Cancelled:
                seen.append(("locked after cancel", cond.locked()))
                raise

    def main():
        task = loop.call_soon(waiter())
        yield aio.Sleep(0.01)
        yield from cond.acquire()  # the waiter must wait for this before it can re-raise
        task.cancel()
        yield aio.Sleep(0.01)
        assert not task.done()
        cond.release()
        yield aio.Sleep(0.01)
        return task.cancelled()

    assert runner.complete(main()) is True
    assert seen == [("locked after cancel", True)] and not cond.locked()


def test_condition_notified_then_cancelled_passes_the_notification_on(aio, loop, runner):
    cond, woke = Condition(), []

    async def waiter(label):
        async with cond:
            await cond.wait()
            woke.append(label)

    def main():
        first = loop.call_soon(waiter("first"))
        loop.call_soon(waiter("second"))
        yield aio.Sleep(0.01)
        yield from cond.acquire()
        cond.notify(1)  # to "first" ...
        first.cancel()  # ... cancelled before it runs
        cond.release()
        yield aio.Sleep(0.01)
        return first.cancelled()

    assert runner.complete(main()) is True
    assert woke == ["second"] and not cond.locked()


def test_condition_wait_under_timeout_after(aio, loop, runner):
    cond = Condition()

    def main():
        yield from cond.acquire()
        with pytest.raises(TimeoutError):
            yield from timeout_after(0.02, cond.wait())
        assert cond.locked()
        cond.release()
        return len(cond._waiters)

    assert runner.complete(main()) == 0


def test_flag_wakes_every_waiter_and_stays_set(aio, loop, runner):
    flag, woke = Flag(), []

    def waiter(label):
        assert (yield from flag.wait()) is True
        woke.append(label)

    def setter():
        yield aio.Sleep(0.01)
        flag.set()
        flag.set()

    for label in "abc":
        loop.call_soon(waiter(label))
    loop.call_soon(setter())
    runner.forever()
    assert woke == list("abc") and flag.is_set()


def test_cancelled_flag_waiter_leaves_the_line(aio, loop, runner):
    flag = Flag()

    def main():
        task = loop.call_soon(flag.wait())
        yield aio.Sleep(0.01)
        task.cancel()
        yield aio.Sleep(0.01)
        return task.cancelled(), len(flag._waiters)

    assert runner.complete(main()) == (True, 0)


def test_closing_the_loop_with_parked_waiters(aio, backend, Lock):
    loop = aio.EventLoop(backend=backend)
    lock, cond = Lock(), Condition()

    def holder():
        yield from lock.acquire()
        yield from cond.acquire()
        yield aio.Sleep(10)

    async def waiter():
        async with cond:
            await cond.wait()

    loop.call_soon(holder())
    loop.call_soon(lock.acquire())
    loop.call_soon(waiter())
    runner_loop_steps = loop.run_until_complete(settle(aio))
    assert runner_loop_steps is None
    loop.close()  # closes every parked coroutine; none may raise or complain


def settle(aio):
    yield aio.Sleep(0.01)
