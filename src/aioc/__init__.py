"""aioc: generator coroutines that yield events, on a fast event loop.

``import aioc`` gives the compiled loop when it is built and the pure-Python
reference loop otherwise (``aioc.IMPLEMENTATION`` says which); both behave the
same.  ``AIOC_NO_EXTENSIONS=1`` forces the pure loop.
"""

from typing import TYPE_CHECKING

from ._loop import IMPLEMENTATION
from ._loop import implementation as _impl

if TYPE_CHECKING:
    # Type checkers read the names from the pure twin; the compiled one has the same.
    from ._loop_py import EventLoop as EventLoop, Task as Task, run as run
    from .events import *  # noqa: F403
else:
    # The public names are listed once, in events.__all__ and _loop_py.__all__.
    globals().update({name: getattr(_impl, name) for name in _impl.__all__})

# The runtime above the loop: pure Python on the contract, shared by both loops.
from . import clients, queues, scopes, servers, signals, streams, sync, taskgroups, threads, tls
from .clients import *  # noqa: F403
from .queues import *  # noqa: F403
from .scopes import *  # noqa: F403
from .servers import *  # noqa: F403
from .signals import *  # noqa: F403
from .streams import *  # noqa: F403

if not TYPE_CHECKING:
    # The compiled twin of Stream when the compiled loop is in use.
    Stream = getattr(_impl, "Stream", Stream)  # noqa: F405
from .sync import *  # noqa: F403
from .taskgroups import *  # noqa: F403
from .threads import *  # noqa: F403
from ._version import __version__ as __version__

__all__ = [
    "IMPLEMENTATION",
    *_impl.__all__,
    *scopes.__all__,
    *taskgroups.__all__,
    *sync.__all__,
    *queues.__all__,
    *threads.__all__,
    *signals.__all__,
    *streams.__all__,
    *servers.__all__,
    *clients.__all__,
]
