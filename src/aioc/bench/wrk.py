"""The ``--client wrk`` cross-check: the HTTP workloads driven by wrk instead of our client."""

from __future__ import annotations

import math
import re
import shutil
import subprocess

from .system import child_setup

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def available() -> str | None:
    """The path of wrk, or None."""
    return shutil.which("wrk")


def command(port: int, close: bool, connections: int, seconds: int, threads: int = 1) -> list[str]:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if close:
        argv += ["-H", "Connection: close"]
    return argv + [f"http://127.0.0.1:{port}/"]


def _ms(text: str) -> float | None:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(output: str) -> dict:
    """The numbers of one wrk run's output."""
    result: dict = {"errors": 0, "error_kinds": {}}
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if match:
        result["completed"] = int(match.group(1))
        result["duration_s"] = float(match.group(2)) * _UNITS[match.group(3)] / 1000.0
    match = re.search(r"Requests/sec:\s*([\d.]+)", output)
    if match:
        result["rate"] = float(match.group(1))
    for pct, key in (("50", "p50_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        match = re.search(rf"^\s*{pct}%\s+(\S+)", output, re.MULTILINE)
        if match:
            result[key] = _ms(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if match:
        kinds = dict(zip(("connect", "read", "write", "timeout"), map(int, match.groups())))
        result["error_kinds"].update({k: v for k, v in kinds.items() if v})
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match:
        result["error_kinds"]["non-2xx"] = int(match.group(1))
    result["errors"] = sum(result["error_kinds"].values())
    return result


def run(port: int, close: bool, connections: int, window: float, cpu: int | None) -> dict:
    """Run wrk for ``ceil(window)`` seconds (wrk counts whole seconds) and parse it."""
    seconds = max(1, math.ceil(window))
    argv = command(port, close, connections, seconds)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, preexec_fn=child_setup(cpu))
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed (exit {out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    result = parse(out.stdout)
    if "rate" not in result:
        raise RuntimeError(f"could not read wrk's output: {out.stdout.strip()[:200]}")
    result["wrk_output"] = out.stdout
    return result
