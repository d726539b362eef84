"""The loop's public API: scheduling, running, stopping, closing, threads and signals."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import pytest


def _idle(aio, seconds=0):
    yield aio.Sleep(seconds)


# -- call_soon and running -------------------------------------------------------


def test_call_soon_returns_a_pending_task(aio, loop):
    task = loop.call_soon(_idle(aio))
    assert isinstance(task, aio.Task)
    assert not task.done()


def test_run_forever_returns_when_no_task_remains(aio, loop, runner):
    trace = []

    def worker(name, seconds):
        yield aio.Sleep(seconds)
        trace.append(name)
        return name

    tasks = [loop.call_soon(worker(f"w{i}", 0.001 * i)) for i in range(5)]
    runner.forever()
    assert [t.result() for t in tasks] == [f"w{i}" for i in range(5)]
    assert sorted(trace) == [f"w{i}" for i in range(5)]
    assert loop._num_tasks == 0
    assert not loop.is_running()


def test_run_forever_with_no_tasks_returns_at_once(loop):
    start = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - start < 2


def test_is_running_inside_a_task(aio, loop, runner):
    def main():
        yield aio.Sleep(0)
        return loop.is_running()

    assert runner.complete(main()) is True
    assert loop.is_running() is False


def test_stop_from_a_task_leaves_others_pending_and_run_forever_continues(aio, loop, runner):
    trace = []

    def stopper():
        yield aio.Sleep(0.005)
        loop.stop()
        trace.append("stop called")

    def worker():
        trace.append("worker started")
        yield aio.Sleep(0.05)
        trace.append("worker finished")
        return "done"

    loop.call_soon(stopper())
    w = loop.call_soon(worker())
    runner.forever()
    assert trace == ["worker started", "stop called"]
    assert not w.done()
    assert not loop.is_running()
    runner.forever()
    assert trace == ["worker started", "stop called", "worker finished"]
    assert w.result() == "done"


def test_stop_from_another_thread(aio, loop, runner):
    def sleeper():
        yield aio.Sleep(30)

    t = loop.call_soon(sleeper())
    timers = []

    def starter():  # armed while the loop runs: a stop before run_forever is void
        timers.append(threading.Timer(0.05, loop.stop))
        timers[0].start()
        yield aio.Sleep(0)

    loop.call_soon(starter())
    start = time.monotonic()
    runner.forever()
    assert time.monotonic() - start < 5
    timers[0].join()
    assert not t.done()


def test_run_until_complete_returns_the_result(aio, loop, runner):
    def main():
        yield aio.Sleep(0.001)
        return {"answer": 42}

    assert runner.complete(main()) == {"answer": 42}


def test_run_until_complete_raises_the_exception(aio, loop, runner):
    def main():
        yield aio.Sleep(0)
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        runner.complete(main())


def test_run_until_complete_accepts_a_task(aio, loop, runner):
    task = loop.call_soon(_returns(aio, "from a task"))
    assert runner.complete(task) == "from a task"


def _returns(aio, value):
    yield aio.Sleep(0)
    return value


def test_run_until_complete_leaves_other_tasks_pending(aio, loop, runner):
    other = loop.call_soon(_idle(aio, 0.5))
    assert runner.complete(_returns(aio, 1)) == 1
    assert not other.done()


def test_module_run(aio, backend):
    def main():
        yield aio.Sleep(0.001)
        return "ran"

    assert aio.run(main(), backend=backend) == "ran"
    assert aio.run(_returns(aio, 7)) == 7


def test_module_run_raises_and_closes_the_loop(aio, backend):
    trace = []

    def background():
        try:
            yield aio.Sleep(30)
        finally:
            trace.append("background closed")

    def main():
        yield aio.Spawn(background())
        yield aio.Sleep(0)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        aio.run(main(), backend=backend)
    assert trace == ["background closed"]


# -- close --------------------------------------------------------------------------


def test_close_runs_finally_of_every_unfinished_task(aio, loop, runner, socketpair):
    a, _ = socketpair()
    c, d = socketpair()
    trace = []
    never_started = []

    def sleeping():
        try:
            yield aio.Sleep(30)
        finally:
            trace.append("sleeping")

    def reading():
        try:
            yield aio.ReadEvent(a)
        except GeneratorExit:
            trace.append("reading got GeneratorExit")
            raise
        finally:
            trace.append("reading")

    def spinning():
        try:
            while True:
                yield aio.Sleep(0)
        finally:
            trace.append("spinning")

    def joining(target):
        try:
            yield aio.Join(target)
        finally:
            trace.append("joining")

    def writing():
        try:
            while True:
                yield aio.WriteEvent(c, b"x" * 65536)  # nobody reads d: it blocks
        finally:
            trace.append("writing")

    def stopper():
        yield aio.Sleep(0.02)
        loop.stop()

    def not_started():
        never_started.append("ran")
        try:
            yield aio.Sleep(0)
        finally:
            never_started.append("finally")

    s = loop.call_soon(sleeping())
    tasks = [s, loop.call_soon(reading()), loop.call_soon(spinning()), loop.call_soon(joining(s)), loop.call_soon(writing())]
    loop.call_soon(stopper())
    runner.forever()
    assert trace == []
    tasks.append(loop.call_soon(not_started()))
    loop.close()
    assert loop.is_closed()
    assert sorted(trace) == sorted(["sleeping", "reading got GeneratorExit", "reading", "spinning", "joining", "writing"])
    assert never_started == []
    assert all(t.done() for t in tasks)
    assert all(t.cancelled() for t in tasks)


def test_close_reports_a_finally_that_yields_and_still_closes(aio, loop, runner):
    reports = []
    trace = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))

    def stubborn():
        try:
            yield aio.Sleep(30)
        finally:
            trace.append("stubborn finally")
            yield aio.Sleep(0)  # not allowed while closing
            trace.append("unreachable")

    def polite():
        try:
            yield aio.Sleep(30)
        finally:
            trace.append("polite finally")

    def stopper():
        yield aio.Sleep(0.005)
        loop.stop()

    bad = loop.call_soon(stubborn())
    loop.call_soon(polite())
    loop.call_soon(stopper())
    runner.forever()
    loop.close()
    assert loop.is_closed()
    assert sorted(trace) == ["polite finally", "stubborn finally"]
    assert len(reports) == 1
    assert isinstance(reports[0]["exception"], RuntimeError)
    assert reports[0]["task"] is bad
    assert bad.done()


def test_close_is_idempotent_and_closed_loop_refuses_work(aio, loop):
    loop.close()
    loop.close()
    assert loop.is_closed()
    gen = _idle(aio)
    with pytest.raises(RuntimeError):
        loop.call_soon(gen)
    with pytest.raises(RuntimeError):
        loop.call_soon_threadsafe(gen)
    with pytest.raises(RuntimeError):
        loop.run_forever()
    with pytest.raises(RuntimeError):
        loop.run_until_complete(gen)
    gen.close()


def test_context_manager_closes_the_loop(aio, backend):
    trace = []

    def pending():
        try:
            yield aio.Sleep(30)
        finally:
            trace.append("finally")

    with aio.EventLoop(backend=backend) as ev_loop:
        assert not ev_loop.is_closed()
        t = ev_loop.call_soon(pending())

        def main():
            yield aio.Sleep(0.001)
            return "ok"

        assert ev_loop.run_until_complete(main()) == "ok"
        assert trace == []
    assert ev_loop.is_closed()
    assert trace == ["finally"]
    assert t.done()


def test_running_a_running_loop_raises(aio, loop, runner):
    ran = []

    def inner():
        ran.append("inner ran")
        yield aio.Sleep(0)

    def main():
        yield aio.Sleep(0)
        errors = []
        try:
            loop.run_forever()
        except RuntimeError:
            errors.append("run_forever")
        try:
            loop.run_until_complete(refused)
        except RuntimeError:
            errors.append("run_until_complete")
        try:
            loop.close()
        except RuntimeError:
            errors.append("close")
        yield aio.Sleep(0.01)
        return errors

    refused = inner()
    assert runner.complete(main()) == ["run_forever", "run_until_complete", "close"]
    # The refused coroutine was not scheduled behind the caller's back.
    assert ran == []
    assert loop._num_tasks == 0
    assert not loop.is_closed()
    refused.close()


# -- call_soon_threadsafe -----------------------------------------------------------


def test_call_soon_threadsafe_wakes_a_blocked_loop(aio, loop, runner):
    trace = []
    submitted = []

    def main():
        try:
            yield aio.Sleep(30)
        finally:
            trace.append("main finally")

    main_task = loop.call_soon(main())

    def canceller():
        main_task.cancel()
        yield aio.Sleep(0)
        return "cancelled it"

    def from_thread():
        time.sleep(0.05)
        submitted.append(loop.call_soon_threadsafe(canceller()))

    threads = []

    def starter():
        threads.append(threading.Thread(target=from_thread))
        threads[0].start()
        yield aio.Sleep(0)

    loop.call_soon(starter())
    start = time.monotonic()
    runner.forever(limit=10)
    assert time.monotonic() - start < 5
    threads[0].join()
    assert main_task.cancelled()
    assert trace == ["main finally"]
    assert isinstance(submitted[0], aio.Task)
    assert submitted[0].result() == "cancelled it"


def test_call_soon_threadsafe_from_many_threads(aio, loop, runner):
    results = []

    def job(i):
        yield aio.Sleep(0)
        results.append(i)

    def keeper():
        while len(results) < 40:
            yield aio.Sleep(0.01)

    loop.call_soon(keeper())
    threads = [
        threading.Thread(target=lambda k=k: [loop.call_soon_threadsafe(job(k * 10 + j)) for j in range(10)])
        for k in range(4)
    ]
    for t in threads:
        t.start()
    runner.forever()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(40))


def test_call_soon_threadsafe_before_running(aio, loop, runner):
    t = loop.call_soon_threadsafe(_returns(aio, "queued"))
    runner.forever()
    assert t.result() == "queued"


def test_close_closes_unadopted_threadsafe_tasks(aio, loop):
    trace = []

    def job():
        trace.append("ran")
        yield aio.Sleep(0)

    t = loop.call_soon_threadsafe(job())
    loop.close()
    assert trace == []
    assert t.done()


# -- KeyboardInterrupt and SystemExit -------------------------------------------------


@pytest.mark.parametrize("receiver", ["main-thread", "other-thread"])
def test_sigint_interrupts_a_blocked_loop(aio, loop, runner, receiver):
    """SIGINT during a long sleep: KeyboardInterrupt leaves run_forever promptly.

    With ``other-thread`` the main thread blocks SIGINT, so the kernel hands it
    to the sending thread: the main thread's poll is not interrupted (no EINTR)
    and only the loop's signal wake-up fd can end the wait.
    """
    trace = []
    threads = []

    def send_sigint():
        if receiver == "other-thread":
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    def main():
        threads.append(threading.Thread(target=send_sigint))
        threads[0].start()
        try:
            yield aio.Sleep(30)
        finally:
            trace.append("finally")

    old_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    old_mask = None
    if receiver == "other-thread":
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        t = loop.call_soon(main())
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):  # the watchdog ends a missed signal's wait
            runner.forever(limit=4.5)
        assert time.monotonic() - start < 4.5
    finally:
        for thread in threads:
            thread.join()
        if old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.signal(signal.SIGINT, old_handler)
    assert not loop.is_running()
    assert trace == []
    assert not t.done()
    loop.close()
    assert trace == ["finally"]


def test_system_exit_in_a_task_propagates(aio, loop, runner):
    trace = []
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))

    def quitter():
        yield aio.Sleep(0.001)
        raise SystemExit(3)

    def other():
        try:
            yield aio.Sleep(30)
        finally:
            trace.append("other finally")

    q = loop.call_soon(quitter())
    loop.call_soon(other())
    with pytest.raises(SystemExit) as info:
        runner.forever()
    assert info.value.code == 3
    assert not loop.is_running()
    assert q.done()
    loop.close()
    assert trace == ["other finally"]
    del q
    gc.collect()
    assert reports == []  # it reached the caller: not reported again


def test_close_callbacks_run_once_after_the_tasks_are_closed(aio, loop, runner):
    trace = []

    def sleeper():
        try:
            yield aio.Sleep(30)
        finally:
            trace.append("task closed")

    def failing():
        raise ValueError("callback failed")

    reports = []
    loop.set_exception_handler(lambda lp, context: reports.append(context["exception"]))
    loop.call_soon(sleeper())
    loop.add_close_callback(lambda: trace.append("first"))
    loop.add_close_callback(failing)
    loop.add_close_callback(lambda: trace.append("last"))
    def tick():
        yield aio.Sleep(0)

    loop.run_until_complete(tick())
    loop.close()
    loop.close()
    assert trace == ["task closed", "first", "last"]
    assert [str(exc) for exc in reports] == ["callback failed"]
    with pytest.raises(RuntimeError):
        loop.add_close_callback(lambda: None)
