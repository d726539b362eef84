"""The package surface: both implementations expose the same public names."""

from __future__ import annotations

import pathlib

import pytest

import aioc
import aioc.events
from aioc import _env

PUBLIC_NAMES = [
    "EventLoop", "Task", "run", "ReadEvent", "WriteEvent", "SendAll", "sendall",
    "AcceptEvent", "ConnectEvent", "Sleep", "Spawn", "Join", "Timeout", "timeout_after",
    "Event", "Cancelled", "ResourceBusy", "ClosedResourceError", "InvalidStateError",
]


def test_implementation_exposes_every_public_name(aio):
    missing = [name for name in PUBLIC_NAMES if not hasattr(aio, name)]
    assert missing == []


def test_exceptions_are_the_shared_ones(aio):
    # One set of exception classes, whichever loop raised them.
    assert aio.Cancelled is aioc.events.Cancelled
    assert aio.ResourceBusy is aioc.events.ResourceBusy
    assert aio.ClosedResourceError is aioc.events.ClosedResourceError
    assert aio.InvalidStateError is aioc.events.InvalidStateError
    assert aio.Event is aioc.events.Event
    assert issubclass(aio.ClosedResourceError, OSError)


def test_top_level_package_uses_the_chosen_implementation():
    from aioc._loop import implementation

    assert aioc.IMPLEMENTATION in ("pure", "compiled")
    assert aioc.EventLoop is implementation.EventLoop
    assert aioc.ReadEvent is implementation.ReadEvent
    for name in aioc.__all__:
        assert hasattr(aioc, name), name


@pytest.mark.parametrize(
    "value, expected",
    [("", False), ("0", False), ("false", False), ("No", False), (" off ", False),
     ("1", True), ("yes", True), ("TRUE", True), ("anything", True)],
)
def test_env_flags(monkeypatch, value, expected):
    monkeypatch.setenv("AIOC_NO_EXTENSIONS", value)
    monkeypatch.setenv("AIOC_REQUIRE_EXTENSIONS", value)
    assert _env.no_extensions() is expected
    assert _env.require_extensions() is expected


def test_installed_version_is_the_package_version():
    # pyproject.toml reads the version from aioc/_version.py: the metadata
    # pip installed and the module agree.
    from importlib.metadata import version

    assert version("aioc") == aioc.__version__


def test_type_information_is_installed():
    # PEP 561: the marker and the compiled loop's stubs lie next to the modules.
    package = pathlib.Path(aioc.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_loop_c.pyi").is_file()
