"""Cancel scopes: bound a block of work by a deadline and move on, or shield
cleanup that must finish from cancellation.

``timeout_after`` (in events.py) raises ``TimeoutError`` when its time runs
out; ``ignore_after`` returns ``None`` instead.  Both nest, and the earliest
deadline wins.  ``shield`` holds back ``Task.cancel()`` while a sub-coroutine
runs: the cancel is delivered when the shield is left.  Deadlines still apply
inside a shield, since they are set by the shielded code itself.
"""

from __future__ import annotations

import time
import types
from collections.abc import Generator
from typing import Any

from .events import Cancelled, Event, check_seconds, timeout_after

__all__ = ["ignore_after", "shield"]


class _EnterShield(Event):
    __slots__ = ()

    def _yield(self, loop: Any, task: Any) -> None:
        loop.shield(task)
        loop.reschedule(task, None)


class _LeaveShield(Event):
    __slots__ = ()

    def _yield(self, loop: Any, task: Any) -> None:
        if loop.unshield(task):
            raise Cancelled()  # a cancel arrived while shielded: deliver it now
        loop.reschedule(task, None)


@types.coroutine
def shield(coro: Any) -> Generator[Any, Any, Any]:
    """``result = yield from shield(cleanup())``: ``coro`` runs to its end even
    if the task is cancelled meanwhile; the cancel is raised when it returns."""
    yield _EnterShield()
    try:
        result = yield from coro
    except GeneratorExit:
        raise  # the loop is closing the task: nothing may yield now
    except BaseException:
        yield _LeaveShield()
        raise
    yield _LeaveShield()
    return result


@types.coroutine
def ignore_after(seconds: float, coro: Any) -> Generator[Any, Any, Any]:
    """``result = yield from ignore_after(5.0, fetch(conn))``: ``coro``'s result,
    or ``None`` if ``seconds`` pass first (``coro`` sees ``TimeoutError`` at its
    pending yield and its ``finally`` blocks run).  A ``TimeoutError`` from a
    shorter, inner bound that ``coro`` does not handle still propagates."""
    deadline = time.monotonic() + check_seconds(seconds)
    try:
        return (yield from timeout_after(seconds, coro))
    except TimeoutError:
        if time.monotonic() >= deadline:
            return None
        raise
