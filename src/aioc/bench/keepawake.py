"""Keeps a CPU out of its idle state while the benchmark runs.

On virtual machines an idle CPU halts, and waking it for the next packet
costs far more than the software being measured: a closed-loop client and
server that take turns both idle half the time and measure the hypervisor.
A spinner at ``SCHED_IDLE`` priority runs only when nothing else wants the
CPU and gives it up at once to any normal task, so the server's and client's
own CPU times are not changed, only the wake-up latency.  ``--no-keep-awake``
turns this off.

``python -m aioc.bench.keepawake CPU SECONDS`` spins on CPU for at most SECONDS.
"""

from __future__ import annotations

import os
import sys
import time


def spin(cpu: int | None, seconds: float) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    end = time.monotonic() + seconds
    clock = time.monotonic
    while clock() < end:
        for _ in range(10000):
            pass


if __name__ == "__main__":
    spin(int(sys.argv[1]) if sys.argv[1] != "-" else None, float(sys.argv[2]))
