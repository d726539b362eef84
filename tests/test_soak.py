"""The soak tool's CI size: held and churned connections leave RSS, fds and objects at baseline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aioc import _env

try:
    from aioc import _loop_c  # noqa: F401  (the soak runs the compiled loop)
except ImportError:
    if _env.require_extensions():
        raise
    pytest.skip("the compiled loop is not built", allow_module_level=True)

SOAK = Path(__file__).resolve().parents[1] / "tools" / "soak.py"
#: The quick run takes about 15 s; this bounds a hung one.
TIMEOUT = 120
#: Set by tools/sanitize.sh: AddressSanitizer's quarantine keeps freed memory,
#: so RSS grows by design there; fds and objects are still checked exactly.
RSS_TOLERANCE = os.environ.get("AIOC_SOAK_RSS_TOLERANCE_MIB")


def test_quick_soak_returns_to_baseline(tmp_path: Path) -> None:
    figures = tmp_path / "soak.json"
    tolerance = ["--rss-tolerance-mib", RSS_TOLERANCE] if RSS_TOLERANCE else []
    done = subprocess.run([sys.executable, str(SOAK), "--quick", "--json", str(figures), *tolerance],
                          capture_output=True, text=True, timeout=TIMEOUT)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    for row in ("RSS", "open fds", "GC objects", "loop._num_tasks", "len(loop._ready)"):
        assert any(line.startswith(row) and line.endswith("ok") for line in done.stdout.splitlines()), report
    assert "soak: passed" in done.stdout, report

    # The load ran in its own process, and the server saw all of it.
    soaked = json.loads(figures.read_text())["phases"]["soak"]
    client = soaked["client"]
    assert soaked["client_status"] == 0, report
    assert client["errors"] == {} and client["unhandled"] == 0, report
    assert client["held_opened"] == client["hold"] == 1_000, report
    assert client["churned"] == client["churn"] == 10_000, report
    assert soaked["accepted"] == 11_000, report


def test_client_process_reports_its_errors() -> None:
    """The client role, run alone against a closed port, reports its failures instead of hiding them."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once it is closed
    done = subprocess.run(
        [sys.executable, str(SOAK), "--client", "--port", str(port), "--hold", "3", "--churn", "0",
         "--clients", "2", "--seconds", "0.1", "--ping-interval", "1", "--cpu", "-1"],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["event"] for r in reports] == ["held", "done"], reports
    final = reports[-1]
    assert final["held_opened"] == 0 and sum(final["errors"].values()) == 3, final
    assert list(final["errors"]) == ["hold: ConnectionRefusedError"], final


def test_too_many_held_for_select_is_refused_at_once() -> None:
    done = subprocess.run([sys.executable, str(SOAK), "--quick", "--backend", "select"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--hold can be at most" in done.stderr
