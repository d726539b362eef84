"""Generated task programs leave the same trace on the pure and the compiled loop.

A program is a tree of tasks, each a list of operations drawn from a seeded
random generator: Sleep(0), spawns, joins, cancels, socketpair writes and
reads, exceptions raised and caught, and the structured operations listed in
``OPERATIONS`` (task groups in both forms, ``shield``, ``ignore_after`` and
``timeout_after``, the primitives of aioc.sync and aioc.queues and UDP
sockets shared by all the tasks of a program).  Without timers every interleaving is
fixed by the loop's rules alone (snapshots of the ready queue, polls between
them), so the whole ordered trace must match.  With short timers the order
across tasks depends on the clock, so each task's own trace is compared.
"""

from __future__ import annotations

import random
import socket
import time
import types
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import pytest

from aioc import _env, _loop_py
from aioc.events import timeout_after
from aioc.queues import LifoQueue, PriorityQueue, Queue, QueueEmpty, QueueFull
from aioc.scopes import ignore_after, shield
from aioc.sync import BoundedSemaphore, Condition, Flag, Lock, Semaphore
from aioc.taskgroups import TaskGroup, TaskGroupError

try:
    from aioc import _loop_c
except ImportError:
    if _env.require_extensions():
        raise
    pytest.skip("the compiled loop is not built", allow_module_level=True)

PAIRS = 3


#: A wait that nothing will satisfy (its data was read by another task, or its
#: writer was cancelled) ends after this long, the same way on both loops.
STUCK = 0.2


# -- structured operations ---------------------------------------------------
#
# Operations beyond the core ones above are described by an ``Operation``:
# how to generate one, how the interpreter runs it, and which programs it
# nests (so that the coverage test walks into them).  To add a primitive (a
# lock, a semaphore, a queue), write its ``make`` and ``run`` and append it to
# ``OPERATIONS``; ``make_program``, the ``Interpreter`` and
# ``test_programs_exercise_every_operation`` pick it up from there.  ``run``
# must note only what is fixed by the loop's rules (no clock readings), and
# ``with_timers`` may be True only if the outcome for the task that runs it
# does not depend on the clock when timers run alongside.

#: The share of operations drawn from ``OPERATIONS`` (above the deepest level).
EXTENSION_SHARE = 0.15

#: Seconds for the deadline scopes: 0 expires at the scope's first event,
#: whatever the clock says; 60 never expires during a test.  Both are
#: deterministic, so they are used with and without timers.
SCOPE_SECONDS = (0.0, 60.0)


@dataclass(frozen=True)
class Operation:
    name: str
    weight: float
    with_timers: bool
    #: make(rng, depth, timers) -> the op tuple, whose first item is ``name``.
    make: Callable[[random.Random, int, bool], tuple]
    #: run(interpreter, op, label, children): a generator run with ``yield from``.
    run: Callable[[Interpreter, tuple, str, list], Generator[Any, Any, None]]
    #: The nested programs of an op, walked by the coverage test.
    nested: Callable[[tuple], list[list[tuple]]]
    #: The variant(s) of an op that the coverage test wants to see (e.g. the form).
    variant: Callable[[tuple], str | tuple[str, ...]]


def describe(exc: BaseException) -> Any:
    """What a trace records of an exception: its type and text, groups nested."""
    if isinstance(exc, TaskGroupError):
        return ("group", [describe(inner) for inner in exc.exceptions])
    return (type(exc).__name__, str(exc))


def make_group(rng: random.Random, depth: int, timers: bool) -> tuple:
    programs = [make_program(rng, depth + 1, timers) for _ in range(rng.randint(1, 3))]
    return ("group", programs, rng.choice(("join", "with")))


def run_group(interp: Interpreter, op: tuple, label: str, children: list) -> Generator[Any, Any, None]:
    """Spawn the programs into a TaskGroup and join it, in the op's form."""
    _, programs, form = op
    coros = [interp.task(program, interp.new_label(label, "g")) for program in programs]
    try:
        if form == "join":
            group = TaskGroup()
            for coro in coros:
                yield from group.spawn(coro)
            results = yield from group.join()
        else:
            results = yield from interp.group_with(coros).__await__()
    except TaskGroupError as exc:
        interp.note(label, "group failed", describe(exc))
    else:
        interp.note(label, "group joined", results)


def scope_maker(kind: str) -> Callable[[random.Random, int, bool], tuple]:
    def make(rng: random.Random, depth: int, timers: bool) -> tuple:
        seconds = None if kind == "shield" else rng.choice(SCOPE_SECONDS)
        return (kind, seconds, make_program(rng, depth + 1, timers))

    return make


def run_scope(interp: Interpreter, op: tuple, label: str, children: list) -> Generator[Any, Any, None]:
    """Run nested ops as the same task under a cancel scope."""
    kind, seconds, ops = op
    body = interp.run_ops(ops, label, children)
    if kind == "shield":
        interp.note(label, "shield left", (yield from shield(body)))
    elif kind == "ignore_after":
        interp.note(label, "ignore_after", seconds, (yield from ignore_after(seconds, body)))
    else:
        try:
            interp.note(label, "timeout_after", seconds, (yield from timeout_after(seconds, body)))
        except TimeoutError:
            interp.note(label, "timed out", seconds)


def scope_variant(op: tuple) -> str:
    return op[0] if op[0] == "shield" else f"{op[0]}/{'expired' if op[1] <= 0 else 'open'}"


# -- shared primitives ---------------------------------------------------------
#
# Each run's Interpreter makes a few of each primitive, shared by all the tasks
# of the program.  An op names one by index.  No wait may last forever:
#
# * a lock or a semaphore is held only around a section of ops that never
#   block (``make_section``) and is released in ``finally``, so acquiring one
#   always ends without any bound (``LOST`` only catches a lost grant);
# * every other wait (a condition, a flag, a full or empty queue, a queue's
#   join) might find nobody to satisfy it, so it is bounded by STUCK like the
#   socket reads above.  Few free-standing waits may really block
#   (``OPEN_WAITS``); ``make_pair`` builds waits together with what releases
#   them, and cancels the waiter before or right after its grant.
#
# On top of that an op may run under ``timeout_after`` or ``ignore_after`` with
# 0 s (expires at its first yield: a contended acquire, a wait) or 60 s (never).
# The ops are not used with timers: who holds what depends on the order
# across tasks.  The Interpreter counts holders and items, and the test checks
# that nothing was granted twice or lost (``Interpreter.violations``).

LOCKS = 2
#: Initial permits of the Semaphores and of the BoundedSemaphores.
PERMITS = (1, 2)
#: Condition i uses its own lock, or ``locks[0]`` (shared with the lock ops).
CONDITIONS = 2
FLAGS = 2
#: (class, maxsize) of the queues: all bounded, so that puts wait too.
QUEUES = ((Queue, 2), (LifoQueue, 1), (PriorityQueue, 3))

#: The ops that hold a lock or a permit around a section.
HOLDING = ("lock", "semaphore", "bounded_semaphore")

#: The bounds an op may run under: none, or a cancel scope of 0 s or 60 s.
BOUNDS = (None, None, *((kind, seconds) for kind in ("timeout_after", "ignore_after") for seconds in SCOPE_SECONDS))
#: The bounds that expire at the op's first yield.
EXPIRING = tuple(bound for bound in BOUNDS if bound is not None and bound[1] <= 0)

#: The share of free-standing waits (a condition, a flag, a queue) that may
#: really block: nothing is sure to release those, and each that stays stuck
#: costs STUCK seconds, so the rest run under an expiring bound.  Pairs
#: (``make_pair``) block on purpose, with their releaser built in.
OPEN_WAITS = 0.2


def wait_bound(rng: random.Random) -> tuple | None:
    """The bound of a free-standing wait."""
    return rng.choice(BOUNDS) if rng.random() < OPEN_WAITS else rng.choice(EXPIRING)


def bound_variant(bound: tuple | None) -> str:
    if bound is None:
        return "bound/none"
    return f"bound/{bound[0]}/{'expired' if bound[1] <= 0 else 'open'}"


#: A lock or a permit is always released, so waiting for one needs no bound;
#: but if a primitive lost a grant, a task would wait forever.  This bound on
#: every op turns that into a violation (it never fires otherwise).
LOST = 5.0


@types.coroutine
def watched(interp: Interpreter, label: str, what: str, body: Any) -> Generator[Any, Any, Any]:
    start = time.monotonic()
    try:
        return (yield from timeout_after(LOST, body))
    except TimeoutError:
        if time.monotonic() - start >= LOST:
            interp.violations.append((label, what, "never granted"))
        raise


def bounded(interp: Interpreter, label: str, what: str, bound: tuple | None, body: Any) -> Generator[Any, Any, None]:
    """Run ``body`` under ``bound`` and note how it ended, as the task sees it."""
    body = watched(interp, label, what, body)
    try:
        if bound is None:
            result = yield from body
        elif bound[0] == "timeout_after":
            result = yield from timeout_after(bound[1], body)
        else:
            result = yield from ignore_after(bound[1], body)  # None if it expired
    except TimeoutError:
        interp.note(label, what, "TimeoutError")
    except BaseException as exc:
        interp.note(label, what, "raised", type(exc).__name__)
        raise
    else:
        interp.note(label, what, "result", result)


class Awaitable:
    """Lets an ``async def`` await a generator coroutine (a list of ops)."""

    def __init__(self, gen: Any) -> None:
        self.gen = gen

    def __await__(self) -> Any:
        return self.gen


def make_section(rng: random.Random, depth: int) -> list[tuple]:
    """The body run while holding a lock or a permit: ops that never block."""
    ops: list[tuple] = []
    for _ in range(rng.randint(0, 3)):
        roll = rng.random()
        if roll < 0.45:
            ops.append(("sleep0",))
        elif roll < 0.55:
            ops.append(("catch",))
        elif roll < 0.62 and depth:
            ops.append(("fail",))
        elif roll < 0.72:
            ops.append(("flag", rng.randrange(FLAGS), "set", None, None))
        elif roll < 0.86:
            ops.append(("queue", rng.randrange(len(QUEUES)), "put_nowait", rng.randrange(1000), None))
        else:
            ops.append(("queue", rng.randrange(len(QUEUES)), "get_nowait", None, None))
    return ops


def holding_maker(kind: str) -> Callable[[random.Random, int, bool], tuple]:
    count = LOCKS if kind == "lock" else len(PERMITS)

    def make(rng: random.Random, depth: int, timers: bool) -> tuple:
        if kind == "bounded_semaphore":
            # "extra": release once more after the own release (ValueError
            # unless another task holds a permit).
            form = rng.choice(("yield", "async", "extra"))
        else:
            form = rng.choice(("yield", "async"))
        return (kind, rng.randrange(count), make_section(rng, depth), form, rng.choice(BOUNDS))

    return make


def run_holding(interp: Interpreter, op: tuple, label: str, children: list) -> Generator[Any, Any, None]:
    """Acquire a lock or a permit, run the section, release it (in ``finally``)."""
    kind, index, section, form, bound = op
    primitive = interp.primitive(kind, index)
    key = f"{kind}{index}"

    def enter() -> None:
        interp.hold(key, +1, label)
        interp.note(label, key, "acquired")

    def leave() -> None:
        interp.hold(key, -1, label)
        try:
            primitive.release()
        except ValueError as exc:  # a BoundedSemaphore released too often
            interp.note(label, key, "release raised", describe(exc))
        else:
            interp.note(label, key, "released")

    def with_yield() -> Generator[Any, Any, Any]:
        yield from primitive.acquire()
        enter()
        try:
            yield from interp.run_ops(section, label, children)
        finally:
            leave()
        if form == "extra":
            try:
                primitive.release()
            except ValueError as exc:
                interp.note(label, key, "extra release raised", describe(exc))
            else:
                interp.note(label, key, "extra release taken")
        return key

    async def with_async() -> Any:
        async with primitive:
            enter()
            try:
                await Awaitable(interp.run_ops(section, label, children))
            finally:
                # async with releases it: only the count is ours.
                interp.hold(key, -1, label)
                interp.note(label, key, "leaving")
        return key

    body = with_async().__await__() if form == "async" else with_yield()
    yield from bounded(interp, label, key, bound, body)


def make_condition(rng: random.Random, depth: int, timers: bool) -> tuple:
    """("condition", index, "notify", n or "all", bound) or ("condition", index, "wait_for", step, bound)."""
    index = rng.randrange(CONDITIONS)
    if rng.random() < 0.5:
        return ("condition", index, "notify", rng.choice((1, 2, "all")), rng.choice(BOUNDS))
    return ("condition", index, "wait_for", rng.randint(1, 2), wait_bound(rng))


def run_condition(interp: Interpreter, op: tuple, label: str, children: list) -> Generator[Any, Any, None]:
    """Bump the condition's counter and notify, or wait (STUCK at most) until it grows by ``step``."""
    _, index, mode, arg, bound = op
    cond = interp.conditions[index]
    key = f"condition{index}"
    state = interp.condition_state

    async def notify() -> Any:
        async with cond:
            state[index] += 1
            if arg == "all":
                cond.notify_all()
            else:
                cond.notify(arg)
            return state[index]

    async def wait_for() -> Any:
        async with cond:
            target = state[index] + arg

            def ready() -> int:
                return state[index] if state[index] >= target else 0

            return await timeout_after(STUCK, cond.wait_for(ready))

    body = notify() if mode == "notify" else wait_for()
    yield from bounded(interp, label, f"{key} {mode}", bound, body.__await__())


def make_flag(rng: random.Random, depth: int, timers: bool) -> tuple:
    """("flag", index, "set"|"wait", None, bound)."""
    mode = rng.choice(("set", "wait", "wait"))
    return ("flag", rng.randrange(FLAGS), mode, None, wait_bound(rng) if mode == "wait" else None)


def run_flag(interp: Interpreter, op: tuple, label: str, children: list) -> Generator[Any, Any, None]:
    _, index, mode, _, bound = op
    flag = interp.flags[index]
    if mode == "set":
        flag.set()
        interp.note(label, f"flag{index}", "set")
        return
    yield from bounded(interp, label, f"flag{index} wait", bound, timeout_after(STUCK, flag.wait()))


QUEUE_MODES = ("put", "put", "put_nowait", "get", "get", "get_done", "get_nowait", "task_done", "join")


def make_queue(rng: random.Random, depth: int, timers: bool) -> tuple:
    """("queue", index, mode, item, bound)."""
    mode = rng.choice(QUEUE_MODES)
    item = rng.randrange(1000) if mode.startswith("put") else None
    bound = wait_bound(rng) if mode in ("put", "get", "get_done", "join") else None
    return ("queue", rng.randrange(len(QUEUES)), mode, item, bound)


def run_queue(interp: Interpreter, op: tuple, label: str, children: list) -> Generator[Any, Any, None]:
    """One queue call; waiting ones (put, get, join) are bounded by STUCK."""
    _, index, mode, item, bound = op
    queue = interp.queues[index]
    key = f"queue{index}"
    if mode == "put_nowait":
        try:
            queue.put_nowait(item)
        except QueueFull:
            interp.note(label, key, "QueueFull", item)
        else:
            interp.put_items[index].append(item)
            interp.note(label, key, "put", item)
    elif mode == "get_nowait":
        try:
            got = queue.get_nowait()
        except QueueEmpty:
            interp.note(label, key, "QueueEmpty")
        else:
            interp.got_items[index].append(got)
            interp.note(label, key, "got", got)
    elif mode == "task_done":
        try:
            queue.task_done()
        except ValueError as exc:
            interp.note(label, key, "task_done raised", describe(exc))
        else:
            interp.note(label, key, "task_done")
    elif mode == "put":

        def put() -> Generator[Any, Any, Any]:
            yield from timeout_after(STUCK, queue.put(item))
            interp.put_items[index].append(item)
            return ("put", item)

        yield from bounded(interp, label, f"{key} put", bound, put())
    elif mode in ("get", "get_done"):

        def get() -> Generator[Any, Any, Any]:
            got = yield from timeout_after(STUCK, queue.get())
            interp.got_items[index].append(got)
            if mode == "get_done":
                queue.task_done()
            return ("got", got)

        yield from bounded(interp, label, f"{key} {mode}", bound, get())
    else:
        yield from bounded(interp, label, f"{key} join", bound, timeout_after(STUCK, queue.join()))


PAIR_KINDS = (*HOLDING, "condition", "flag", "queue/get", "queue/put", "queue/join")


def make_pair(rng: random.Random, depth: int, timers: bool) -> tuple:
    """("pair", kind, cancel, child_ops, own_ops): a child that waits and the ops that release it.

    The child is spawned first (by the section of ``own_ops`` for a lock or a
    semaphore) and blocks; this task then gives it what it
    waits for (a lock it held, a notify, a set, an item, room), after
    cancelling it if ``cancel`` is "before", or cancels it right after the
    grant ("after": granted but not yet run, so it must hand the grant on).
    """
    kind = rng.choice(PAIR_KINDS)
    cancel = rng.choice((None, "before", "after"))
    pause = [("sleep0",)] * rng.randint(1, 2)
    before = [("cancel", -1)] if cancel == "before" else []
    after = [("cancel", -1)] if cancel == "after" else []
    if kind in HOLDING:
        # A spawned child runs before its parent goes on: so this task takes
        # the lock (a permit) first and spawns the contenders in its section,
        # one per permit, so that the last of them waits.
        index = rng.randrange(LOCKS if kind == "lock" else len(PERMITS))
        forms = ("yield", "async")
        spawns = [
            ("spawn", [(kind, index, make_section(rng, depth + 1), rng.choice(forms), rng.choice(BOUNDS))])
            for _ in range(1 if kind == "lock" else PERMITS[index])
        ]
        child = []
        own = [(kind, index, [*spawns, *pause, *before], rng.choice(forms), None), *after]
    elif kind == "condition":
        index = rng.randrange(CONDITIONS)
        child = [("condition", index, "wait_for", 1, rng.choice(BOUNDS))]
        own = [*pause, *before, ("condition", index, "notify", rng.choice((1, 2, "all")), None), *after]
    elif kind == "flag":
        index = rng.randrange(FLAGS)
        child = [("flag", index, "wait", None, rng.choice(BOUNDS))]
        own = [*pause, *before, ("flag", index, "set", None, None), *after]
    else:
        index = rng.randrange(len(QUEUES))
        if kind == "queue/get":
            child = [("queue", index, rng.choice(("get", "get_done")), None, rng.choice(BOUNDS))]
            own = [*pause, *before, ("queue", index, rng.choice(("put", "put_nowait")), rng.randrange(1000), None),
                   *after]
        elif kind == "queue/put":
            child = [("queue", index, "put", rng.randrange(1000), rng.choice(BOUNDS))]
            own = [*pause, *before, ("queue", index, rng.choice(("get", "get_nowait")), None, None), *after]
        else:
            child = [("queue", index, "join", None, rng.choice(BOUNDS))]
            own = [("queue", index, "put_nowait", rng.randrange(1000), None), *pause, *before,
                   ("queue", index, "get_done", None, None), *after]
    return ("pair", kind, cancel, child, own)


def run_pair(interp: Interpreter, op: tuple, label: str, children: list) -> Generator[Any, Any, None]:
    _, kind, cancel, child_ops, own_ops = op
    if child_ops:
        child_label = interp.new_label(label, "p")
        children.append((yield interp.aio.Spawn(interp.task(child_ops, child_label))))
        interp.note(label, "spawned", child_label)
    yield from interp.run_ops(own_ops, label, children)


def sync_variant(op: tuple) -> tuple[str, ...]:
    return (f"{op[0]}/{op[2]}" if op[0] in ("condition", "flag", "queue") else f"{op[0]}/{op[3]}",
            bound_variant(op[4]))


def sync_nested(op: tuple) -> list[list[tuple]]:
    return [op[2]] if op[0] in HOLDING else []


# -- datagrams ---------------------------------------------------------------
#
# A few UDP sockets on 127.0.0.1, shared by the tasks of a program: a task
# sends a datagram to one of them (SendTo) and receives one from it
# (RecvFrom), itself or in a child it spawned first, so that the receive
# waits.  Another task may take the datagram first, which the loop's rules
# fix; a receive that finds none ends after STUCK.  Addresses are noted as
# whether they are the socket's own (ports differ between runs).

DATAGRAM_SOCKETS = 2


def make_datagram(rng: random.Random, depth: int, timers: bool) -> tuple:
    return ("datagram", rng.randrange(DATAGRAM_SOCKETS), rng.randbytes(rng.randint(0, 32)),
            rng.choice(("send_first", "receiver_first")))


def run_datagram(interp: Interpreter, op: tuple, label: str, children: list) -> Generator[Any, Any, None]:
    _, index, payload, order = op
    aio, sock = interp.aio, interp.datagram_sockets[index]
    if order == "receiver_first":
        child_label = interp.new_label(label, "d")
        children.append((yield aio.Spawn(interp.receive_datagram(sock, child_label))))
        yield aio.Sleep(0)
    interp.note(label, "sent datagram", (yield aio.SendTo(sock, payload, sock.getsockname())))
    if order == "send_first":
        yield from interp.receive_datagram(sock, label)


OPERATIONS: list[Operation] = [
    Operation("group", 0.4, False, make_group, run_group, lambda op: op[1], lambda op: f"group/{op[2]}"),
    *(
        Operation(kind, 0.2, True, scope_maker(kind), run_scope, lambda op: [op[2]], scope_variant)
        for kind in ("shield", "ignore_after", "timeout_after")
    ),
    *(Operation(kind, 0.3, False, holding_maker(kind), run_holding, sync_nested, sync_variant) for kind in HOLDING),
    Operation("condition", 0.4, False, make_condition, run_condition, sync_nested, sync_variant),
    Operation("flag", 0.3, False, make_flag, run_flag, sync_nested, sync_variant),
    Operation("queue", 0.8, False, make_queue, run_queue, sync_nested, sync_variant),
    Operation("pair", 2.0, False, make_pair, run_pair, lambda op: [op[3], op[4]],
              lambda op: (f"pair/{op[1]}", f"pair/cancel/{op[2]}")),
    Operation("datagram", 0.5, False, make_datagram, run_datagram, lambda op: [], lambda op: f"datagram/{op[3]}"),
]
OPERATION_BY_NAME = {operation.name: operation for operation in OPERATIONS}


def make_program(rng: random.Random, depth: int = 0, timers: bool = False) -> list[tuple]:
    """Operations for one task.  With timers, only those whose outcome for the
    task itself does not depend on the clock (no cancels, no shared sockets)."""
    ops: list[tuple] = []
    extensions = [operation for operation in OPERATIONS if timers is False or operation.with_timers]
    for _ in range(rng.randint(10, 25) if depth == 0 else rng.randint(2, 8)):
        if depth < 3 and extensions and rng.random() < EXTENSION_SHARE:
            operation = rng.choices(extensions, [operation.weight for operation in extensions])[0]
            ops.append(operation.make(rng, depth, timers))
            continue
        roll = rng.random()
        if roll < 0.25:
            ops.append(("sleep0",))
        elif roll < 0.40 and depth < 3:
            ops.append(("spawn", make_program(rng, depth + 1, timers)))
        elif roll < 0.50:
            ops.append(("join", rng.randrange(4)))
        elif roll < 0.57 and not timers:
            ops.append(("cancel", rng.randrange(4)))
        elif roll < 0.72 and not timers:
            ops.append(("echo", rng.randrange(PAIRS), rng.randbytes(rng.randint(1, 64))))
        elif roll < 0.80 and depth < 3 and not timers:
            ops.append(("reader", rng.randrange(PAIRS), rng.randbytes(rng.randint(1, 16))))
        elif roll < 0.86:
            ops.append(("catch",))
        elif roll < 0.90 and depth:
            ops.append(("fail",))
        elif timers:
            ops.append(("sleep", rng.choice((0.001, 0.002, 0.004))))
        else:
            ops.append(("sleep0",))
    return ops


class Interpreter:
    """Runs a program on one implementation and records what every task observes."""

    def __init__(self, aio: Any, backend: str) -> None:
        self.aio = aio
        self.loop = aio.EventLoop(backend=backend)
        self.trace: list[tuple] = []
        self.labels: dict[str, int] = {}
        self.pairs = []
        for _ in range(PAIRS):
            a, b = socket.socketpair()
            a.setblocking(False)
            b.setblocking(False)
            self.pairs.append((a, b))
        self.datagram_sockets = []
        for _ in range(DATAGRAM_SOCKETS):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            udp.setblocking(False)
            self.datagram_sockets.append(udp)
        # The shared primitives of this run (see "shared primitives" above);
        # the compiled loop's run uses its twins of Lock and Queue.
        lock_type, queue_type = getattr(aio, "Lock", Lock), getattr(aio, "Queue", Queue)
        self.locks = [lock_type() for _ in range(LOCKS)]
        self.semaphores = [Semaphore(n) for n in PERMITS]
        self.bounded_semaphores = [BoundedSemaphore(n) for n in PERMITS]
        self.conditions = [Condition(), Condition(self.locks[0])]
        self.condition_state = [0] * CONDITIONS
        self.flags = [Flag() for _ in range(FLAGS)]
        self.queues = [(queue_type if cls is Queue else cls)(maxsize) for cls, maxsize in QUEUES]
        self.put_items: list[list[Any]] = [[] for _ in QUEUES]
        self.got_items: list[list[Any]] = [[] for _ in QUEUES]
        self.holders: dict[str, int] = {}
        #: Broken promises of a primitive (a lock held twice, an item lost):
        #: they must not happen on either loop, whatever the traces say.
        self.violations: list[tuple] = []

    def primitive(self, kind: str, index: int) -> Any:
        return {"lock": self.locks, "semaphore": self.semaphores,
                "bounded_semaphore": self.bounded_semaphores}[kind][index]

    def hold(self, key: str, delta: int, label: str) -> None:
        """Count the holders of a lock or a semaphore; more than it grants is a violation."""
        self.holders[key] = held = self.holders.get(key, 0) + delta
        kind, index = key.rstrip("0123456789"), int(key[-1])
        # An extra release of a BoundedSemaphore may admit one holder more.
        limit = {"lock": 1, "semaphore": PERMITS[index]}.get(kind)
        if limit is not None and held > limit:
            self.violations.append((label, key, "held by", held))

    def check_primitives(self) -> None:
        """After the run: every primitive is free again, and each queue item was got at most once."""
        for key, held in self.holders.items():
            if held:
                self.violations.append(("end", key, "still held", held))
        for index, lock in enumerate(self.locks):
            if lock.locked() or lock._waiters:
                self.violations.append(("end", f"lock{index}", repr(lock)))
        for kind, semaphores in (("semaphore", self.semaphores), ("bounded_semaphore", self.bounded_semaphores)):
            for index, semaphore in enumerate(semaphores):
                if semaphore.value != PERMITS[index] or semaphore._waiters:
                    self.violations.append(("end", f"{kind}{index}", repr(semaphore)))
        for primitive in (*self.conditions, *self.flags):
            if primitive._waiters:
                self.violations.append(("end", repr(primitive)))
        for index, queue in enumerate(self.queues):
            if queue._getters or queue._putters or queue._joiners or queue._reserved:
                self.violations.append(("end", f"queue{index}", repr(queue), queue._reserved))
            left = []
            while not queue.empty():
                left.append(queue.get_nowait())
            if Counter(self.put_items[index]) != Counter(self.got_items[index]) + Counter(left):
                self.violations.append(("end", f"queue{index}", "put", self.put_items[index],
                                        "got", self.got_items[index], "left", left))
            self.note("loop", f"queue{index}", "left", left, "unfinished", queue._unfinished)

    def close(self) -> None:
        self.loop.close()
        for a, b in self.pairs:
            a.close()
            b.close()
        for udp in self.datagram_sockets:
            udp.close()

    def note(self, label: str, *what: Any) -> None:
        self.trace.append((label, *what))

    def new_label(self, parent: str, kind: str = "") -> str:
        # Counted per parent: with timers the order across tasks depends on the
        # clock, and a label must not.
        self.labels[parent] = count = self.labels.get(parent, 0) + 1
        return f"{parent}.{kind}{count}"

    def task(self, ops: list[tuple], label: str):
        try:
            yield from self.run_ops(ops, label, [])
            self.note(label, "done")
            return label
        except BaseException as exc:
            self.note(label, "ended", type(exc).__name__)
            raise

    def run_ops(self, ops: list[tuple], label: str, children: list[Any]):
        """Run ``ops`` as ``label``; ``children`` are the tasks it may join and cancel."""
        aio = self.aio
        for op in ops:
            kind = op[0]
            if kind in OPERATION_BY_NAME:
                yield from OPERATION_BY_NAME[kind].run(self, op, label, children)
            elif kind == "sleep0":
                yield aio.Sleep(0)
            elif kind == "sleep":
                yield aio.Sleep(op[1])
                self.note(label, "slept", op[1])
            elif kind == "spawn":
                child_label = self.new_label(label)
                children.append((yield aio.Spawn(self.task(op[1], child_label))))
                self.note(label, "spawned", child_label)
            elif kind == "join" and children:
                child = children[op[1] % len(children)]
                try:
                    self.note(label, "joined", (yield aio.Join(child)))
                except BaseException as exc:
                    self.note(label, "join raised", type(exc).__name__)
                    if isinstance(exc, aio.Cancelled) and not child.cancelled():
                        raise  # this task itself was cancelled
            elif kind == "cancel" and children:
                self.note(label, "cancel", children[op[1] % len(children)].cancel())
            elif kind == "echo":
                a, b = self.pairs[op[1]]
                sent = yield from aio.sendall(a, op[2])
                try:
                    data = yield aio.Timeout(aio.ReadEvent(b, len(op[2])), STUCK)
                except (aio.ResourceBusy, TimeoutError) as exc:
                    self.note(label, "echo failed", type(exc).__name__)
                    continue
                self.note(label, "echo", sent, data)
            elif kind == "reader":
                a, b = self.pairs[op[1]]
                child_label = self.new_label(label, "r")
                children.append((yield aio.Spawn(self.read_one(b, child_label))))
                yield aio.Sleep(0)
                yield aio.WriteEvent(a, op[2])
            elif kind == "catch":
                try:
                    yield 42  # not an event: TypeError at the yield
                except TypeError:
                    self.note(label, "caught TypeError")
            elif kind == "fail":
                raise ValueError(label)
        return "completed"

    async def group_with(self, coros: list[Any]) -> list[Any]:
        """The async-with form of a group: a failing child cancels this body."""
        async with TaskGroup() as group:
            tasks = [await group.spawn(coro) for coro in coros]
            await self.aio.Sleep(0)
        return [None if task.cancelled() else task.result() for task in tasks]

    def read_one(self, sock: socket.socket, label: str):
        try:
            self.note(label, "read", (yield self.aio.Timeout(self.aio.ReadEvent(sock), STUCK)))
        except BaseException as exc:
            self.note(label, "read ended", type(exc).__name__)
            raise
        return label

    def receive_datagram(self, sock: socket.socket, label: str):
        try:
            data, address = yield self.aio.Timeout(self.aio.RecvFrom(sock, 64), STUCK)
        except (self.aio.ResourceBusy, TimeoutError) as exc:
            self.note(label, "datagram failed", type(exc).__name__)
        else:
            self.note(label, "datagram", data, address == sock.getsockname())
        return label

    def run(self, program: list[tuple]) -> list[tuple]:
        self.loop.set_exception_handler(lambda loop, context: None)
        self.loop.call_soon(self.task(program, "main"))
        self.loop.run_forever()
        self.check_primitives()
        self.note("loop", "condition state", self.condition_state)
        self.note("loop", "violations", self.violations)
        self.note("loop", "tasks left", self.loop._num_tasks)
        return self.trace


def trace_of(aio: Any, backend: str, program: list[tuple]) -> list[tuple]:
    interpreter = Interpreter(aio, backend)
    try:
        return interpreter.run(program)
    finally:
        interpreter.close()


def per_task(trace: list[tuple]) -> dict[str, list[tuple]]:
    tasks: dict[str, list[tuple]] = {}
    for entry in trace:
        tasks.setdefault(entry[0], []).append(entry[1:])
    return tasks


def compiled_backend(backend: str) -> str:
    if backend not in _loop_c.available_backends():
        pytest.skip(f"{backend} is not available on this system")
    return backend


@pytest.mark.parametrize("backend", ["epoll", "select"])
@pytest.mark.parametrize("seed", range(60))
def test_same_trace_without_timers(seed: int, backend: str) -> None:
    program = make_program(random.Random(seed))
    compiled = trace_of(_loop_c, compiled_backend(backend), program)
    pure = trace_of(_loop_py, backend, program)
    assert compiled == pure
    assert pure[-1] == ("loop", "tasks left", 0)
    assert pure[-2] == ("loop", "violations", [])


@pytest.mark.parametrize("backend", ["epoll", "select"])
@pytest.mark.parametrize("seed", range(20))
def test_same_per_task_traces_with_timers(seed: int, backend: str) -> None:
    program = make_program(random.Random(1000 + seed), timers=True)
    compiled = trace_of(_loop_c, compiled_backend(backend), program)
    pure = trace_of(_loop_py, backend, program)
    assert per_task(compiled) == per_task(pure)
    assert pure[-2] == compiled[-2] == ("loop", "violations", [])


@pytest.mark.parametrize("timers", [False, True])
@pytest.mark.parametrize("seed", range(30))
def test_io_uring_keeps_every_promise(seed: int, timers: bool) -> None:
    """The same programs on io_uring: no broken promise, no task left.

    io_uring completes in another order than epoll reports readiness, so
    tasks interleave differently, and where two race for one socket the
    outcome differs (which reader gets a chunk, which gets ResourceBusy):
    its traces are not compared with the pure loop's, only its invariants.
    """
    program = make_program(random.Random((1000 if timers else 0) + seed), timers=timers)
    trace = trace_of(_loop_c, compiled_backend("io_uring"), program)
    assert trace[-2] == ("loop", "violations", [])
    if not timers:
        assert trace[-1] == ("loop", "tasks left", 0)


def test_programs_exercise_every_operation() -> None:
    """The generator really produces each kind of operation it claims to test."""
    seen: set[str] = set()

    def walk(ops: list[tuple]) -> None:
        for op in ops:
            seen.add(op[0])
            if op[0] == "spawn":
                walk(op[1])
            elif op[0] in OPERATION_BY_NAME:
                operation = OPERATION_BY_NAME[op[0]]
                variant = operation.variant(op)
                seen.update((variant,) if isinstance(variant, str) else variant)
                for nested in operation.nested(op):
                    walk(nested)

    for seed in range(60):
        walk(make_program(random.Random(seed)))
    core = {"sleep0", "spawn", "join", "cancel", "echo", "reader", "catch", "fail"}
    structured = {operation.name for operation in OPERATIONS}
    variants = {"group/join", "group/with", "ignore_after/expired", "ignore_after/open",
                "timeout_after/expired", "timeout_after/open"}
    variants |= {f"{kind}/{form}" for kind in HOLDING for form in ("yield", "async")}
    variants |= {"bounded_semaphore/extra", "condition/notify", "condition/wait_for", "flag/set", "flag/wait"}
    variants |= {f"queue/{mode}" for mode in QUEUE_MODES}
    variants |= {bound_variant(bound) for bound in BOUNDS}
    variants |= {f"pair/{kind}" for kind in PAIR_KINDS} | {f"pair/cancel/{c}" for c in (None, "before", "after")}
    variants |= {"datagram/send_first", "datagram/receiver_first"}
    assert seen >= core | structured | variants, sorted((core | structured | variants) - seen)

    timed: set[str] = set()
    for seed in range(20):
        for op in make_program(random.Random(1000 + seed), timers=True):
            timed.add(op[0])
    assert timed >= {operation.name for operation in OPERATIONS if operation.with_timers}
