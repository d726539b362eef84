"""The in-process scheduler workloads: no sockets, only the loop's own machinery.

Each runs in a fresh process (``python -m aioc.bench.scheduler LOOP WORKLOAD``)
and prints one JSON line.  LOOP is ``aioc`` (with ``--backend``; the
implementation follows ``AIOC_NO_EXTENSIONS``), ``asyncio``, ``uvloop``,
``curio`` or ``trio``, each in its own idiom: a task is spawned with aioc's
``loop.call_soon``, asyncio's ``create_task``, curio's ``spawn(daemon=True)``
and trio's ``nursery.start_soon``.

- ``switch``: ``tasks`` tasks each yield ``Sleep(0)`` (``await
  asyncio.sleep(0)``) ``count`` times: task switches per second.
- ``spawn``: ``count`` trivial tasks are spawned from a running task (aioc
  ``loop.call_soon``, asyncio ``create_task``) and all run to completion.
- ``timers``: ``count`` tasks each sleep a random delay in ``[0, max_delay]``
  (the same seeded delays for every loop): timers per second, and how late
  each wake-up came compared to its deadline.
- ``queue``: a producer and a consumer task pass ``count`` items through a
  queue of ``maxsize`` items (``aioc.Queue``, the compiled twin when the
  loop is compiled; ``asyncio.Queue``, curio ``curio.Queue``; trio has no
  queue object, so a memory channel ``trio.open_memory_channel(maxsize)``):
  items per second.
- ``lock``: one task acquires and releases an uncontended lock ``count``
  times (``aioc.Lock``, likewise; ``asyncio.Lock``, ``curio.Lock``,
  ``trio.Lock``): acquire-release pairs per second.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import sys
import time

from .stats import percentile

LOOPS = ("aioc", "asyncio", "uvloop", "curio", "trio")
WORKLOADS = ("switch", "spawn", "timers", "queue", "lock")

#: The full sizes; ``scaled`` shrinks the counts (not the number of tasks or the delays).
FULL_SIZES = {"switch": {"tasks": 100, "count": 20_000}, "spawn": {"count": 200_000},
              "timers": {"count": 100_000, "max_delay": 0.05},
              "queue": {"count": 1_000_000, "maxsize": 100}, "lock": {"count": 1_000_000}}


def scaled(scale: float) -> dict[str, dict]:
    """The workload sizes at ``scale`` times the full counts (at least 1)."""
    return {workload: {name: max(1, round(value * scale)) if name == "count" else value
                       for name, value in sizes.items()}
            for workload, sizes in FULL_SIZES.items()}


QUICK_SIZES = scaled(0.05)


def delays(count: int, max_delay: float, seed: int = 12345) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0.0, max_delay) for _ in range(count)]


# -- aioc -----------------------------------------------------------------------


def aioc_switch(backend: str, tasks: int, count: int) -> dict:
    import aioc
    from aioc import Sleep

    done = [0]

    def switcher(n):
        for _ in range(n):
            yield Sleep(0)
        done[0] += n

    loop = aioc.EventLoop(backend)
    start = time.perf_counter()
    for _ in range(tasks):
        loop.call_soon(switcher(count))
    loop.run_forever()
    elapsed = time.perf_counter() - start
    loop.close()
    return {"ops": done[0], "expected": tasks * count, "elapsed_s": elapsed}


def aioc_spawn(backend: str, count: int) -> dict:
    import aioc

    done = [0]

    def trivial():
        done[0] += 1
        return
        yield  # a generator coroutine that finishes at its first step

    def spawner(loop):
        call_soon = loop.call_soon
        for _ in range(count):
            call_soon(trivial())
        return
        yield

    loop = aioc.EventLoop(backend)
    start = time.perf_counter()
    loop.call_soon(spawner(loop))
    loop.run_forever()  # returns when no task is left
    elapsed = time.perf_counter() - start
    loop.close()
    return {"ops": done[0], "expected": count, "elapsed_s": elapsed}


def aioc_timers(backend: str, count: int, max_delay: float) -> dict:
    import aioc
    from aioc import Sleep

    late: list[float] = []
    monotonic = time.monotonic

    def sleeper(delay):
        deadline = monotonic() + delay
        yield Sleep(delay)
        late.append(monotonic() - deadline)

    def spawner(loop):
        call_soon = loop.call_soon
        for delay in delays(count, max_delay):
            call_soon(sleeper(delay))
        return
        yield

    loop = aioc.EventLoop(backend)
    start = time.perf_counter()
    loop.call_soon(spawner(loop))
    loop.run_forever()
    elapsed = time.perf_counter() - start
    loop.close()
    return {"ops": len(late), "expected": count, "elapsed_s": elapsed, "lateness": late}


def aioc_queue(backend: str, count: int, maxsize: int) -> dict:
    import aioc

    received = [0]
    queue: aioc.Queue[int] = aioc.Queue(maxsize)

    def producer():
        put = queue.put
        for i in range(count):
            yield from put(i)

    def consumer():
        get = queue.get
        for _ in range(count):
            yield from get()
        received[0] = count

    loop = aioc.EventLoop(backend)
    start = time.perf_counter()
    loop.call_soon(producer())
    loop.call_soon(consumer())
    loop.run_forever()
    elapsed = time.perf_counter() - start
    loop.close()
    return {"ops": received[0], "expected": count, "elapsed_s": elapsed}


def aioc_lock(backend: str, count: int) -> dict:
    import aioc

    done = [0]
    lock = aioc.Lock()

    def locker():
        acquire, release = lock.acquire, lock.release
        for _ in range(count):
            yield from acquire()
            release()
        done[0] = count

    loop = aioc.EventLoop(backend)
    start = time.perf_counter()
    loop.call_soon(locker())
    loop.run_forever()
    elapsed = time.perf_counter() - start
    loop.close()
    return {"ops": done[0], "expected": count, "elapsed_s": elapsed}


AIOC_WORKLOADS = {"switch": aioc_switch, "spawn": aioc_spawn, "timers": aioc_timers, "queue": aioc_queue,
                  "lock": aioc_lock}


# -- the async/await libraries ----------------------------------------------------
#
# asyncio (and uvloop), curio and trio run switch, queue and lock the same way
# and differ only in a handful of idioms: how a main runs, how a set of tasks
# runs to completion, how a queue and a lock are made.  Each library below
# names its idioms once; the shared workloads bind them (sleep, put, get,
# acquire, release) to locals before their timed loops, which therefore stay
# what each library's own code would be.  Spawning is the one thing the
# libraries do differently at heart, so spawn and timers stay each library's own.


class _AsyncLibrary:
    """The workloads in one async/await library's idioms."""

    #: Whether the lock's release is a coroutine (curio's), to be awaited.
    release_awaits = False

    def __init__(self, lib) -> None:
        #: The library's module: asyncio, curio or trio.
        self.lib = lib
        self.sleep = lib.sleep

    def run(self, main) -> float:
        """Run the coroutine function ``main`` (it returns its elapsed seconds)."""
        raise NotImplementedError

    async def run_all(self, calls) -> None:
        """Run ``(function, args)`` tasks concurrently until all are done."""
        raise NotImplementedError

    def new_queue(self, maxsize: int):
        """A queue of ``maxsize`` items, as its ``(put, get)`` pair."""
        queue = self.lib.Queue(maxsize)
        return queue.put, queue.get

    def new_lock(self):
        """A fresh, uncontended lock."""
        return self.lib.Lock()

    def switch(self, tasks: int, count: int) -> dict:
        done = [0]

        async def switcher(n):
            sleep = self.sleep
            for _ in range(n):
                await sleep(0)
            done[0] += n

        async def main():
            start = time.perf_counter()
            await self.run_all([(switcher, (count,))] * tasks)
            return time.perf_counter() - start

        elapsed = self.run(main)
        return {"ops": done[0], "expected": tasks * count, "elapsed_s": elapsed}

    def queue(self, count: int, maxsize: int) -> dict:
        received = [0]

        async def main():
            put_item, get_item = self.new_queue(maxsize)

            async def producer():
                put = put_item  # a local in the loop, not a closure cell
                for i in range(count):
                    await put(i)

            async def consumer():
                get = get_item
                for _ in range(count):
                    await get()
                received[0] = count

            start = time.perf_counter()
            await self.run_all([(producer, ()), (consumer, ())])
            return time.perf_counter() - start

        elapsed = self.run(main)
        return {"ops": received[0], "expected": count, "elapsed_s": elapsed}

    def lock(self, count: int) -> dict:
        done = [0]

        async def main():
            lock = self.new_lock()
            acquire, release = lock.acquire, lock.release
            start = time.perf_counter()
            if self.release_awaits:
                for _ in range(count):
                    await acquire()
                    await release()
            else:
                for _ in range(count):
                    await acquire()
                    release()
            done[0] = count
            return time.perf_counter() - start

        elapsed = self.run(main)
        return {"ops": done[0], "expected": count, "elapsed_s": elapsed}


class _Asyncio(_AsyncLibrary):
    """asyncio on its own loop or on uvloop's: tasks are ``create_task``-ed."""

    def __init__(self, name: str) -> None:
        import asyncio

        super().__init__(asyncio)
        self.name = name

    def run(self, main) -> float:
        if self.name == "uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = self.lib.new_event_loop()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()

    async def run_all(self, calls) -> None:
        await self.lib.gather(*[function(*args) for function, args in calls])

    def spawn(self, count: int) -> dict:
        done = [0]

        async def main():
            loop = self.lib.get_running_loop()
            finished = loop.create_future()

            async def trivial():
                done[0] += 1
                if done[0] == count:
                    finished.set_result(None)

            start = time.perf_counter()
            create_task = loop.create_task
            for _ in range(count):
                create_task(trivial())
            await finished
            return time.perf_counter() - start

        elapsed = self.run(main)
        return {"ops": done[0], "expected": count, "elapsed_s": elapsed}

    def timers(self, count: int, max_delay: float) -> dict:
        late: list[float] = []
        monotonic = time.monotonic

        async def main():
            loop = self.lib.get_running_loop()
            finished = loop.create_future()

            async def sleeper(delay):
                deadline = monotonic() + delay
                await self.sleep(delay)
                late.append(monotonic() - deadline)
                if len(late) == count:
                    finished.set_result(None)

            start = time.perf_counter()
            create_task = loop.create_task
            for delay in delays(count, max_delay):
                create_task(sleeper(delay))
            await finished
            return time.perf_counter() - start

        elapsed = self.run(main)
        return {"ops": len(late), "expected": count, "elapsed_s": elapsed, "lateness": late}


class _Curio(_AsyncLibrary):
    """curio: tasks are spawned into a ``TaskGroup``, or as daemons to fire and forget."""

    release_awaits = True

    def __init__(self) -> None:
        import curio

        super().__init__(curio)

    def run(self, main) -> float:
        return self.lib.run(main)

    async def run_all(self, calls) -> None:
        async with self.lib.TaskGroup() as group:
            for function, args in calls:
                await group.spawn(function, *args)

    def spawn(self, count: int) -> dict:
        done = [0]

        async def main():
            finished = self.lib.Event()

            async def trivial():
                done[0] += 1
                if done[0] == count:
                    await finished.set()

            start = time.perf_counter()
            spawn = self.lib.spawn
            for _ in range(count):
                await spawn(trivial, daemon=True)  # fire and forget, as call_soon and create_task
            await finished.wait()
            return time.perf_counter() - start

        elapsed = self.run(main)
        return {"ops": done[0], "expected": count, "elapsed_s": elapsed}

    def timers(self, count: int, max_delay: float) -> dict:
        late: list[float] = []
        monotonic = time.monotonic

        async def main():
            finished = self.lib.Event()

            async def sleeper(delay):
                deadline = monotonic() + delay
                await self.sleep(delay)
                late.append(monotonic() - deadline)
                if len(late) == count:
                    await finished.set()

            start = time.perf_counter()
            spawn = self.lib.spawn
            for delay in delays(count, max_delay):
                await spawn(sleeper, delay, daemon=True)
            await finished.wait()
            return time.perf_counter() - start

        elapsed = self.run(main)
        return {"ops": len(late), "expected": count, "elapsed_s": elapsed, "lateness": late}


class _Trio(_AsyncLibrary):
    """trio: every task is ``start_soon``-ed into a nursery, which waits for them all."""

    def __init__(self) -> None:
        import trio

        super().__init__(trio)

    def run(self, main) -> float:
        return self.lib.run(main)

    async def run_all(self, calls) -> None:
        async with self.lib.open_nursery() as nursery:
            for function, args in calls:
                nursery.start_soon(function, *args)

    def new_queue(self, maxsize: int):
        # trio has no queue object: a memory channel of the same capacity is its queue.
        send_channel, receive_channel = self.lib.open_memory_channel(maxsize)
        return send_channel.send, receive_channel.receive

    def spawn(self, count: int) -> dict:
        done = [0]

        async def trivial():
            done[0] += 1

        async def main():
            start = time.perf_counter()
            async with self.lib.open_nursery() as nursery:  # trio's only way to spawn: the nursery waits for all
                start_soon = nursery.start_soon
                for _ in range(count):
                    start_soon(trivial)
            return time.perf_counter() - start

        elapsed = self.run(main)
        return {"ops": done[0], "expected": count, "elapsed_s": elapsed}

    def timers(self, count: int, max_delay: float) -> dict:
        late: list[float] = []
        monotonic = time.monotonic

        async def sleeper(delay):
            deadline = monotonic() + delay
            await self.sleep(delay)
            late.append(monotonic() - deadline)

        async def main():
            start = time.perf_counter()
            async with self.lib.open_nursery() as nursery:
                for delay in delays(count, max_delay):
                    nursery.start_soon(sleeper, delay)
            return time.perf_counter() - start

        elapsed = self.run(main)
        return {"ops": len(late), "expected": count, "elapsed_s": elapsed, "lateness": late}


def _async_library(name: str) -> _AsyncLibrary:
    if name == "curio":
        return _Curio()
    if name == "trio":
        return _Trio()
    return _Asyncio(name)


def _run_delay() -> float | None:
    try:
        with open("/proc/self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def run(loop_name: str, workload: str, *, backend: str = "epoll", **sizes) -> dict:
    """Run one workload in this process; returns rates, CPU use and lateness."""
    if loop_name not in LOOPS:
        raise ValueError(f"unknown loop {loop_name!r}")
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}")
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wait0 = _run_delay()
    if loop_name == "aioc":
        result = AIOC_WORKLOADS[workload](backend, **sizes)
        import aioc

        result["loop"] = f"aioc-{aioc.IMPLEMENTATION}-{backend}"
    else:
        result = getattr(_async_library(loop_name), workload)(**sizes)
        result["loop"] = loop_name
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    wait1 = _run_delay()
    ops = result["ops"]
    result.update(
        workload=workload,
        sizes=sizes,
        rate=ops / result["elapsed_s"] if result["elapsed_s"] > 0 else 0.0,
        errors=result["expected"] - ops,
        user_s=cpu1.ru_utime - cpu0.ru_utime,
        sys_s=cpu1.ru_stime - cpu0.ru_stime,
        wait_s=wait1 - wait0 if wait0 is not None and wait1 is not None else None,
    )
    late = result.pop("lateness", None)
    if late is not None:
        late.sort()
        result.update(
            late_p50_ms=percentile(late, 0.5) * 1000 if late else None,
            late_p99_ms=percentile(late, 0.99) * 1000 if late else None,
            late_max_ms=late[-1] * 1000 if late else None,
        )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aioc.bench.scheduler")
    parser.add_argument("loop", choices=LOOPS)
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--backend", choices=("epoll", "select"), default="epoll")
    parser.add_argument("--sizes", default=None, help="JSON object of workload sizes (default: the full ones)")
    parser.add_argument("--quick", action="store_true", help="the scaled-down sizes of --quick")
    parser.add_argument("--lifetime", type=int, default=300)
    args = parser.parse_args(argv)
    signal.alarm(args.lifetime)  # bounded in time
    sizes = dict((QUICK_SIZES if args.quick else FULL_SIZES)[args.workload])
    if args.sizes:
        sizes.update(json.loads(args.sizes))
    result = run(args.loop, args.workload, backend=args.backend, **sizes)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
