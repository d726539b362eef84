"""The two loops are twins: same names, same signatures, same contract.

The Python-visible surface of ``aioc._loop_py`` and ``aioc._loop_c`` must be
the same, name for name and parameter for parameter.  Below it, each C field
and C method that ``_loop_c.pxd`` declares has its pure twin spelled with a
leading underscore (``Task.finished`` is ``Task._finished``), except those
the .pxd marks as C only.  Any drift fails here.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from aioc import _env, _loop_py, lowlevel, streams

try:
    from aioc import _loop_c
except ImportError:
    if _env.require_extensions():
        raise
    pytest.skip("the compiled loop is not built", allow_module_level=True)

PXD = Path(_loop_py.__file__).with_name("_loop_c.pxd")

#: What compiled events have and pure ones do not: they are their own
#: iterators (aioc/_compiled/aioc.h), where a pure event's __await__ is a generator.
ITERATOR_METHODS = {"send", "throw", "close"}


def surface(cls: type) -> set[str]:
    """Public and protected names a class offers (dunders and ABC bookkeeping aside)."""
    return {name for name in dir(cls) if not name.startswith("__") and name != "_abc_impl"}


def pxd_block(title: str) -> list[str]:
    """The lines of the .pxd's ``cdef class <title>`` body."""
    lines = PXD.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"cdef class {title}\b", line)) + 1
    body = []
    for line in lines[start:]:
        if line and not line.startswith(" "):
            break
        body.append(line)
    return body


def c_members(title: str) -> tuple[set[str], set[str], set[str]]:
    """(fields, methods, C-only names) of a .pxd class.  A ``# C only`` comment
    marks the declarations after it, up to the next comment, as having no twin."""
    fields, methods, c_only = set(), set(), set()
    only_c = False
    for line in pxd_block(title):
        stripped = line.strip()
        if stripped.startswith("#"):
            only_c = stripped.startswith("# C only")
            continue
        stripped = stripped.split("#")[0].strip()
        match = re.match(r"(?:cdef|cpdef)\s+(?:[\w*]+\s+)*?\**(\w+)\s*(\(|$)", stripped)
        if not match:
            continue
        name = match.group(1)
        if only_c:
            c_only.add(name)
        else:
            (methods if match.group(2) == "(" else fields).add(name)
    return fields, methods, c_only


def parameters(function: Any) -> list[str]:
    return [
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]


def test_the_same_public_names():
    assert _loop_py.__all__ == _loop_c.__all__
    for name in _loop_py.__all__:
        assert hasattr(_loop_py, name) and hasattr(_loop_c, name), name


def test_the_compiled_backends_are_those_it_was_built_with():
    """A build with AIOC_NO_EPOLL=1 (as where <sys/epoll.h> does not exist) has select only."""
    expected = ("select",) if _env.flag("AIOC_NO_EPOLL") else ("epoll", "select")
    assert _loop_c.available_backends() == expected
    if "epoll" not in expected:
        with pytest.raises(ValueError, match="unknown or unavailable backend 'epoll'"):
            _loop_c.EventLoop(backend="epoll")
        assert _loop_c.EventLoop().backend == "select"


def test_both_name_their_backends():
    for module in (_loop_py, _loop_c):
        backends = module.available_backends()
        assert "select" in backends
        for name in backends:
            with module.EventLoop(backend=name) as loop:
                assert loop.backend == name
        with pytest.raises(ValueError, match="unknown or unavailable backend"):
            module.EventLoop(backend="kqueue")


@pytest.mark.parametrize("name", ["EventLoop", "Task"])
def test_loop_and_task_offer_the_same_python_surface(name):
    pure, compiled = getattr(_loop_py, name), getattr(_loop_c, name)
    _, methods, c_only = c_members(name)
    pure_names, compiled_names = surface(pure), surface(compiled)
    # Compiled fields are class-level descriptors; the pure twin's are set per instance.
    instance = _loop_py.EventLoop() if name == "EventLoop" else None
    if instance is not None:
        pure_names |= {field for field in vars(instance) if field in compiled_names}
        instance.close()
    assert compiled_names - pure_names == set()
    # What only the pure twin shows are the Python spellings of C-level methods.
    c_level = {member for member in methods if member not in compiled_names}
    pure_names -= set(getattr(pure, "__slots__", ()))  # fields: see test_task_fields_are_the_c_fields
    assert pure_names - compiled_names == {f"_{member}" for member in c_level}
    assert not {f"_{member}" for member in c_only} & pure_names


def test_task_fields_are_the_c_fields():
    fields, _, _ = c_members("Task")
    fields.discard("__weakref__")
    assert {f"_{field}" for field in fields} == set(_loop_py.Task.__slots__) - {"__weakref__"}


def test_loop_fields_are_the_c_fields():
    """Loop state that both twins hold in the same shape has the same name."""
    loop = _loop_py.EventLoop()
    try:
        pure_fields = {name.lstrip("_") for name in vars(loop)}
    finally:
        loop.close()
    fields, _, _ = c_members("EventLoop")
    # Held in other shapes by the pure loop: the fd table is two dicts, the
    # live-task list a dict, the read buffer is Python's own.
    other_shapes = {"fds", "io_waiters", "live_head", "live_tail", "live_count", "read_buffer"}
    assert fields - other_shapes <= pure_fields


@pytest.mark.parametrize("name", ["EventLoop", "Task"])
def test_shared_methods_take_the_same_parameters(name):
    pure, compiled = getattr(_loop_py, name), getattr(_loop_c, name)
    for member in sorted(surface(pure) & surface(compiled)):
        pure_member, compiled_member = getattr(pure, member), getattr(compiled, member)
        if callable(pure_member) and not isinstance(pure_member, type):
            assert parameters(pure_member) == parameters(compiled_member), member


def test_both_loops_implement_the_contract():
    assert set(lowlevel.CONTRACT) == {name for name in vars(lowlevel.Loop) if not name.startswith("_")}
    for name in lowlevel.CONTRACT:
        expected = parameters(getattr(lowlevel.Loop, name))
        assert parameters(getattr(_loop_py.EventLoop, name)) == expected, name
        assert parameters(getattr(_loop_c.EventLoop, name)) == expected, name


EVENTS = ["ReadEvent", "WriteEvent", "SendAll", "AcceptEvent", "ConnectEvent", "Sleep", "Spawn", "Join"]


@pytest.mark.parametrize("name", EVENTS)
def test_events_offer_the_same_fields_and_constructors(name, socketpair):
    pure, compiled = getattr(_loop_py, name), getattr(_loop_c, name)
    assert surface(compiled) - surface(pure) == ITERATOR_METHODS
    assert surface(pure) - surface(compiled) == set()
    # A compiled constructor hides its signature: call both by keyword, with
    # the pure one's parameter names, and compare what they hold.
    sock, _ = socketpair()
    samples = {"sock": sock, "nbytes": 10, "data": b"abc", "address": ("127.0.0.1", 9),
               "seconds": 0.25, "coro": None, "task": None}
    kwargs = {param: samples[param] for param in parameters(pure.__init__)[1:]}
    made = pure(**kwargs), compiled(**kwargs)
    fields = [field.lstrip("_") for field in pure.__slots__]
    assert [getattr(made[0], field) for field in fields] == [getattr(made[1], field) for field in fields]


@pytest.mark.parametrize("name", EVENTS)
def test_compiled_event_fields_are_the_pure_slots(name):
    declared, _, _ = c_members(name)
    declared.discard("suspended")
    assert declared == set(getattr(_loop_py, name).__slots__)


# -- streams: aioc.streams is the specification, _compiled/streams.pxi its twin --


def test_stream_twins_offer_the_same_surface():
    pure, compiled = streams.Stream, _loop_c.Stream
    assert surface(pure) == surface(compiled)
    assert set(pure.__slots__) <= surface(compiled)  # the fields the shared pure methods use


@pytest.mark.parametrize("cls", ["Stream", "StreamBuffer"])
def test_stream_twins_take_the_same_parameters(cls):
    pure, compiled = getattr(streams, cls), getattr(_loop_c, cls)
    methods = {name for name in surface(pure) if inspect.isfunction(inspect.getattr_static(pure, name))}
    assert methods <= surface(compiled)
    for name in methods | {"__len__"} & set(dir(pure)):
        assert parameters(getattr(pure, name)) == parameters(getattr(compiled, name)), name


def test_stream_buffer_twins_offer_the_same_methods():
    def methods(cls):
        return {name for name in surface(cls) | {"__len__"} if callable(getattr(cls, name, None))}

    assert methods(streams.StreamBuffer) == methods(_loop_c.StreamBuffer)
