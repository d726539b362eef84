"""See what a running program's tasks are doing, from inside it or from a shell.

In the program::

    import aioc.monitor

    loop = aioc.EventLoop()
    aioc.monitor.start_monitor(loop)     # /tmp/aioc-monitor-<pid>.sock, mode 0600
    ...
    loop.run_forever()

From a shell, while it runs::

    python -m aioc.monitor PID           # one line per task
    python -m aioc.monitor PID --stack   # and every task's frames

The monitor is off unless the program starts it; it stops when the loop
closes, at :func:`stop_monitor` or when the program exits, and removes its
socket file (a process that is killed leaves it; the next monitor on that
path replaces it).
:func:`format_tasks` gives the same table as a string, to log it or print it
from a signal handler.

Why a thread, and why reading the loop from it is safe
------------------------------------------------------

The monitor answers from a daemon thread, not from a task of the loop:

- a task would keep ``run_forever`` from returning (it runs until no task is
  left), and it would only answer when the loop gets round to it, which is
  exactly when nobody needs a monitor: a loop held by a task that never
  yields is the case a monitor must still see;
- a daemon thread never keeps the process alive.

The thread reads the loop while the loop runs, with no lock, so it reads only
in small pieces that the GIL makes whole: ``loop.tasks()`` once (one call
that copies the list of unfinished tasks), then per task ``task.name`` and
``task.stack()``, each a snapshot of that one task.  Nothing is written.  A
task may finish, start waiting or wake up between two reads, so a line shows
each task at a slightly different instant, never a torn state; a task that
has finished by the time it is read is shown as ``finished``, and a read that
fails because the task changed under it is retried, then shown as
``unreadable``.  The thread holds a reference to the loop until it stops.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import linecache
import os
import select
import socket
import stat
import sys
import threading
import time
import weakref
from types import FrameType
from typing import Any, NamedTuple

from ._introspect import Frame

__all__ = ["Monitor", "default_path", "format_tasks", "start_monitor", "stop_monitor"]

#: The largest request a client may send (``tasks`` or ``stack``, one line).
MAX_REQUEST = 1024
#: Seconds a client has to send its request and read the answer.
CLIENT_TIMEOUT = 5.0
#: Seconds ``stop`` waits for the thread to end.
JOIN_TIMEOUT = 5.0
#: How often a failed read of one task is tried before it is shown as unreadable.
READ_ATTEMPTS = 3

REQUESTS = ("tasks", "stack")


def default_path(pid: int | None = None) -> str:
    """Where the monitor of process ``pid`` (this one by default) listens."""
    return f"/tmp/aioc-monitor-{os.getpid() if pid is None else pid}.sock"


# -- reading the loop ----------------------------------------------------------------

# Ids are handed out the first time the monitor sees a task (loop.tasks() lists
# them in creation order) and kept while the task lives.  Loops have no task id
# of their own; a counter is shorter to read than id(task).
_ids: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_ids_lock = threading.RLock()  # reentrant: format_tasks may run in a signal handler
_next_id = 0


def _task_id(task: Any) -> int:
    global _next_id
    with _ids_lock:
        number = _ids.get(task)
        if number is None:
            _next_id += 1
            number = _ids[task] = _next_id
        return number


class TaskInfo(NamedTuple):
    """One task as the monitor read it."""

    id: int
    name: str
    state: str  # "ready", "running", "waiting", "finished" or "unreadable"
    waiting_on: str  # what it waits on, "" unless waiting
    frames: list[Frame]


def _printable(text: str) -> str:
    # One line per task: a name or a path with a newline in it must not break the table.
    return text if text.isprintable() else repr(text)[1:-1]


def _describe_wait(waiting_on: Any) -> str:
    """What a task waits on, in a few words: ``ReadEvent(fd=7)``, ``Sleep(5.0)``, ``parked``."""
    if isinstance(waiting_on, str):
        return waiting_on
    if hasattr(waiting_on, "stack") and hasattr(waiting_on, "done"):  # a task it joins
        try:
            return f"join #{_task_id(waiting_on)} {_printable(waiting_on.name)}"
        except Exception:
            return "join"
    kind = type(waiting_on).__name__
    details = []
    sock = getattr(waiting_on, "sock", None)
    if sock is not None:
        try:
            details.append(f"fd={sock.fileno()}")
        except Exception:
            pass
    seconds = getattr(waiting_on, "seconds", None)
    if isinstance(seconds, (int, float)):
        details.append(f"{seconds:g}")
    address = getattr(waiting_on, "address", None)
    if address is not None:
        details.append(f"to {address!r}")
    return _printable(f"{kind}({', '.join(details)})")


def _executing_frames() -> set[tuple[str, str, int]]:
    """The (file, function, line) of every frame some thread is executing now."""
    found = set()
    for top in sys._current_frames().values():
        frame: FrameType | None = top
        while frame is not None:
            found.add((frame.f_code.co_filename, frame.f_code.co_name, frame.f_lineno))
            frame = frame.f_back
    return found


def _read_task(task: Any) -> TaskInfo:
    """One task, read in GIL-sized pieces: done, name, stack."""
    number = _task_id(task)
    name = "?"
    for _ in range(READ_ATTEMPTS):
        try:
            if task.done():
                return TaskInfo(number, name, "finished", "", [])
            name = _printable(task.name)
            frames, waiting_on = task.stack()
            break
        except Exception:
            # The pure loop reads a task's wait in two steps: the loop may
            # have moved the task between them.  Try again.
            continue
    else:
        return TaskInfo(number, name, "unreadable", "", [])
    if task.done():
        return TaskInfo(number, name, "finished", "", [])
    if waiting_on is not None:
        return TaskInfo(number, name, "waiting", _describe_wait(waiting_on), list(frames))
    return TaskInfo(number, name, "ready", "", list(frames))  # or running: see read_tasks


def read_tasks(loop: Any) -> list[TaskInfo]:
    """Every unfinished task of ``loop``, in creation order, as the monitor sees it.

    Safe from any thread: see the module's documentation.
    """
    tasks = loop.tasks()  # one call: a copy made under the GIL
    infos = []
    for task in tasks:
        info = _read_task(task)
        if info.state != "finished":
            infos.append(info)
    _find_running(infos)
    return infos


def _find_running(infos: list[TaskInfo]) -> None:
    """Tell the task being stepped right now from the ready ones.

    The loop does not say which task it is stepping, but that task's frame
    is on the loop thread's stack.  Frames are compared by file, function and
    line, then, since the line may have moved since the task was read, by
    file and function alone; only an unambiguous match counts, so two ready
    tasks of the same function are both shown ready.
    """
    ready = [index for index, info in enumerate(infos) if info.state == "ready" and info.frames]
    if not ready:
        return
    executing = _executing_frames()
    places = {(filename, function) for filename, function, _ in executing}
    outer = {i: infos[i].frames[0] for i in ready}
    exact = [i for i in ready if (outer[i].filename, outer[i].function, outer[i].lineno) in executing]
    loose = [i for i in ready if (outer[i].filename, outer[i].function) in places]
    found = exact if len(exact) == 1 else loose if len(loose) == 1 else []
    for i in found:
        infos[i] = infos[i]._replace(state="running")


def _where(frames: list[Frame]) -> str:
    if not frames:
        return "(not started)"
    last = frames[-1]
    return _printable(f"{last.filename}:{last.lineno} in {last.function}")


def _header(loop: Any, count: int) -> str:
    implementation = {"aioc._loop_c": "compiled", "aioc._loop_py": "pure"}.get(type(loop).__module__, type(loop).__module__)
    backend = getattr(loop, "backend", "?")
    running = "running" if loop.is_running() else "closed" if loop.is_closed() else "not running"
    plural = "" if count == 1 else "s"
    return f"aioc loop, pid {os.getpid()}, {implementation} ({backend}), {running}, {count} task{plural}"


def format_tasks(loop: Any, stack: bool = False) -> str:
    """The task table of ``loop`` as text; with ``stack``, every task's frames after it.

    One line per unfinished task: its id, its name, its state (ready,
    running, or waiting and on what) and where it is suspended (the file,
    line and function of its innermost frame).  Callable from any thread and
    from a signal handler.
    """
    infos = read_tasks(loop)
    rows = [("ID", "NAME", "STATE", "WHERE")]
    for info in infos:
        state = f"waiting: {info.waiting_on}" if info.state == "waiting" else info.state
        rows.append((str(info.id), info.name, state, _where(info.frames)))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [_header(loop, len(infos))]
    for row in rows:
        lines.append(f"{row[0]:>{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip())
    if stack:
        for info in infos:
            state = f"waiting: {info.waiting_on}" if info.state == "waiting" else info.state
            lines.append("")
            lines.append(f"task #{info.id} {info.name} ({state})")
            if not info.frames:
                lines.append("  (no frames: not started)")
            for frame in info.frames:
                lines.append(_printable(f'  File "{frame.filename}", line {frame.lineno}, in {frame.function}'))
                source = linecache.getline(frame.filename, frame.lineno).strip()
                if source:
                    lines.append("    " + _printable(source))
    return "\n".join(lines) + "\n"


# -- the server ----------------------------------------------------------------------


def _remove_stale(path: str) -> None:
    """Remove a socket file nobody listens on; refuse anything else at ``path``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise FileExistsError(errno.EEXIST, "not a socket; refusing to replace it", path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # stale: left by a process that died without cleaning up
    else:
        raise RuntimeError(f"a monitor already listens on {path}; pass another path")
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Monitor:
    """A monitor thread serving one loop's task table on a Unix socket.

    Made by :func:`start_monitor`; :meth:`stop` ends it and removes the socket.
    """

    def __init__(self, loop: Any, path: str | None = None) -> None:
        self.loop = loop
        self.path = default_path() if path is None else os.fspath(path)
        self._stopping = False
        self._lock = threading.Lock()
        self._stat: os.stat_result | None = None  # the socket file this monitor made
        _remove_stale(self.path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(self.path)
            self._stat = os.stat(self.path)
            # Before listen(), nobody can connect: the mode is set before anyone could.
            os.chmod(self.path, 0o600)
            self._listener.listen(8)
        except BaseException:
            self._listener.close()
            self._unlink()
            raise
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name=f"aioc-monitor {self.path}", daemon=True)
        self._thread.start()
        # A program that ends without closing its loop (Ctrl-C, sys.exit) still
        # removes its socket; only a kill leaves a stale one for the next start.
        atexit.register(self.stop)

    def __repr__(self) -> str:
        state = "stopped" if self._stopping else "serving"
        return f"<aioc Monitor {self.path} {state}>"

    def stop(self) -> None:
        """End the thread and remove the socket file.  Idempotent; any thread."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if threading.current_thread() is not self._thread:
            self._thread.join(JOIN_TIMEOUT)
        self._unlink()
        atexit.unregister(self.stop)
        with _monitors_lock:
            if self in _monitors:
                _monitors.remove(self)

    def _unlink(self) -> None:
        # Only our own socket: another process may have replaced the file since.
        mine = self._stat
        if mine is None:
            return
        try:
            current = os.lstat(self.path)
            if (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _serve(self) -> None:
        # poll, not select: the program may hold fds above FD_SETSIZE.
        poller = select.poll()
        poller.register(self._listener, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._stopping:
                ready = {fd for fd, _ in poller.poll()}
                if self._wake_r.fileno() in ready or self._stopping:
                    break
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    continue
                with conn:
                    self._answer(conn)
        finally:
            self._listener.close()
            self._wake_r.close()
            self._wake_w.close()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(CLIENT_TIMEOUT)
        try:
            request = _read_request(conn)
            if request not in REQUESTS:
                reply = f"unknown request {request!r}: send one of {', '.join(REQUESTS)}\n"
            else:
                try:
                    reply = format_tasks(self.loop, stack=request == "stack")
                except Exception as exc:  # never let one answer end the monitor
                    reply = f"the monitor could not read the loop: {exc!r}\n"
            conn.sendall(reply.encode("utf-8", "backslashreplace"))
        except OSError:
            pass  # the client went away or was too slow


def _read_request(conn: socket.socket) -> str:
    """The client's one-line request; none (EOF, or silence) asks for the table."""
    data = b""
    while b"\n" not in data and len(data) < MAX_REQUEST:
        try:
            chunk = conn.recv(MAX_REQUEST)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode("ascii", "replace").strip() or "tasks"


_monitors: list[Monitor] = []
_monitors_lock = threading.Lock()


def start_monitor(loop: Any, path: str | None = None) -> Monitor:
    """Serve ``loop``'s task table on the Unix socket ``path`` from a daemon thread.

    ``path`` defaults to ``/tmp/aioc-monitor-<pid>.sock``, which is what
    ``python -m aioc.monitor PID`` connects to.  The socket is readable by
    this user only (mode 0600); a stale socket file left there by a dead
    process is replaced.  The monitor stops when the loop closes, or at
    :func:`stop_monitor` / :meth:`Monitor.stop`.
    """
    if loop.is_closed():
        raise RuntimeError("the loop is closed")
    monitor = Monitor(loop, path)
    try:
        loop.add_close_callback(monitor.stop)
    except BaseException:
        monitor.stop()
        raise
    with _monitors_lock:
        _monitors.append(monitor)
    return monitor


def stop_monitor(loop: Any) -> bool:
    """Stop the monitors of ``loop``; False if it had none."""
    with _monitors_lock:
        found = [monitor for monitor in _monitors if monitor.loop is loop]
    for monitor in found:
        monitor.stop()
    return bool(found)


# -- the command line ----------------------------------------------------------------


def query(path: str, request: str = "tasks", timeout: float = CLIENT_TIMEOUT) -> str:
    """Ask the monitor at ``path`` for ``request`` (``tasks`` or ``stack``); its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(request.encode("ascii") + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aioc.monitor",
        description="Print the tasks of a running aioc program that called aioc.monitor.start_monitor(loop).",
    )
    parser.add_argument("pid", nargs="?", type=int, help="the program's process id")
    parser.add_argument("--path", help="the monitor's socket (default: /tmp/aioc-monitor-PID.sock)")
    parser.add_argument("--stack", action="store_true", help="also print every task's frames")
    parser.add_argument("--timeout", type=float, default=CLIENT_TIMEOUT, help="seconds to wait for the answer (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.pid is None and args.path is None:
        parser.error("give the program's PID or --path")
    path = args.path or default_path(args.pid)
    who = f"process {args.pid}" if args.pid is not None else path

    def fail(message: str) -> int:
        print(f"aioc.monitor: {message}", file=sys.stderr)
        return 1

    if args.pid is not None and args.path is None and not _process_exists(args.pid):
        return fail(f"there is no process {args.pid}")
    try:
        answer = query(path, "stack" if args.stack else "tasks", args.timeout)
    except FileNotFoundError:
        return fail(f"{who} has no monitor (no socket at {path}); the program must call aioc.monitor.start_monitor(loop)")
    except ConnectionRefusedError:
        return fail(f"{who} has no monitor listening on {path} (a stale socket file)")
    except PermissionError:
        return fail(f"no permission to connect to {path} (the monitor only lets its own user in)")
    except socket.timeout:
        return fail(f"the monitor at {path} did not answer within {args.timeout:g} s")
    except OSError as exc:
        return fail(f"cannot query the monitor at {path}: {exc}")
    sys.stdout.write(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
