"""The select backend of the pure loop: portable, stateless, fds below 1024.

select() keeps nothing between calls, so every poll builds its sets from the
loop's waiting tables, and ``watch``/``unwatch`` only check the fd limit.
"""

from __future__ import annotations

import errno
import select
from typing import Any

from ._constants import FAULT, READABLE, SELECT_FD_LIMIT, WRITABLE, fd_too_large


class SelectBackend:
    name = "select"

    def __init__(self, loop: Any) -> None:
        if loop._wake_fd >= SELECT_FD_LIMIT:
            raise ValueError(fd_too_large(loop._wake_fd))
        self._readers = loop._read_waiting
        self._writers = loop._write_waiting
        self._wake_fd = loop._wake_fd

    def watch(self, fd: int, mask: int, owner: Any) -> None:
        if fd >= SELECT_FD_LIMIT:
            raise ValueError(fd_too_large(fd))

    def unwatch(self, fd: int, mask: int) -> None:
        pass

    def forget(self, fd: int) -> None:
        pass

    def rebuild(self) -> None:
        pass

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        readers = [self._wake_fd, *self._readers]
        try:
            readable, writable, _ = select.select(readers, self._writers, (), timeout)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            # Some waited-on fd was closed: report it as faulty, so that its
            # waiters' own I/O raises the real error.
            return [(fd, FAULT) for fd in sorted({*readers, *self._writers}) if not is_open(fd)]
        events = dict.fromkeys(readable, READABLE)
        for fd in writable:
            events[fd] = events.get(fd, 0) | WRITABLE
        return sorted(events.items())  # ascending fd order, on both loops

    def close(self) -> None:
        pass


def is_open(fd: int) -> bool:
    try:
        select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return True
