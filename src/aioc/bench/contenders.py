"""Who is measured: the contenders, and whether each can run here.

A contender serves the network workloads of its *suites*: ``plain`` (the
request/reply workloads every server speaks), ``streams`` (the same
keep-alive load against each loop's streams API, beside aioc's raw-event
server) and ``tls`` (keep-alive over TLS).  curio and trio join only when
they are importable, like uvloop; the C servers only when they compile, and
the io_uring one only when the kernel lets it set up a ring.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field

from .._env import no_extensions

#: The select backend watches only descriptors below this.
SELECT_FD_LIMIT = 1024


@dataclass
class Contender:
    """One server (network workloads) and/or one loop (scheduler workloads)."""

    name: str
    label: str
    family: str  # "aioc", "asyncio", "uvloop", "curio", "trio" or "c": the colour of its bars
    #: ``python -m aioc.bench.servers`` arguments, ``["<c>"]`` for a C server, None if no server.
    server: list[str] | None = None
    #: ``(loop, backend)`` for ``python -m aioc.bench.scheduler``, None if it has no scheduler run.
    scheduler: tuple[str, str] | None = None
    #: Environment changes for its processes; None removes a variable.
    env: dict[str, str | None] = field(default_factory=dict)
    #: The implementation string its server must announce (catches a silent fallback).
    expect: str | None = None
    #: Highest fd its poller can watch, if limited.
    fd_limit: int | None = None
    #: The network suites its server serves (see the module's documentation).
    suites: tuple[str, ...] = ("plain",)
    #: The C source of a C server, shipped in this package.
    c_source: str | None = None
    #: The names it needs in ``aioc`` beyond the event loop (its streams or TLS API).
    needs: tuple[str, ...] = ()
    available: bool = True
    reason: str | None = None

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in self.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env


_PURE = {"AIOC_NO_EXTENSIONS": "1", "AIOC_REQUIRE_EXTENSIONS": None}
_COMPILED = {"AIOC_NO_EXTENSIONS": None, "AIOC_REQUIRE_EXTENSIONS": "1"}
#: curio's scheduler asserts that a task it makes ready is not already in its
#: ready deque: a linear scan per wake-up, which makes a burst of spawns
#: quadratic.  Its processes run with asserts off (``python -O``), as a
#: production deployment that cares would.
_CURIO = {"PYTHONOPTIMIZE": "1"}

#: Python packages some contenders need, and the version string their servers announce.
OPTIONAL_PACKAGES = ("uvloop", "curio", "trio")


def all_contenders() -> list[Contender]:
    """Every contender, in table order, before availability checks."""
    return [
        Contender("aioc-compiled", "aioc compiled (epoll)", "aioc", ["aioc", "--backend", "epoll"],
                  ("aioc", "epoll"), dict(_COMPILED), expect="aioc-compiled-epoll", suites=("plain", "streams")),
        Contender("aioc-io_uring", "aioc compiled (io_uring)", "aioc", ["aioc", "--backend", "io_uring"],
                  None, dict(_COMPILED), expect="aioc-compiled-io_uring"),
        Contender("aioc-pure-epoll", "aioc pure Python (epoll)", "aioc", ["aioc", "--backend", "epoll"],
                  ("aioc", "epoll"), dict(_PURE), expect="aioc-pure-epoll"),
        Contender("aioc-pure-select", "aioc pure Python (select)", "aioc", ["aioc", "--backend", "select"],
                  None, dict(_PURE), expect="aioc-pure-select", fd_limit=SELECT_FD_LIMIT),
        Contender("aioc-streams", "aioc compiled, serve_tcp streams", "aioc", ["aioc-streams"], None, dict(_COMPILED),
                  expect="aioc-compiled-epoll", suites=("streams",), needs=("serve_tcp", "Stream")),
        Contender("aioc-tls", "aioc compiled, serve_tcp TLS streams", "aioc", ["aioc-streams", "--tls"], None,
                  dict(_COMPILED), expect="aioc-compiled-epoll", suites=("tls",), needs=("serve_tcp", "Stream", "tls")),
        Contender("asyncio-protocol", "asyncio Protocol", "asyncio", ["asyncio-protocol"], expect="asyncio"),
        Contender("asyncio-streams", "asyncio streams", "asyncio", ["asyncio-streams"], expect="asyncio",
                  suites=("plain", "streams")),
        Contender("asyncio-tls", "asyncio streams, TLS", "asyncio", ["asyncio-streams", "--tls"], expect="asyncio",
                  suites=("tls",)),
        Contender("uvloop-protocol", "uvloop Protocol", "uvloop", ["asyncio-protocol", "--uvloop"]),
        Contender("uvloop-streams", "uvloop streams", "uvloop", ["asyncio-streams", "--uvloop"],
                  suites=("plain", "streams")),
        Contender("uvloop-tls", "uvloop streams, TLS", "uvloop", ["asyncio-streams", "--uvloop", "--tls"],
                  suites=("tls",)),
        Contender("curio", "curio (sockets, a task per connection)", "curio", ["curio"], ("curio", ""),
                  dict(_CURIO)),
        Contender("trio", "trio (trio.socket, a task per connection)", "trio", ["trio"], ("trio", "")),
        Contender("c-epoll", "C epoll (reference)", "c", ["<c>"], c_source="c_epoll_server.c"),
        Contender("c-io_uring", "C io_uring (reference)", "c", ["<c>"], c_source="c_io_uring_server.c"),
        Contender("asyncio", "asyncio", "asyncio", scheduler=("asyncio", "")),
        Contender("uvloop", "uvloop", "uvloop", scheduler=("uvloop", "")),
    ]


NAMES = tuple(c.name for c in all_contenders())


def matches(pattern: str, name: str) -> bool:
    """``aioc`` selects every ``aioc-*``; a full name selects itself."""
    return name == pattern or name.startswith(pattern + "-")


def select(patterns: list[str] | None) -> list[Contender]:
    """The contenders whose names match one of ``patterns`` (all when None).

    Raises ValueError naming a pattern that matches nothing.
    """
    contenders = all_contenders()
    if not patterns:
        return contenders
    for pattern in patterns:
        if not any(matches(pattern, c.name) for c in contenders):
            raise ValueError(f"unknown contender {pattern!r}; choose from {', '.join(NAMES)}, or a prefix such as aioc")
    return [c for c in contenders if any(matches(p, c.name) for p in patterns)]


def compiled_loop_status() -> str | None:
    """None if ``aioc._loop_c`` imports here, else the reason it cannot be used."""
    if no_extensions():
        return "AIOC_NO_EXTENSIONS is set in this environment"
    try:
        importlib.import_module("aioc._loop_c")
    except ImportError as exc:
        return f"aioc._loop_c is not built ({exc})"
    return None


def io_uring_status() -> str | None:
    """None if the compiled loop can run on io_uring here, else why not."""
    from aioc import _loop_c

    if "io_uring" not in _loop_c.available_backends():
        return "the kernel refuses io_uring here (or aioc was built without it)"
    return None


def package_status(name: str) -> tuple[str | None, str | None]:
    """``(version, None)`` if the package imports here, else ``(None, reason)``."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        return None, f"{name} is not installed ({exc}); pip install 'aioc[bench]'"
    return getattr(module, "__version__", "?"), None


def aioc_missing(names: tuple[str, ...]) -> str | None:
    """None if ``aioc`` has every one of ``names``, else which it lacks."""
    import aioc

    missing = [name for name in names if not hasattr(aioc, name)]
    return f"this aioc has no {', '.join('aioc.' + name for name in missing)}" if missing else None


def check_availability(contenders: list[Contender], c_servers: dict[str, tuple[str | None, str | None]],
                       tls_reason: str | None = None) -> None:
    """Mark each contender available or not, with the reason.

    ``c_servers`` maps a C contender's name to ``(executable, None)`` or
    ``(None, reason)``; ``tls_reason`` says why no certificate could be made.
    """
    compiled = compiled_loop_status()
    packages = {name: package_status(name) for name in OPTIONAL_PACKAGES}
    for c in contenders:
        version, reason = packages.get(c.family, (None, None))
        if c.env.get("AIOC_REQUIRE_EXTENSIONS") and compiled:
            c.available, c.reason = False, compiled
        elif c.name == "aioc-io_uring" and (uring := io_uring_status()):
            c.available, c.reason = False, uring
        elif c.needs and (missing := aioc_missing(c.needs)):
            c.available, c.reason = False, missing
        elif c.family in packages:
            if reason:
                c.available, c.reason = False, reason
            elif c.server:
                c.expect = f"{c.family}-{version}"
        elif c.family == "c":
            exe, reason = c_servers.get(c.name, (None, "not built"))
            if exe is None:
                c.available, c.reason = False, reason or "the C server could not be built"
        if c.available and "tls" in c.suites and tls_reason:
            c.available, c.reason = False, tls_reason


def server_argv(c: Contender, c_servers: dict[str, tuple[str | None, str | None]], lifetime: int,
                tls_files: tuple[str, str] | None = None) -> list[str]:
    """The command line of ``c``'s server; ``tls_files`` is ``(certificate, key)`` for a TLS server."""
    if c.server == ["<c>"]:
        exe = c_servers[c.name][0]
        assert exe is not None
        return [exe, str(lifetime)]
    assert c.server is not None
    argv = [sys.executable, "-m", "aioc.bench.servers", *c.server, "--lifetime", str(lifetime)]
    if "--tls" in c.server:
        assert tls_files is not None
        argv[argv.index("--tls") + 1:argv.index("--tls") + 1] = list(tls_files)
    return argv
