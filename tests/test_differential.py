"""Generated task programs leave the same trace on the pure and the compiled loop.

A program is a tree of tasks, each a list of operations drawn from a seeded
random generator: Sleep(0), spawns, joins, cancels, socketpair writes and
reads, exceptions raised and caught.  Without timers every interleaving is
fixed by the loop's rules alone (snapshots of the ready queue, polls between
them), so the whole ordered trace must match.  With short timers the order
across tasks depends on the clock, so each task's own trace is compared.
"""

from __future__ import annotations

import random
import socket
from typing import Any

import pytest

from aioc import _env, _loop_py

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


def make_program(rng: random.Random, depth: int = 0, timers: bool = False) -> list[tuple]:
    """Operations for one task.  With timers, only those whose outcome for the
    task itself does not depend on the clock (no cancels, no shared sockets)."""
    ops: list[tuple] = []
    for _ in range(rng.randint(10, 25) if depth == 0 else rng.randint(2, 8)):
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
        self.labels = 0
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

    def task(self, ops: list[tuple], label: str):
        aio = self.aio
        children = []
        try:
            for op in ops:
                kind = op[0]
                if kind == "sleep0":
                    yield aio.Sleep(0)
                elif kind == "sleep":
                    yield aio.Sleep(op[1])
                    self.note(label, "slept", op[1])
                elif kind == "spawn":
                    self.labels += 1
                    child_label = f"{label}.{self.labels}"
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
                    self.labels += 1
                    child_label = f"{label}.r{self.labels}"
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
            self.note(label, "done")
            return label
        except BaseException as exc:
            self.note(label, "ended", type(exc).__name__)
            raise

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

    for seed in range(60):
        walk(make_program(random.Random(seed)))
    assert seen >= {"sleep0", "spawn", "join", "cancel", "echo", "reader", "catch", "fail"}
