"""Which loop ``import aioc`` picks, checked in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aioc import _env

PROBE = "import aioc; print(aioc.IMPLEMENTATION, type(aioc.EventLoop()).__module__)"


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AIOC_")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60)


def _compiled_built() -> bool:
    return _run("import aioc._loop_c").returncode == 0


def test_default_import_picks_the_compiled_loop() -> None:
    if not _compiled_built():
        if _env.require_extensions():
            pytest.fail("AIOC_REQUIRE_EXTENSIONS is set but aioc._loop_c does not import")
        pytest.skip("the compiled loop is not built")
    result = _run(PROBE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["compiled", "aioc._loop_c"]


def test_no_extensions_forces_the_pure_loop() -> None:
    result = _run(PROBE, AIOC_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pure", "aioc._loop_py"]


@pytest.mark.parametrize("value", ["0", "", "false", "no", "off"])
def test_falsy_values_do_not_disable_extensions(value: str) -> None:
    code = "from aioc import _env; print(_env.no_extensions())"
    assert _run(code, AIOC_NO_EXTENSIONS=value).stdout.strip() == "False"


def test_require_extensions_fails_loudly_when_the_compiled_loop_is_missing() -> None:
    # A None entry in sys.modules makes the import fail as a missing module would.
    code = "import sys; sys.modules['aioc._loop_c'] = None; import aioc"
    result = _run(code, AIOC_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    assert "AIOC_REQUIRE_EXTENSIONS" in result.stderr
    assert "ImportError" in result.stderr


def test_missing_compiled_loop_falls_back_to_pure_without_the_requirement() -> None:
    code = "import sys; sys.modules['aioc._loop_c'] = None; import aioc; print(aioc.IMPLEMENTATION)"
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure"


def test_public_names_match_between_implementations() -> None:
    code = (
        "import aioc._loop_py as p, aioc._loop_c as c; "
        "missing = sorted(set(p.__all__) - set(dir(c))); print(missing)"
    )
    result = _run(code)
    if result.returncode != 0 and not _env.require_extensions():
        pytest.skip("the compiled loop is not built")
    assert result.stdout.strip() == "[]", result.stderr


# A system without epoll (macOS, the BSDs), imitated by removing epoll's names
# from the select module before aioc is imported.
WITHOUT_EPOLL = """
import select
for name in [n for n in dir(select) if n.startswith("EPOLL") or n == "epoll"]:
    delattr(select, name)
"""

SMALL_SERVER = """
import socket, threading
import aioc

def handle(conn):
    data = yield aioc.ReadEvent(conn)
    yield from aioc.sendall(conn, data.upper())
    conn.close()

def server(listener):
    conn, _ = yield aioc.AcceptEvent(listener)
    yield aioc.Spawn(handle(conn))

def client(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"hello")
        replies.append(sock.recv(100))

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
replies = []
thread = threading.Thread(target=client, args=(listener.getsockname()[1],))
thread.start()
with aioc.EventLoop() as loop:
    loop.run_until_complete(server(listener))
    loop.run_forever()
    backend = loop.backend
thread.join()
listener.close()
try:
    aioc.EventLoop(backend="epoll")
except ValueError as exc:
    refusal = str(exc)
print(aioc.IMPLEMENTATION, backend, replies[0].decode(), refusal)
"""


def test_the_pure_loop_imports_and_serves_without_epoll() -> None:
    result = _run(WITHOUT_EPOLL + SMALL_SERVER, AIOC_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    implementation, backend, reply, refusal = result.stdout.split(" ", 3)
    assert (implementation, backend, reply) == ("pure", "select", "HELLO")
    assert "unknown or unavailable backend 'epoll'" in refusal
