"""Who is measured: the contenders, and whether each can run here."""

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
    family: str  # "aioc", "asyncio", "uvloop" or "c": the colour of its bars
    #: ``python -m aioc.bench.servers`` arguments, ``["<c>"]`` for the C server, None if no server.
    server: list[str] | None = None
    #: ``(loop, backend)`` for ``python -m aioc.bench.scheduler``, None if it has no scheduler run.
    scheduler: tuple[str, str] | None = None
    #: Environment changes for its processes; None removes a variable.
    env: dict[str, str | None] = field(default_factory=dict)
    #: The implementation string its server must announce (catches a silent fallback).
    expect: str | None = None
    #: Highest fd its poller can watch, if limited.
    fd_limit: int | None = None
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


def all_contenders() -> list[Contender]:
    """Every contender, in table order, before availability checks."""
    return [
        Contender("aioc-compiled", "aioc compiled (epoll)", "aioc", ["aioc", "--backend", "epoll"],
                  ("aioc", "epoll"), dict(_COMPILED), expect="aioc-compiled-epoll"),
        Contender("aioc-io_uring", "aioc compiled (io_uring)", "aioc", ["aioc", "--backend", "io_uring"],
                  None, dict(_COMPILED), expect="aioc-compiled-io_uring"),
        Contender("aioc-pure-epoll", "aioc pure Python (epoll)", "aioc", ["aioc", "--backend", "epoll"],
                  ("aioc", "epoll"), dict(_PURE), expect="aioc-pure-epoll"),
        Contender("aioc-pure-select", "aioc pure Python (select)", "aioc", ["aioc", "--backend", "select"],
                  None, dict(_PURE), expect="aioc-pure-select", fd_limit=SELECT_FD_LIMIT),
        Contender("asyncio-protocol", "asyncio Protocol", "asyncio", ["asyncio-protocol"], expect="asyncio"),
        Contender("asyncio-streams", "asyncio streams", "asyncio", ["asyncio-streams"], expect="asyncio"),
        Contender("uvloop-protocol", "uvloop Protocol", "uvloop", ["asyncio-protocol", "--uvloop"]),
        Contender("uvloop-streams", "uvloop streams", "uvloop", ["asyncio-streams", "--uvloop"]),
        Contender("c-epoll", "C epoll (reference)", "c", ["<c>"]),
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


def uvloop_status() -> tuple[str | None, str | None]:
    """``(version, None)`` or ``(None, reason)``."""
    try:
        import uvloop
    except ImportError as exc:
        return None, f"uvloop is not installed ({exc}); pip install 'aioc[bench]'"
    return uvloop.__version__, None


def check_availability(contenders: list[Contender], c_server: str | None, c_reason: str | None) -> None:
    """Mark each contender available or not, with the reason."""
    compiled = compiled_loop_status()
    uv_version, uv_reason = uvloop_status()
    for c in contenders:
        if c.name in ("aioc-compiled", "aioc-io_uring") and compiled:
            c.available, c.reason = False, compiled
        elif c.family == "uvloop":
            if uv_reason:
                c.available, c.reason = False, uv_reason
            elif c.server:
                c.expect = f"uvloop-{uv_version}"
        elif c.family == "c" and c_server is None:
            c.available, c.reason = False, c_reason or "the C server could not be built"


def server_argv(c: Contender, c_server: str | None, lifetime: int) -> list[str]:
    if c.server == ["<c>"]:
        assert c_server is not None
        return [c_server, str(lifetime)]
    assert c.server is not None
    return [sys.executable, "-m", "aioc.bench.servers", *c.server, "--lifetime", str(lifetime)]
