"""Shared fixtures.

Every behavioural test takes the loop implementation from the ``aio`` fixture
(the pure reference loop ``aioc._loop_py`` and the compiled ``aioc._loop_c``)
and the poller from ``backend`` (epoll and select), so the whole suite runs
against every combination: ids read ``pure-epoll``, ``compiled-select``, ...
"""

from __future__ import annotations

import importlib
import resource
import socket
import ssl
import threading
from typing import Any, Callable, Iterator

import pytest

from aioc import _env

IMPLEMENTATIONS = {"pure": "aioc._loop_py", "compiled": "aioc._loop_c"}
BACKENDS = ["epoll", "select"]

#: Seconds after which the watchdog stops a loop that should have finished.
WATCHDOG_SECONDS = 10.0


def pytest_configure(config: pytest.Config) -> None:
    # An exception in a __del__ (Task's never-retrieved report, say) is a bug.
    config.addinivalue_line("filterwarnings", "error::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(params=list(IMPLEMENTATIONS), ids=list(IMPLEMENTATIONS))
def aio(request: pytest.FixtureRequest) -> Any:
    """The loop module under test: ``aioc._loop_py`` or ``aioc._loop_c``."""
    name = IMPLEMENTATIONS[request.param]
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if _env.require_extensions():
            pytest.fail(f"AIOC_REQUIRE_EXTENSIONS is set but {name} cannot be imported: {exc}")
        pytest.skip("the compiled loop is not built")


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def loop(aio: Any, backend: str) -> Iterator[Any]:
    ev_loop = aio.EventLoop(backend=backend)
    try:
        yield ev_loop
    finally:
        ev_loop.close()


class Runner:
    """Runs a loop under a watchdog: a hung loop fails the test instead of the run."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop

    def _arm(self, limit: float) -> tuple[threading.Timer, threading.Event]:
        fired = threading.Event()

        def fire() -> None:
            fired.set()
            self.loop.stop()  # thread-safe by contract

        timer = threading.Timer(limit, fire)
        timer.daemon = True
        timer.start()
        return timer, fired

    def complete(self, coro: Any, limit: float = WATCHDOG_SECONDS) -> Any:
        """``loop.run_until_complete(coro)``, failing the test after ``limit`` seconds."""
        timer, fired = self._arm(limit)
        try:
            return self.loop.run_until_complete(coro)
        except RuntimeError:
            if fired.is_set():
                pytest.fail(f"the loop did not finish within {limit} s (watchdog stopped it)")
            raise
        finally:
            timer.cancel()

    def forever(self, limit: float = WATCHDOG_SECONDS) -> None:
        """``loop.run_forever()``, failing the test if the watchdog had to stop it."""
        timer, fired = self._arm(limit)
        try:
            self.loop.run_forever()
        finally:
            timer.cancel()
        if fired.is_set():
            pytest.fail(f"run_forever did not return within {limit} s (watchdog stopped it)")


@pytest.fixture
def runner(loop: Any) -> Runner:
    return Runner(loop)


@pytest.fixture
def socketpair() -> Iterator[Callable[..., tuple[socket.socket, socket.socket]]]:
    """Factory of connected AF_UNIX stream pairs (non-blocking), closed after the test."""
    made: list[socket.socket] = []

    def make(blocking: bool = False) -> tuple[socket.socket, socket.socket]:
        a, b = socket.socketpair()
        made.extend((a, b))
        a.setblocking(blocking)
        b.setblocking(blocking)
        return a, b

    yield make
    for sock in made:
        sock.close()


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """A list whose sockets are closed after the test: register what a test creates."""
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


@pytest.fixture
def listener(sockets: list[socket.socket]) -> Callable[..., socket.socket]:
    """Factory of TCP listening sockets on 127.0.0.1 (an ephemeral port)."""

    def make(backlog: int = 128, cls: type = socket.socket) -> socket.socket:
        sock = cls(socket.AF_INET, socket.SOCK_STREAM)
        sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(backlog)
        return sock

    return make


@pytest.fixture
def tcp_pair(listener: Callable[..., socket.socket], sockets: list[socket.socket]) -> Callable[[], tuple[socket.socket, socket.socket]]:
    """Factory of connected loopback TCP pairs ``(client, server)``, both non-blocking."""

    def make() -> tuple[socket.socket, socket.socket]:
        lsock = listener()
        client = socket.create_connection(lsock.getsockname(), timeout=5)
        sockets.append(client)
        server, _ = lsock.accept()
        sockets.append(server)
        client.setblocking(False)
        server.setblocking(False)
        return client, server

    return make


class FdLimit:
    """Changes the soft RLIMIT_NOFILE for one test and restores it afterwards."""

    def __init__(self) -> None:
        self.original = resource.getrlimit(resource.RLIMIT_NOFILE)

    @property
    def hard(self) -> int:
        return self.original[1]

    def set_soft(self, soft: int) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, self.original[1]))

    def at_least(self, needed: int) -> None:
        """Raise the soft limit to ``needed`` (within the hard limit) if it is lower."""
        soft, hard = self.original
        if soft != resource.RLIM_INFINITY and soft < needed:
            if hard != resource.RLIM_INFINITY and hard < needed:
                pytest.fail(f"this test needs {needed} file descriptors; the hard RLIMIT_NOFILE is {hard}")
            self.set_soft(needed)

    def restore(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, self.original)


@pytest.fixture
def fd_limit() -> Iterator[FdLimit]:
    limit = FdLimit()
    try:
        yield limit
    finally:
        limit.restore()


# -- TLS: certificates made at test time by trustme ---------------------------------


@pytest.fixture(scope="session")
def ca() -> Any:
    """A certificate authority of the tests' own."""
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: Any) -> Any:
    return ca.issue_cert("localhost", "127.0.0.1", "::1")


@pytest.fixture
def server_context(server_cert: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    return context


@pytest.fixture
def client_context(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


@pytest.fixture(scope="session")
def pem_files(ca: Any, server_cert: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The CA and the server's chain and key as files, for openssl and curl."""
    folder = tmp_path_factory.mktemp("pem")
    paths = {"ca": str(folder / "ca.pem"), "cert": str(folder / "cert.pem"), "key": str(folder / "key.pem")}
    ca.cert_pem.write_to_path(paths["ca"])
    with open(paths["cert"], "wb") as f:
        for blob in server_cert.cert_chain_pems:
            f.write(blob.bytes())
    server_cert.private_key_pem.write_to_path(paths["key"])
    return paths
