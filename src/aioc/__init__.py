"""aioc: generator coroutines that yield events, on a fast event loop.

``import aioc`` gives the compiled loop when it is built and the pure-Python
reference loop otherwise (``aioc.IMPLEMENTATION`` says which); both behave the
same.  ``AIOC_NO_EXTENSIONS=1`` forces the pure loop.
"""

from ._loop import IMPLEMENTATION
from ._loop import implementation as _impl
from .events import (
    DEFAULT_READ_SIZE,
    Cancelled,
    ClosedResourceError,
    Event,
    InvalidStateError,
    ResourceBusy,
    Timeout,
    timeout_after,
)

EventLoop = _impl.EventLoop
Task = _impl.Task
run = _impl.run
ReadEvent = _impl.ReadEvent
WriteEvent = _impl.WriteEvent
SendAll = _impl.SendAll
sendall = _impl.sendall
AcceptEvent = _impl.AcceptEvent
ConnectEvent = _impl.ConnectEvent
Sleep = _impl.Sleep
Spawn = _impl.Spawn
Join = _impl.Join

from ._version import __version__ as __version__

__all__ = ["IMPLEMENTATION", *_impl.__all__]
