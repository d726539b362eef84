"""What the benchmark asks of the operating system: CPU times, CPUs, limits, machine facts."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuTimes:
    """A process's CPU time so far, in seconds.

    ``user`` and ``system`` come from ``/proc/<pid>/stat`` (10 ms ticks).
    ``total`` is the process's CPU clock (ns precision) when the kernel
    gives it, else ``user + system``.
    """

    user: float
    system: float
    total: float

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.system - other.system, self.total - other.total)


def read_cpu_times(pid: int) -> CpuTimes:
    """CPU times of process ``pid``; raises OSError if it is gone."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(b")") + 2 :].split()
    user = int(fields[11]) / CLOCK_TICKS
    system = int(fields[12]) / CLOCK_TICKS
    total = process_cpu_clock(pid)
    if total is None:
        total = user + system
    return CpuTimes(user, system, total)


def process_cpu_clock(pid: int) -> float | None:
    """The precise CPU seconds of process ``pid`` (all its threads), or None.

    Linux names another process's CPU clock ``((~pid) << 3) | 2``
    (CPUCLOCK_SCHED, process-wide), which ``clock_getcpuclockid(3)`` returns.
    """
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except (OSError, AttributeError, OverflowError):
        pass
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[0]) / 1e9  # the main thread only
    except (OSError, ValueError, IndexError):
        return None


def run_delay(pid: int | str = "self") -> float | None:
    """Seconds the process's main thread has sat runnable in a run queue, waiting for its CPU.

    Growth over a window means another process took the CPU: a noise gauge.
    """
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def split_cpu(delta: CpuTimes) -> tuple[float, float, float]:
    """``(user, system, total)`` of a measured interval, with user + system == total.

    The tick counts are coarse; the precise total is shared between user and
    system in their measured proportion (what the kernel itself does).
    """
    ticks = delta.user + delta.system
    total = max(delta.total, 0.0)
    if ticks <= 0:
        return 0.0, 0.0, total
    return total * delta.user / ticks, total * delta.system / ticks, total


def self_cpu() -> float:
    """This process's CPU seconds (user + system)."""
    return time.process_time()


def cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def plan_affinity() -> tuple[int | None, int | None]:
    """``(server_cpu, client_cpu)``: two different CPUs, or ``(None, None)`` on one CPU."""
    available = cpus()
    if len(available) < 2:
        return None, None
    return available[0], available[1]


def pin(cpu: int | None) -> None:
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except (AttributeError, OSError):
            pass


def child_setup(cpu: int | None):
    """A ``preexec_fn``: pin the child to ``cpu`` and have it killed when we die."""

    def setup() -> None:
        pin(cpu)
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
        except Exception:
            pass

    return setup


def raise_nofile_limit(wanted: int | None = None) -> int:
    """Raise the soft RLIMIT_NOFILE toward the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None else wanted
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def nofile_limits() -> tuple[int, int]:
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def wait_quiet(pids: list[int], timeout: float, threshold: float = 0.1, step: float = 0.02) -> float:
    """Wait until the processes ``pids`` together use under ``threshold`` of a CPU.

    Used between measurements, so that a server still closing 10,000 idle
    connections does not steal CPU 0 from the next contender.  Returns the
    seconds waited (at most ``timeout``).
    """
    start = time.monotonic()

    def total() -> float:
        used = 0.0
        for pid in pids:
            try:
                used += read_cpu_times(pid).total
            except OSError:
                pass
        return used

    before = total()
    while time.monotonic() - start < timeout:
        time.sleep(step)
        after = total()
        if after - before < threshold * step:
            break
        before = after
    return time.monotonic() - start


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tool_version(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


def machine_info() -> dict:
    import aioc

    from .contenders import OPTIONAL_PACKAGES, package_status

    versions = {f"{name}_version": package_status(name)[0] for name in OPTIONAL_PACKAGES}
    soft, hard = nofile_limits()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_allowed": cpus(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "aioc_version": getattr(aioc, "__version__", None),
        "aioc_implementation": aioc.IMPLEMENTATION,
        **versions,
        "cc": tool_version(["cc", "--version"]),
        "wrk": tool_version(["wrk", "--version"]),
        "rlimit_nofile": [soft, hard],
    }
