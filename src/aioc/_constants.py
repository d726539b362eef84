"""Numbers and messages shared by both loops and the built-in events.

The compiled loop takes every value here at import, so the two twins cannot
drift apart on a limit or on the wording of an error.
"""

from __future__ import annotations

import errno

#: Bytes asked of ``recv`` when ``ReadEvent`` is given no size.
DEFAULT_READ_SIZE = 65536
#: Longest single poll; a bound against clock or arithmetic surprises.
MAX_POLL_TIMEOUT = 60.0
#: select() cannot watch descriptors at or above FD_SETSIZE.
SELECT_FD_LIMIT = 1024
#: Spurious wake-ups in a row on one fd that mean a closed fd's file is still
#: registered (kept open by a dup) and reporting under a reused number.
ZOMBIE_WAKEUPS = 3
#: How many times in a row a task may resume at once because its event
#: completed in its ``_yield`` (``loop.complete``) before it goes through the
#: ready queue like any other: a task whose sends always succeed at once
#: must not starve the others.
IMMEDIATE_RESUMPTIONS = 16
#: Cancelled timers are pruned once they are this many and outnumber live ones.
TIMER_PRUNE_MIN = 64
#: accept() errors that leave the listening socket readable: retrying at once
#: would spin, so the accept waits ACCEPT_BACKOFF seconds instead.
ACCEPT_BACKOFF_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_BACKOFF = 0.1
#: A debug loop logs a task step that holds it longer than this (seconds).
SLOW_STEP = 0.1

# Readiness masks, in the loop's own terms.  They have epoll's values, so the
# epoll backends pass them through unchanged; other backends translate.
READABLE = 0x001
WRITABLE = 0x004
#: Error and hang-up: reported unasked, they wake both reader and writer.
FAULT = 0x008 | 0x010

BACKENDS = ("epoll", "select")

LOOP_CLOSED = "the event loop is closed"
LOOP_RUNNING = "the event loop is already running"
CLOSE_RUNNING = "cannot close a running loop"
STOPPED_EARLY = "the loop stopped before the task finished"
TASK_NOT_DONE = "task is not done"
JOIN_SELF = "a task cannot join itself"
NEVER_RETRIEVED = "Task exception was never retrieved"
CLOSE_ERROR = "Error while closing a task"
CLOSE_CALLBACK_ERROR = "Error in a close callback"
SLOW_STEP_REPORT = "task %s held the loop for %.3f s after resuming at %s"
NOT_SHIELDED = "unshield without a matching shield"
HANDLER_ERROR = "Exception in the exception handler"
ACCEPT_RETRY = "accept() failed (%s); retrying every %.1f s"
NO_TASK_CREATION = "tasks are created by EventLoop.call_soon, not directly"


def unknown_backend(backend: object) -> str:
    return f"unknown or unavailable backend {backend!r}; choose from {', '.join(map(repr, available_backends()))}"


def available_backends() -> tuple[str, ...]:
    import select

    return BACKENDS if hasattr(select, "epoll") else ("select",)


def io_uring_unavailable(reason: str) -> str:
    return f"the io_uring backend is unavailable here: io_uring_setup failed ({reason})"


def busy_fd(fd: int) -> str:
    return f"another task already waits on file descriptor {fd}"


def closed_fd(fd: int) -> str:
    return f"cannot wait on file descriptor {fd}: the socket is closed"


def fd_too_large(fd: int) -> str:
    return f"file descriptor {fd} is too large for the select backend (limit {SELECT_FD_LIMIT}); use backend='epoll'"


def not_a_task_of(target: object) -> str:
    return f"Join() needs a task of this loop, got {target!r}"


def reschedule_waiting(task: object) -> str:
    return f"{task!r} waits on an fd, a timer or a task: only the loop may wake it"


def not_a_coroutine(coro: object) -> str:
    return f"expected a generator or coroutine, got {coro!r}"
