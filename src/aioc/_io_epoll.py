"""The epoll backend of the pure loop: level-triggered, persistent registrations.

Facts about epoll this relies on:

- it watches open files, not fd numbers: a socket closed while registered
  and kept open by a ``dup`` keeps reporting under its old number, and can
  then no longer be removed with ``EPOLL_CTL_DEL``;
- a file closed with no other reference is dropped silently;
- errors and hang-ups are reported even when not asked for.

An fd stays registered while the same socket object waits on it with the same
interest, which saves an ``epoll_ctl`` per wait.  A registration is removed
lazily, when an event arrives that no task waits for (see the loop's
``_dispatch_io``).
"""

from __future__ import annotations

import select
import weakref
from typing import Any

from ._constants import FAULT, READABLE, WRITABLE


def _check_masks() -> None:
    # The loop's masks are epoll's own values, passed through unchanged.
    assert (READABLE, WRITABLE, FAULT) == (select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR | select.EPOLLHUP)


class EpollBackend:
    name = "epoll"

    def __init__(self, loop: Any) -> None:
        _check_masks()
        self._epoll = select.epoll()
        self._masks: dict[int, int] = {}
        # The socket each registration was made for: another socket on the
        # same fd number may be a file epoll has never seen.
        self._owners: dict[int, weakref.ref[Any] | None] = {}

    def watch(self, fd: int, mask: int, owner: Any) -> None:
        """Make sure ``fd`` reports ``mask`` for ``owner``'s open file."""
        registered = self._masks.get(fd, 0)
        ref = self._owners.get(fd)
        old_owner = ref() if ref is not None else None
        if old_owner is not None and old_owner is owner and registered & mask == mask:
            return
        # A different owner: the old registration may have died with its file.
        same_file = old_owner is not None and fileno_of(old_owner) == fd
        if registered and same_file:
            mask |= registered
            try:
                self._epoll.modify(fd, mask)
            except FileNotFoundError:
                self._epoll.register(fd, mask)
        else:
            try:
                self._epoll.register(fd, mask)
            except FileExistsError:
                self._epoll.modify(fd, mask)
        self._masks[fd] = mask
        self._owners[fd] = weak_owner(owner)

    def unwatch(self, fd: int, mask: int) -> None:
        """Stop reporting ``mask`` on ``fd``: no task waits for it."""
        remaining = self._masks.get(fd, 0) & ~mask
        try:
            if remaining:
                self._epoll.modify(fd, remaining)
                self._masks[fd] = remaining
            else:
                self._masks.pop(fd, None)
                self._owners.pop(fd, None)
                self._epoll.unregister(fd)
        except OSError:
            # The fd was closed (or reused) while a dup keeps its old file
            # registered: epoll can no longer name that registration and
            # would report it forever.  Start from a fresh epoll instance.
            self.rebuild()

    def forget(self, fd: int) -> None:
        """Drop ``fd``'s registration before its socket is closed."""
        if self._masks.pop(fd, None) is not None:
            self._owners.pop(fd, None)
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass

    def rebuild(self) -> None:
        """Re-register every live registration on a new epoll instance."""
        old = self._epoll
        self._epoll = select.epoll()
        old.close()
        for fd, mask in list(self._masks.items()):
            try:
                self._epoll.register(fd, mask)
            except OSError:
                del self._masks[fd]
                self._owners.pop(fd, None)

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        return self._epoll.poll(timeout)

    def close(self) -> None:
        self._epoll.close()


def fileno_of(sock: Any) -> int:
    try:
        return int(sock.fileno())
    except Exception:
        return -1


def weak_owner(owner: Any) -> weakref.ref[Any] | None:
    try:
        return weakref.ref(owner)
    except TypeError:
        return None
