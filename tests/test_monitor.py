"""The task monitor: the table it serves on its Unix socket, and ``python -m aioc.monitor``."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from typing import Any, Callable, Iterator

import pytest

from aioc import monitor

#: Seconds any wait of these tests may take before the test fails.
LIMIT = 10.0


@pytest.fixture
def sock_dir() -> Iterator[str]:
    # A short directory: a Unix socket's path must fit in 108 bytes.
    path = tempfile.mkdtemp(prefix="aioc-mon-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def park_event(aio: Any) -> Any:
    class Park(aio.Event):  # a wait the loop does not own
        def _yield(self, loop: Any, task: Any) -> None:
            loop.park(task)

        def _resume(self, loop: Any, task: Any) -> None:
            raise NotImplementedError

    return Park


def line_of(function: Callable[..., Any], offset: int = 1) -> int:
    """The line ``offset`` lines into ``function``'s body (1: the first line after ``def``)."""
    return function.__code__.co_firstlineno + offset


def in_thread(target: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``target`` in a thread; its exception, if any, lands in the returned list."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the test in the main thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def wait_for_table(path: str, needles: list[str], request: str = "tasks") -> str:
    """Query the monitor until its answer holds every needle (the tasks have reached their waits)."""
    deadline = time.monotonic() + LIMIT
    while True:
        answer = monitor.query(path, request, timeout=LIMIT)
        if all(needle in answer for needle in needles):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"the table never showed {needles}:\n{answer}")
        time.sleep(0.01)


def test_the_monitor_serves_the_task_table_while_the_loop_runs(aio, loop, runner, socketpair, sock_dir):
    a, b = socketpair()
    Park = park_event(aio)
    hog_may_go = threading.Event()

    def reader():
        yield aio.ReadEvent(a)

    def sleeper():
        yield aio.Sleep(30)

    def parked():
        yield Park()

    def joiner(task):
        yield aio.Join(task)

    def hog():
        yield aio.Sleep(0.05)
        hog_may_go.wait(LIMIT)  # holds the loop: the monitor must still answer

    r = loop.call_soon(reader())
    s = loop.call_soon(sleeper())
    s.name = "the sleeper"
    p = loop.call_soon(parked())
    j = loop.call_soon(joiner(s))
    h = loop.call_soon(hog())
    h.name = "hog"
    path = os.path.join(sock_dir, "m.sock")
    started = monitor.start_monitor(loop, path)
    assert started.path == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    answers = {}

    def client() -> None:
        try:
            answers["tasks"] = wait_for_table(path, ["waiting: parked", "hog  ", " running "])
            answers["stack"] = monitor.query(path, "stack", timeout=LIMIT)
            answers["bad"] = monitor.query(path, "nonsense", timeout=LIMIT)
        finally:
            hog_may_go.set()
            loop.stop()  # thread-safe

    thread, errors = in_thread(client)
    runner.forever()
    thread.join(LIMIT)
    assert not errors, errors[0]

    table = answers["tasks"].splitlines()
    assert table[0].startswith(f"aioc loop, pid {os.getpid()}, ")
    assert f"({loop.backend}), running, 5 tasks" in table[0]
    assert table[1].split() == ["ID", "NAME", "STATE", "WHERE"]
    rows = {row.split()[0]: row for row in table[2:]}
    assert len(rows) == 5
    ids = [int(key) for key in rows]
    assert ids == sorted(ids)  # creation order
    here = __file__
    by_name = {task: next(row for row in table[2:] if f"  {task.name}  " in row) for task in (r, s, p, j, h)}
    assert f"waiting: ReadEvent(fd={a.fileno()})" in by_name[r]
    assert f"{here}:{line_of(reader)} in reader" in by_name[r]
    assert "waiting: Sleep(30)" in by_name[s]
    assert f"{here}:{line_of(sleeper)} in sleeper" in by_name[s]
    assert "waiting: parked" in by_name[p]
    assert f"{here}:{line_of(parked)} in parked" in by_name[p]
    sleeper_id = by_name[s].split()[0]
    assert f"waiting: join #{sleeper_id} the sleeper" in by_name[j]
    assert " running " in by_name[h]
    assert f"{here}:{line_of(hog, 2)} in hog" in by_name[h]

    stack = answers["stack"]
    assert stack.startswith(answers["tasks"].split("\n", 1)[0])
    assert f'task #{sleeper_id} the sleeper (waiting: Sleep(30))\n  File "{here}", line {line_of(sleeper)}, in sleeper\n    yield aio.Sleep(30)' in stack
    assert "hog_may_go.wait(LIMIT)" in stack
    assert answers["bad"].startswith("unknown request 'nonsense'")

    loop.close()
    assert not os.path.exists(path), "the socket file outlives its loop"
    assert not started._thread.is_alive()


def test_format_tasks_shows_sub_coroutine_frames_and_who_runs(aio, loop, runner):
    def inner():
        yield aio.Sleep(30)

    def outer():
        yield from inner()

    def show():
        yield aio.Sleep(0)
        return monitor.format_tasks(loop, stack=True)

    o = loop.call_soon(outer())
    o.name = "outer"
    asker = loop.call_soon(show())
    asker.name = "asker"
    text = runner.complete(asker)
    rows = {line.split()[1]: line.split() for line in text.splitlines()[2:4]}
    assert rows["outer"][2:5] == ["waiting:", "Sleep(30)", f"{__file__}:{line_of(inner)}"]
    # The task that asks is being stepped: it is the running one.
    assert rows["asker"][2] == "running"
    assert f"{__file__}:{line_of(show, 2)}" in rows["asker"]
    assert (
        f'  File "{__file__}", line {line_of(outer)}, in outer\n    yield from inner()\n'
        f'  File "{__file__}", line {line_of(inner)}, in inner\n    yield aio.Sleep(30)\n'
    ) in text
    fresh = loop.call_soon(outer())
    fresh.name = "fresh"
    rows = {line.split()[1]: line.split() for line in monitor.format_tasks(loop).splitlines()[2:]}
    assert rows["fresh"][2] == "ready"  # neither stepped nor waiting
    o.cancel()
    fresh.cancel()
    runner.forever()


def test_format_tasks_of_a_loop_that_does_not_run(aio, loop):
    def work():
        yield aio.Sleep(0)

    task = loop.call_soon(work())
    task.name = "odd\nname"
    text = monitor.format_tasks(loop)
    assert "not running, 1 task\n" in text.splitlines()[0] + "\n"
    assert len(text.splitlines()) == 3  # a name with a newline stays on its line
    assert "odd\\nname" in text and " ready " in text


def test_the_default_socket_is_per_process_and_goes_with_the_loop(aio):
    path = monitor.default_path()
    assert path == f"/tmp/aioc-monitor-{os.getpid()}.sock"
    loop = aio.EventLoop()
    try:
        started = monitor.start_monitor(loop)
        assert started.path == path and os.path.exists(path)
        with pytest.raises(RuntimeError, match="already listens"):
            monitor.start_monitor(loop)
        assert "0 tasks" in monitor.query(path, timeout=LIMIT)
    finally:
        loop.close()
    assert not os.path.exists(path)


def test_stop_monitor_stops_and_removes_the_socket(aio, loop, sock_dir):
    path = os.path.join(sock_dir, "m.sock")
    started = monitor.start_monitor(loop, path)
    assert monitor.stop_monitor(loop)
    assert not os.path.exists(path)
    assert not started._thread.is_alive()
    assert not monitor.stop_monitor(loop)
    started.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError if os.path.exists(path) else FileNotFoundError):
        monitor.query(path, timeout=LIMIT)


def test_a_stale_socket_is_replaced_and_other_files_are_not(aio, loop, sock_dir):
    path = os.path.join(sock_dir, "m.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens: what a killed process leaves
    monitor.start_monitor(loop, path)
    assert "0 tasks" in monitor.query(path, timeout=LIMIT)
    monitor.stop_monitor(loop)

    with open(path, "w") as file:
        file.write("not a socket")
    with pytest.raises(FileExistsError):
        monitor.start_monitor(loop, path)
    with open(path) as file:
        assert file.read() == "not a socket"


def test_a_program_that_exits_without_closing_its_loop_removes_its_socket(aio, sock_dir):
    path = os.path.join(sock_dir, "m.sock")
    program = f"import aioc.monitor, {aio.__name__} as aio; aioc.monitor.start_monitor(aio.EventLoop(), {path!r}); print('STARTED')"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=LIMIT)
    assert (result.returncode, result.stdout, result.stderr) == (0, "STARTED\n", "")
    assert not os.path.exists(path)


def test_a_closed_loop_cannot_be_monitored(aio, sock_dir):
    loop = aio.EventLoop()
    loop.close()
    with pytest.raises(RuntimeError):
        monitor.start_monitor(loop, os.path.join(sock_dir, "m.sock"))
    assert os.listdir(sock_dir) == []


def test_the_command_says_when_there_is_no_monitor(sock_dir, capsys):
    # This process has no monitor on the default path (the tests use their own paths).
    assert not os.path.exists(monitor.default_path())
    result = subprocess.run(
        [sys.executable, "-m", "aioc.monitor", str(os.getpid())], capture_output=True, text=True, timeout=LIMIT
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"process {os.getpid()} has no monitor" in result.stderr
    assert "start_monitor(loop)" in result.stderr

    stale = os.path.join(sock_dir, "stale.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(stale)
    dead.close()
    assert monitor.main(["--path", stale]) == 1
    assert "no monitor listening" in capsys.readouterr().err

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, timeout=LIMIT)
    gone = int(child.stdout)  # a process that has exited
    assert monitor.main([str(gone)]) == 1
    assert f"there is no process {gone}" in capsys.readouterr().err


SERVER = '''
import importlib, signal, socket, sys
import aioc.monitor

aio = importlib.import_module(sys.argv[1])


def handle(conn):
    while True:
        data = yield aio.ReadEvent(conn)
        if not data:
            break
        yield from aio.sendall(conn, data)
    conn.close()


def server(loop, sock):
    while True:
        conn, address = yield aio.AcceptEvent(sock)
        loop.call_soon(handle(conn)).name = "handler"


def ticker():
    while True:
        yield aio.Sleep(30)


sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
loop = aio.EventLoop()
loop.call_soon(server(loop, sock)).name = "echo server"
loop.call_soon(ticker())
client = socket.create_connection(sock.getsockname())
signal.signal(signal.SIGTERM, lambda *_: loop.stop())
aioc.monitor.start_monitor(loop)
print("READY", flush=True)
loop.run_forever()
loop.close()
print("CLOSED", flush=True)
'''


def read_line(stream: Any, limit: float) -> str:
    """One line from a child's pipe, or an error after ``limit`` seconds."""
    got: list[str] = []
    thread = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    thread.start()
    thread.join(limit)
    if not got:
        raise AssertionError(f"no line from the child within {limit} s")
    return got[0]


def test_python_m_aioc_monitor_lists_a_servers_tasks(aio, tmp_path):
    script = tmp_path / "echo_server.py"
    script.write_text(textwrap.dedent(SERVER))
    server = subprocess.Popen(
        [sys.executable, str(script), aio.__name__], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    path = monitor.default_path(server.pid)
    try:
        assert read_line(server.stdout, LIMIT) == "READY\n"
        needles = ["waiting: AcceptEvent(fd=", "waiting: ReadEvent(fd=", "waiting: Sleep(30)"]
        wait_for_table(path, needles)  # the handler has reached its first read
        result = subprocess.run(
            [sys.executable, "-m", "aioc.monitor", str(server.pid)], capture_output=True, text=True, timeout=LIMIT
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith(f"aioc loop, pid {server.pid}, ") and "running, 3 tasks" in lines[0]
        accept_line = SERVER.splitlines().index("        conn, address = yield aio.AcceptEvent(sock)") + 1
        read_line_no = SERVER.splitlines().index("        data = yield aio.ReadEvent(conn)") + 1
        assert any("echo server" in line and f"{script}:{accept_line} in server" in line for line in lines)
        assert any("handler" in line and f"{script}:{read_line_no} in handle" in line for line in lines)
        assert any("ticker" in line and "waiting: Sleep(30)" in line for line in lines)

        stacked = subprocess.run(
            [sys.executable, "-m", "aioc.monitor", str(server.pid), "--stack"], capture_output=True, text=True, timeout=LIMIT
        )
        assert stacked.returncode == 0, stacked.stderr
        assert f'File "{script}", line {accept_line}, in server\n    conn, address = yield aio.AcceptEvent(sock)' in stacked.stdout

        server.terminate()
        assert read_line(server.stdout, LIMIT) == "CLOSED\n"
        assert server.wait(LIMIT) == 0
        assert not os.path.exists(path), "the server's socket file outlives its loop"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(LIMIT)
        server.stdout.close()
        server.stderr.close()
        if os.path.exists(path):
            os.unlink(path)
