"""Generated task programs leave the same trace on the pure and the compiled loop.

A program is a tree of tasks, each a list of operations drawn from a seeded
random generator: Sleep(0), spawns, joins, cancels, socketpair writes and
reads, exceptions raised and caught, and the structured operations listed in
``OPERATIONS`` (task groups in both forms, ``shield``, ``ignore_after`` and
``timeout_after``).  Without timers every interleaving is
fixed by the loop's rules alone (snapshots of the ready queue, polls between
them), so the whole ordered trace must match.  With short timers the order
across tasks depends on the clock, so each task's own trace is compared.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import pytest

from aioc import _env, _loop_py
from aioc.events import timeout_after
from aioc.scopes import ignore_after, shield
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
    #: The variant of an op that the coverage test wants to see (e.g. the form).
    variant: Callable[[tuple], str]


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


OPERATIONS: list[Operation] = [
    Operation("group", 0.4, False, make_group, run_group, lambda op: op[1], lambda op: f"group/{op[2]}"),
    *(
        Operation(kind, 0.2, True, scope_maker(kind), run_scope, lambda op: [op[2]], scope_variant)
        for kind in ("shield", "ignore_after", "timeout_after")
    ),
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

    def close(self) -> None:
        self.loop.close()
        for a, b in self.pairs:
            a.close()
            b.close()

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

    def run(self, program: list[tuple]) -> list[tuple]:
        self.loop.set_exception_handler(lambda loop, context: None)
        self.loop.call_soon(self.task(program, "main"))
        self.loop.run_forever()
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


@pytest.mark.parametrize("backend", ["epoll", "select"])
@pytest.mark.parametrize("seed", range(60))
def test_same_trace_without_timers(seed: int, backend: str) -> None:
    program = make_program(random.Random(seed))
    pure = trace_of(_loop_py, backend, program)
    compiled = trace_of(_loop_c, backend, program)
    assert compiled == pure
    assert pure[-1] == ("loop", "tasks left", 0)


@pytest.mark.parametrize("backend", ["epoll", "select"])
@pytest.mark.parametrize("seed", range(20))
def test_same_per_task_traces_with_timers(seed: int, backend: str) -> None:
    program = make_program(random.Random(1000 + seed), timers=True)
    pure = trace_of(_loop_py, backend, program)
    compiled = trace_of(_loop_c, backend, program)
    assert per_task(compiled) == per_task(pure)


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
                seen.add(operation.variant(op))
                for nested in operation.nested(op):
                    walk(nested)

    for seed in range(60):
        walk(make_program(random.Random(seed)))
    core = {"sleep0", "spawn", "join", "cancel", "echo", "reader", "catch", "fail"}
    structured = {operation.name for operation in OPERATIONS}
    variants = {"group/join", "group/with", "ignore_after/expired", "ignore_after/open",
                "timeout_after/expired", "timeout_after/open"}
    assert seen >= core | structured | variants, sorted(core | structured | variants - seen)

    timed: set[str] = set()
    for seed in range(20):
        for op in make_program(random.Random(1000 + seed), timers=True):
            timed.add(op[0])
    assert timed >= {operation.name for operation in OPERATIONS if operation.with_timers}
