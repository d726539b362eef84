"""What a task is doing: its name, the frames it is suspended in, what it waits on.

Both loops' ``Task.stack()`` and the slow-step report of a debug loop are
built from here, so that they describe a task the same way.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Frame(NamedTuple):
    filename: str
    lineno: int
    function: str


class TaskStack(NamedTuple):
    """Where a task is suspended, outermost frame first, and what it waits on."""

    frames: list[Frame]
    #: The event it waits on, the task it joins, "parked" for a wait the loop
    #: does not own (a lock, a queue), or None when it is ready or running.
    waiting_on: Any


def default_name(coro: Any) -> str:
    """A task's name until one is set: what it runs."""
    return str(getattr(coro, "__qualname__", type(coro).__name__))


def check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a task's name must be a str, got {type(name).__name__}")
    return name


def coroutine_frames(coro: Any) -> list[Frame]:
    """The frames of ``coro`` and of the sub-coroutines it waits in (yield from, await)."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "gi_frame", None) or getattr(coro, "cr_frame", None)
        if frame is None:
            break
        frames.append(Frame(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        coro = getattr(coro, "gi_yieldfrom", None) or getattr(coro, "cr_await", None)
    return frames


def where(coro: Any) -> str:
    """The innermost place ``coro`` is suspended at, as ``file:line in function``."""
    frames = coroutine_frames(coro)
    if not frames:
        return "(not started or finished)"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.function}"
