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
    return {
        "switch": {"tasks": 100, "count": max(1, round(20_000 * scale))},
        "spawn": {"count": max(1, round(200_000 * scale))},
        "timers": {"count": max(1, round(100_000 * scale)), "max_delay": 0.05},
        "queue": {"count": max(1, round(1_000_000 * scale)), "maxsize": 100},
        "lock": {"count": max(1, round(1_000_000 * scale))},
    }


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


# -- asyncio and uvloop -----------------------------------------------------------


def _asyncio_loop(name: str):
    import asyncio

    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _run_asyncio(name: str, main) -> float:
    """Run ``main`` (it returns its elapsed seconds) on a fresh loop of ``name``."""
    loop = _asyncio_loop(name)
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


def asyncio_switch(name: str, tasks: int, count: int) -> dict:
    import asyncio

    done = [0]

    async def switcher(n):
        sleep = asyncio.sleep
        for _ in range(n):
            await sleep(0)
        done[0] += n

    async def main():
        start = time.perf_counter()
        await asyncio.gather(*[switcher(count) for _ in range(tasks)])
        return time.perf_counter() - start

    elapsed = _run_asyncio(name, main())
    return {"ops": done[0], "expected": tasks * count, "elapsed_s": elapsed}


def asyncio_spawn(name: str, count: int) -> dict:
    import asyncio

    done = [0]

    async def main():
        loop = asyncio.get_running_loop()
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

    elapsed = _run_asyncio(name, main())
    return {"ops": done[0], "expected": count, "elapsed_s": elapsed}


def asyncio_timers(name: str, count: int, max_delay: float) -> dict:
    import asyncio

    late: list[float] = []
    monotonic = time.monotonic

    async def main():
        loop = asyncio.get_running_loop()
        finished = loop.create_future()

        async def sleeper(delay):
            deadline = monotonic() + delay
            await asyncio.sleep(delay)
            late.append(monotonic() - deadline)
            if len(late) == count:
                finished.set_result(None)

        start = time.perf_counter()
        create_task = loop.create_task
        for delay in delays(count, max_delay):
            create_task(sleeper(delay))
        await finished
        return time.perf_counter() - start

    elapsed = _run_asyncio(name, main())
    return {"ops": len(late), "expected": count, "elapsed_s": elapsed, "lateness": late}


def asyncio_queue(name: str, count: int, maxsize: int) -> dict:
    import asyncio

    received = [0]

    async def main():
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize)

        async def producer():
            put = queue.put
            for i in range(count):
                await put(i)

        async def consumer():
            get = queue.get
            for _ in range(count):
                await get()
            received[0] = count

        start = time.perf_counter()
        await asyncio.gather(producer(), consumer())
        return time.perf_counter() - start

    elapsed = _run_asyncio(name, main())
    return {"ops": received[0], "expected": count, "elapsed_s": elapsed}


def asyncio_lock(name: str, count: int) -> dict:
    import asyncio

    done = [0]

    async def main():
        lock = asyncio.Lock()
        acquire, release = lock.acquire, lock.release
        start = time.perf_counter()
        for _ in range(count):
            await acquire()
            release()
        done[0] = count
        return time.perf_counter() - start

    elapsed = _run_asyncio(name, main())
    return {"ops": done[0], "expected": count, "elapsed_s": elapsed}


# -- curio -------------------------------------------------------------------------


def curio_switch(tasks: int, count: int) -> dict:
    import curio

    done = [0]

    async def switcher(n):
        sleep = curio.sleep
        for _ in range(n):
            await sleep(0)
        done[0] += n

    async def main():
        start = time.perf_counter()
        async with curio.TaskGroup() as group:
            for _ in range(tasks):
                await group.spawn(switcher, count)
        return time.perf_counter() - start

    elapsed = curio.run(main)
    return {"ops": done[0], "expected": tasks * count, "elapsed_s": elapsed}


def curio_spawn(count: int) -> dict:
    import curio

    done = [0]

    async def main():
        finished = curio.Event()

        async def trivial():
            done[0] += 1
            if done[0] == count:
                await finished.set()

        start = time.perf_counter()
        spawn = curio.spawn
        for _ in range(count):
            await spawn(trivial, daemon=True)  # fire and forget, as call_soon and create_task
        await finished.wait()
        return time.perf_counter() - start

    elapsed = curio.run(main)
    return {"ops": done[0], "expected": count, "elapsed_s": elapsed}


def curio_timers(count: int, max_delay: float) -> dict:
    import curio

    late: list[float] = []
    monotonic = time.monotonic

    async def main():
        finished = curio.Event()

        async def sleeper(delay):
            deadline = monotonic() + delay
            await curio.sleep(delay)
            late.append(monotonic() - deadline)
            if len(late) == count:
                await finished.set()

        start = time.perf_counter()
        spawn = curio.spawn
        for delay in delays(count, max_delay):
            await spawn(sleeper, delay, daemon=True)
        await finished.wait()
        return time.perf_counter() - start

    elapsed = curio.run(main)
    return {"ops": len(late), "expected": count, "elapsed_s": elapsed, "lateness": late}


def curio_queue(count: int, maxsize: int) -> dict:
    import curio

    received = [0]

    async def main():
        queue = curio.Queue(maxsize)

        async def producer():
            put = queue.put
            for i in range(count):
                await put(i)

        async def consumer():
            get = queue.get
            for _ in range(count):
                await get()
            received[0] = count

        start = time.perf_counter()
        async with curio.TaskGroup() as group:
            await group.spawn(producer)
            await group.spawn(consumer)
        return time.perf_counter() - start

    elapsed = curio.run(main)
    return {"ops": received[0], "expected": count, "elapsed_s": elapsed}


def curio_lock(count: int) -> dict:
    import curio

    done = [0]

    async def main():
        lock = curio.Lock()
        acquire, release = lock.acquire, lock.release
        start = time.perf_counter()
        for _ in range(count):
            await acquire()
            await release()  # curio's release is a coroutine
        done[0] = count
        return time.perf_counter() - start

    elapsed = curio.run(main)
    return {"ops": done[0], "expected": count, "elapsed_s": elapsed}


# -- trio ----------------------------------------------------------------------------


def trio_switch(tasks: int, count: int) -> dict:
    import trio

    done = [0]

    async def switcher(n):
        sleep = trio.sleep
        for _ in range(n):
            await sleep(0)
        done[0] += n

    async def main():
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(switcher, count)
        return time.perf_counter() - start

    elapsed = trio.run(main)
    return {"ops": done[0], "expected": tasks * count, "elapsed_s": elapsed}


def trio_spawn(count: int) -> dict:
    import trio

    done = [0]

    async def trivial():
        done[0] += 1

    async def main():
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:  # trio's only way to spawn: the nursery waits for all
            start_soon = nursery.start_soon
            for _ in range(count):
                start_soon(trivial)
        return time.perf_counter() - start

    elapsed = trio.run(main)
    return {"ops": done[0], "expected": count, "elapsed_s": elapsed}


def trio_timers(count: int, max_delay: float) -> dict:
    import trio

    late: list[float] = []
    monotonic = time.monotonic

    async def sleeper(delay):
        deadline = monotonic() + delay
        await trio.sleep(delay)
        late.append(monotonic() - deadline)

    async def main():
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for delay in delays(count, max_delay):
                nursery.start_soon(sleeper, delay)
        return time.perf_counter() - start

    elapsed = trio.run(main)
    return {"ops": len(late), "expected": count, "elapsed_s": elapsed, "lateness": late}


def trio_queue(count: int, maxsize: int) -> dict:
    import trio

    received = [0]

    async def main():
        # trio has no queue object: a memory channel of the same capacity is its queue.
        send_channel, receive_channel = trio.open_memory_channel(maxsize)

        async def producer():
            send = send_channel.send
            for i in range(count):
                await send(i)

        async def consumer():
            receive = receive_channel.receive
            for _ in range(count):
                await receive()
            received[0] = count

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            nursery.start_soon(consumer)
        return time.perf_counter() - start

    elapsed = trio.run(main)
    return {"ops": received[0], "expected": count, "elapsed_s": elapsed}


def trio_lock(count: int) -> dict:
    import trio

    done = [0]

    async def main():
        lock = trio.Lock()
        acquire, release = lock.acquire, lock.release
        start = time.perf_counter()
        for _ in range(count):
            await acquire()
            release()
        done[0] = count
        return time.perf_counter() - start

    elapsed = trio.run(main)
    return {"ops": done[0], "expected": count, "elapsed_s": elapsed}


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
        func = {"switch": aioc_switch, "spawn": aioc_spawn, "timers": aioc_timers, "queue": aioc_queue,
                "lock": aioc_lock}[workload]
        result = func(backend, **sizes)
        import aioc

        result["loop"] = f"aioc-{aioc.IMPLEMENTATION}-{backend}"
    elif loop_name == "curio":
        func = {"switch": curio_switch, "spawn": curio_spawn, "timers": curio_timers, "queue": curio_queue,
                "lock": curio_lock}[workload]
        result = func(**sizes)
        result["loop"] = loop_name
    elif loop_name == "trio":
        func = {"switch": trio_switch, "spawn": trio_spawn, "timers": trio_timers, "queue": trio_queue,
                "lock": trio_lock}[workload]
        result = func(**sizes)
        result["loop"] = loop_name
    else:
        func = {"switch": asyncio_switch, "spawn": asyncio_spawn, "timers": asyncio_timers, "queue": asyncio_queue,
                "lock": asyncio_lock}[workload]
        result = func(loop_name, **sizes)
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
