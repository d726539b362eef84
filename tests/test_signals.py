"""wait_signal: signals as waits, kept while nobody waits, handlers restored on close.

Signals are sent to the main thread (where Python runs their handlers) with
``signal.pthread_kill``: from the main thread itself, the handler runs before
``pthread_kill`` returns; from a helper thread, while the loop is blocked.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from aioc import signals
from aioc.signals import wait_signal, watch_signals

MAIN = threading.main_thread().ident
USR1, USR2 = signal.SIGUSR1, signal.SIGUSR2


def send(signo: int) -> None:
    assert MAIN is not None
    signal.pthread_kill(MAIN, signo)


def send_later(signo: int, delay: float) -> threading.Thread:
    thread = threading.Timer(delay, send, (signo,))
    thread.daemon = True
    thread.start()
    return thread


@pytest.fixture(autouse=True)
def handlers_restored() -> Iterator[None]:
    """Every test leaves SIGUSR1, SIGUSR2, SIGHUP and SIGINT as it found them."""
    watched = (USR1, USR2, signal.SIGHUP, signal.SIGINT)
    before = {signo: signal.getsignal(signo) for signo in watched}
    yield
    after = {signo: signal.getsignal(signo) for signo in watched}
    for signo, handler in before.items():
        signal.signal(signo, handler)
    assert after == before
    assert signals._owners == {}


def test_a_signal_wakes_a_blocked_waiter(aio, loop, runner):
    def main():
        send_later(USR1, 0.02)
        return (yield from wait_signal(USR1))

    assert runner.complete(main()) == USR1


def test_async_def_awaits_it(aio, loop, runner):
    async def main():
        send_later(USR2, 0.01)
        return await wait_signal(USR1, USR2)

    assert runner.complete(main()) == USR2


def test_a_signal_while_nobody_waits_goes_to_the_next_wait(aio, loop, runner):
    def main():
        yield from watch_signals(USR1, USR2)
        send(USR1)
        yield aio.Sleep(0.01)  # the arrival is recorded; nobody waits
        send(USR2)
        yield aio.Sleep(0.01)
        send(USR1)
        yield aio.Sleep(0.01)
        got = [(yield from wait_signal(USR1)), (yield from wait_signal(USR1, USR2))]
        got.append((yield from wait_signal(USR1, USR2)))
        return got

    # A count per signal; a wait for several takes the signal kept longest.
    assert runner.complete(main()) == [USR1, USR1, USR2]


def test_kept_signals_survive_between_runs(aio, loop, runner):
    def watch():
        yield from watch_signals(USR1)

    runner.complete(watch())
    send(USR1)  # the loop is not running: the arrival waits for it

    def main():
        return (yield from aio.timeout_after(1.0, wait_signal(USR1)))

    assert runner.complete(main()) == USR1


def test_waiters_wake_in_fifo_order(aio, loop, runner):
    woke = []

    def waiter(label):
        woke.append((label, (yield from wait_signal(USR1))))

    def main():
        tasks = []
        for label in "abc":
            tasks.append((yield aio.Spawn(waiter(label))))
        yield aio.Sleep(0.01)
        for _ in tasks:
            send(USR1)
            yield aio.Sleep(0.005)
        for task in tasks:
            yield aio.Join(task)

    runner.complete(main())
    assert woke == [("a", USR1), ("b", USR1), ("c", USR1)]


def test_a_waiter_on_several_signals_is_woken_once(aio, loop, runner):
    def both():
        return (yield from wait_signal(USR1, USR2))

    def main():
        first = yield aio.Spawn(both())
        yield aio.Sleep(0.01)
        send(USR2)
        yield aio.Sleep(0.01)
        send(USR1)  # nobody waits now: kept
        return (yield aio.Join(first)), (yield from wait_signal(USR1))

    assert runner.complete(main()) == (USR2, USR1)


def test_a_cancelled_waiter_is_forgotten(aio, loop, runner):
    def waiter():
        return (yield from wait_signal(USR1))

    def main():
        gone = yield aio.Spawn(waiter())
        stays = yield aio.Spawn(waiter())
        yield aio.Sleep(0.01)
        gone.cancel()
        yield aio.Sleep(0.01)
        send(USR1)
        return gone.cancelled(), (yield aio.Join(stays))

    assert runner.complete(main()) == (True, USR1)


def test_a_timed_out_waiter_is_forgotten(aio, loop, runner):
    def main():
        with pytest.raises(TimeoutError):
            yield from aio.timeout_after(0.01, wait_signal(USR1))
        send(USR1)  # kept for the next wait, not given to the timed-out one
        return (yield from wait_signal(USR1))

    assert runner.complete(main()) == USR1


def test_a_signal_given_to_a_waiter_cancelled_before_it_ran_is_handed_on(aio, loop, runner):
    got = []

    def waiter(label):
        got.append((label, (yield from wait_signal(USR1))))

    def main():
        first = yield aio.Spawn(waiter("first"))
        second = yield aio.Spawn(waiter("second"))
        yield aio.Sleep(0.01)
        send(USR1)
        # The arrival is recorded on the next pass and resumes `first` on the
        # one after: cancel it in between.
        yield aio.Sleep(0)
        yield aio.Sleep(0)
        first.cancel()
        yield aio.Sleep(0.01)
        if not second.done():
            second.cancel()
        return first.cancelled()

    first_cancelled = runner.complete(main())
    # Exactly one of them has the signal, whoever ran first.
    assert len(got) == 1
    assert got == [("second", USR1)] if first_cancelled else [("first", USR1)]


def test_a_kept_signal_taken_by_a_waiter_cancelled_before_it_ran_is_kept_again(aio, loop, runner):
    def waiter():
        return (yield from wait_signal(USR1))

    def main():
        yield from watch_signals(USR1)
        send(USR1)
        yield aio.Sleep(0.01)
        task = loop.call_soon(waiter())  # it takes the kept signal at its first step...
        yield aio.Sleep(0)
        task.cancel()  # ...and is cancelled before it resumes with it
        yield aio.Sleep(0)
        return task.cancelled(), (yield from aio.timeout_after(1.0, wait_signal(USR1)))

    assert runner.complete(main()) == (True, USR1)


def test_previous_handler_is_restored_when_the_loop_closes(aio, backend):
    calls = []

    def mine(signo: int, frame: Any) -> None:
        calls.append(signo)

    previous = signal.signal(USR1, mine)
    try:
        loop = aio.EventLoop(backend=backend)
        try:
            def main():
                send_later(USR1, 0.01)
                return (yield from wait_signal(USR1))

            assert loop.run_until_complete(main()) == USR1
            assert signal.getsignal(USR1) != mine  # watched
        finally:
            loop.close()
        assert signal.getsignal(USR1) == mine
        send(USR1)
        assert calls == [USR1]
    finally:
        signal.signal(USR1, previous)


def test_default_handler_is_restored_when_the_loop_closes(aio, backend):
    assert signal.getsignal(USR2) == signal.SIG_DFL
    loop = aio.EventLoop(backend=backend)
    try:
        loop.run_until_complete(watch_signals(USR2))
        assert signal.getsignal(USR2) != signal.SIG_DFL
    finally:
        loop.close()
    assert signal.getsignal(USR2) == signal.SIG_DFL


def test_sigint_can_be_watched_while_the_loop_runs(aio, loop, runner):
    # As in an interactive program (a shell ignores SIGINT in background jobs).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        def main():
            send_later(signal.SIGINT, 0.01)
            return (yield from wait_signal(signal.SIGINT))

        # No KeyboardInterrupt: the watch took SIGINT over from the loop's guard...
        assert runner.complete(main()) == signal.SIGINT
        # ...and keeps it after the run, and in the next one.
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        send(signal.SIGINT)
        assert runner.complete(wait_signal(signal.SIGINT)) == signal.SIGINT
        loop.close()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_watching_from_another_thread_is_refused(aio, backend):
    outcome: list[BaseException] = []

    def in_thread() -> None:
        with aio.EventLoop(backend=backend) as loop:
            try:
                loop.run_until_complete(wait_signal(USR1))
            except BaseException as exc:
                outcome.append(exc)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError)
    assert "main thread" in str(outcome[0])


def test_one_loop_at_a_time_watches_a_signal(aio, backend):
    first = aio.EventLoop(backend=backend)
    second = aio.EventLoop(backend=backend)
    try:
        first.run_until_complete(watch_signals(USR1))
        with pytest.raises(RuntimeError, match="another loop"):
            second.run_until_complete(watch_signals(USR1))
        first.close()
        second.run_until_complete(watch_signals(USR1))  # free again
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("bad", [(), (0,), (signal.SIGKILL,), ("TERM",)])
def test_bad_signal_numbers(bad):
    with pytest.raises((TypeError, ValueError)):
        next(wait_signal(*bad))
