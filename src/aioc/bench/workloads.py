"""What is measured: the workloads, their groups, and the --only filter."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    id: str
    label: str
    kind: str  # "net" (a server under load) or "sched" (in-process)
    unit: str
    mode: str = ""  # reply mode (aioc.bench.protocol) for "net"
    idle: int = 0  # extra idle connections held open for "net"
    sched: str = ""  # aioc.bench.scheduler workload for "sched"
    #: The contenders' suite that serves a "net" workload (aioc.bench.contenders): "plain", "streams" or "tls".
    suite: str = "plain"


DEFAULT_IDLE_LEVELS = (0, 1000, 10000)


def idle_id(level: int) -> str:
    """The keep-alive 64 B workload doubles as the 0-idle point of the idle series."""
    return "ka64" if level == 0 else f"idle{level}"


def build(idle_levels: tuple[int, ...] = DEFAULT_IDLE_LEVELS) -> list[Workload]:
    """Every workload, in report order."""
    workloads = [
        Workload("conn", "conn/s: connect, request, 64 B reply, server closes", "net", "conn/s", mode="close"),
        Workload("ka64", "keep-alive, 64 B body", "net", "req/s", mode="ka64"),
        Workload("ka1k", "keep-alive, 1 KiB body", "net", "req/s", mode="ka1024"),
        Workload("ka16k", "keep-alive, 16 KiB body", "net", "req/s", mode="ka16384"),
    ]
    for level in idle_levels:
        if level:
            workloads.append(
                Workload(idle_id(level), f"keep-alive 64 B with {level:,} idle connections", "net", "req/s",
                         mode="ka64", idle=level)
            )
    workloads += [
        Workload("streams", "streams API, keep-alive 64 B (and aioc's raw events)", "net",
                 "req/s", mode="ka64", suite="streams"),
        Workload("tls", "TLS streams, keep-alive 64 B (Python ssl client)", "net", "req/s",
                 mode="ka64", suite="tls"),
        Workload("switch", "task switches: tasks yield Sleep(0) / await asyncio.sleep(0)", "sched", "switches/s",
                 sched="switch"),
        Workload("spawn", "spawn-and-finish: trivial tasks spawned and run to completion", "sched", "tasks/s",
                 sched="spawn"),
        Workload("timers", "timers: tasks sleep random 0-50 ms delays", "sched", "timers/s", sched="timers"),
        Workload("queue", "queue: a producer and a consumer task pass items through a queue of 100", "sched",
                 "items/s", sched="queue"),
        Workload("lock", "lock: one task acquires and releases an uncontended lock", "sched", "pairs/s",
                 sched="lock"),
    ]
    return workloads


GROUPS = {
    "net": "every network workload",
    "keepalive": "ka64, ka1k, ka16k",
    "idle": "the idle-connection series (ka64 is its 0 point)",
    "scheduler": "switch, spawn, timers, queue, lock",
}


def select(patterns: list[str] | None, idle_levels: tuple[int, ...] = DEFAULT_IDLE_LEVELS) -> list[Workload]:
    """The workloads named by ``patterns`` (ids or group names), in report order.

    Raises ValueError for a name that is neither.
    """
    workloads = build(idle_levels)
    if not patterns:
        return workloads
    wanted: set[str] = set()
    ids = [w.id for w in workloads]
    for pattern in patterns:
        if pattern in ids:
            wanted.add(pattern)
        elif pattern == "net":
            wanted.update(w.id for w in workloads if w.kind == "net")
        elif pattern == "keepalive":
            wanted.update(("ka64", "ka1k", "ka16k"))
        elif pattern == "idle":
            wanted.update(w.id for w in workloads if w.kind == "net" and w.mode == "ka64" and w.suite == "plain")
        elif pattern == "scheduler":
            wanted.update(w.id for w in workloads if w.kind == "sched")
        else:
            raise ValueError(
                f"unknown workload {pattern!r}; choose from {', '.join(ids)} or a group: {', '.join(GROUPS)}"
            )
    return [w for w in workloads if w.id in wanted]
