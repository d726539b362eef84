"""run_workers: worker processes on a SO_REUSEPORT port, restarted, stopped and given up on.

Each test runs tests/workers_app.py as a subprocess (a supervisor and its
workers) and talks to it over loopback TCP and with signals.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import aioc

APP = Path(__file__).with_name("workers_app.py")
#: Bound on every wait of these tests; none should come near it.
DEADLINE = 10.0


@pytest.fixture
def port() -> Iterator[int]:
    """A loopback port held (bound, not listening, SO_REUSEPORT) for the workers to share."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    yield holder.getsockname()[1]
    holder.close()


class Supervisor:
    def __init__(self, port: int, workers: int, mode: str, grace: float = 5.0) -> None:
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, str(APP), str(port), str(workers), mode, str(grace)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stdout = self.stderr = ""

    def ask(self) -> int:
        """Connect and read the answering worker's pid (waiting for the workers to listen)."""
        limit = time.monotonic() + DEADLINE
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE) as conn:
                    return int(conn.makefile().readline())
            except (ConnectionRefusedError, ConnectionResetError, ValueError):
                if time.monotonic() > limit or self.process.poll() is not None:
                    raise
                time.sleep(0.02)

    def pids(self, want: int) -> set[int]:
        """Ask until ``want`` different workers have answered."""
        seen: set[int] = set()
        limit = time.monotonic() + DEADLINE
        while len(seen) < want:
            assert time.monotonic() < limit, f"only {seen} answered"
            seen.add(self.ask())
        return seen

    def signal(self, signo: int) -> None:
        self.process.send_signal(signo)

    def finish(self) -> int:
        self.stdout, self.stderr = self.process.communicate(timeout=DEADLINE)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def supervise(port: int) -> Iterator:
    started: list[Supervisor] = []

    def start(workers: int, mode: str = "serve", grace: float = 5.0) -> Supervisor:
        started.append(Supervisor(port, workers, mode, grace))
        return started[-1]

    yield start
    for supervisor in started:
        supervisor.kill()


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT])
def test_workers_answer_and_stop_with_the_supervisor(supervise, signo):
    supervisor = supervise(3)
    pids = supervisor.pids(3)
    assert {parent_of(pid) for pid in pids} == {supervisor.process.pid}
    supervisor.signal(signo)
    assert supervisor.finish() == 0, supervisor.stderr
    for pid in pids:
        assert f"stopped {pid}" in supervisor.stdout
    assert f"forwarding {signal.Signals(signo).name} to the workers" in supervisor.stderr
    assert "supervisor exits 0" in supervisor.stdout


def test_ctrl_c_at_the_terminal_is_not_forwarded(port):
    """The terminal sends SIGINT to the whole process group, workers included:
    the supervisor does not send it to them a second time."""
    controller, terminal = os.openpty()

    def take_the_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        process = subprocess.Popen(
            [sys.executable, str(APP), str(port), "2", "serve"], stdin=terminal,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True, preexec_fn=take_the_terminal,
        )
        supervisor = Supervisor.__new__(Supervisor)
        supervisor.port, supervisor.process = port, process
        pids = supervisor.pids(2)
        os.write(controller, b"\x03")  # Ctrl-C
        assert supervisor.finish() == 0, supervisor.stderr
        for pid in pids:
            assert f"stopped {pid}" in supervisor.stdout
        assert "SIGINT came from the terminal" in supervisor.stderr
        assert "forwarding" not in supervisor.stderr
    finally:
        supervisor.kill()
        os.close(controller)
        os.close(terminal)


def test_a_killed_worker_is_restarted(supervise):
    supervisor = supervise(2)
    first = supervisor.pids(2)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    limit = time.monotonic() + DEADLINE
    while True:
        pid = supervisor.ask()
        if pid not in first:
            break
        assert time.monotonic() < limit, "no new worker answered"
    assert parent_of(pid) == supervisor.process.pid
    supervisor.signal(signal.SIGTERM)
    assert supervisor.finish() == 0, supervisor.stderr
    assert f"(pid {victim}) exited with status -9" in supervisor.stderr
    assert f"stopped {pid}" in supervisor.stdout


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(supervise):
    supervisor = supervise(2, "ignore-term", grace=0.3)
    pids = supervisor.pids(2)
    supervisor.signal(signal.SIGTERM)
    assert supervisor.finish() == 1
    for pid in pids:
        assert f"(pid {pid}) still runs after the grace period; killing it" in supervisor.stderr
    assert "supervisor exits 1" in supervisor.stdout


def test_a_worker_that_always_crashes_makes_the_supervisor_give_up(supervise):
    workers, max_failures = 2, 3  # workers_app.py runs with max_failures=3
    supervisor = supervise(workers, "crash")
    assert supervisor.finish() == 2
    assert "giving up" in supervisor.stderr
    starts = supervisor.stderr.count("started (pid")
    assert workers <= starts <= workers * max_failures  # bounded: no fork bomb
    # A worker started last may be stopped by the give-up before it crashes.
    assert max_failures <= supervisor.stderr.count("RuntimeError: this worker fails at start") <= starts


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers must be an int of 1 or more"),
        ({"workers": 1.5}, "workers must be an int of 1 or more"),
        ({"workers": 1, "grace": -1}, "grace must be a number of seconds"),
        ({"workers": 1, "max_failures": 0}, "max_failures must be an int of 1 or more"),
        ({"workers": 1, "backoff": float("nan")}, "backoff must be a number of seconds"),
    ],
)
def test_bad_arguments_are_refused_before_any_fork(kwargs, message):
    with pytest.raises(ValueError, match=message):
        aioc.run_workers(lambda: None, **kwargs)


def test_in_process_run_leaves_other_children_and_the_signal_mask_alone():
    """run_workers reaps only its workers, and puts the signal mask back."""
    bystander = subprocess.Popen(["true"])
    limit = time.monotonic() + DEADLINE
    while process_state(bystander.pid) != "Z":  # ended, not reaped: what a careless waitpid takes
        assert time.monotonic() < limit
        time.sleep(0.01)
    mask_before = signal.pthread_sigmask(signal.SIG_BLOCK, [])

    def main():
        os.kill(os.getppid(), signal.SIGTERM)  # the worker asks its supervisor to stop
        yield aioc.Sleep(0)

    assert aioc.run_workers(main, workers=1, grace=5.0) == 0
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask_before
    pid, status = os.waitpid(bystander.pid, 0)  # still ours to reap
    assert pid == bystander.pid and os.waitstatus_to_exitcode(status) == 0
    bystander.returncode = 0


def test_a_worker_starts_with_the_default_signal_handlers():
    """The caller's handlers (a test runner's, say) do not decide what a forwarded SIGTERM does."""
    previous = signal.signal(signal.SIGTERM, lambda *_: os._exit(7))
    try:
        def main():
            os.kill(os.getppid(), signal.SIGTERM)  # the supervisor forwards it back
            yield aioc.Sleep(30)  # ended by SIGTERM's default action, not by the handler above

        assert aioc.run_workers(main, workers=1, grace=10.0) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
