"""Builds the C reference server (``c_epoll_server.c``, shipped in this package) at run time."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources

SOURCE_NAME = "c_epoll_server.c"


def source_text() -> str:
    return resources.files(__package__).joinpath(SOURCE_NAME).read_text()


def build(directory: str, compiler: str | None = None) -> tuple[str | None, str | None]:
    """Compile the server into ``directory``: ``(executable, None)`` or ``(None, reason)``."""
    cc = compiler or os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        return None, f"no C compiler: {cc!r} is not on PATH"
    try:
        text = source_text()
    except (OSError, FileNotFoundError) as exc:
        return None, f"the C source {SOURCE_NAME} is not installed with the package ({exc})"
    src = os.path.join(directory, SOURCE_NAME)
    exe = os.path.join(directory, "c_epoll_server")
    with open(src, "w") as f:
        f.write(text)
    try:
        out = subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{cc} -O2 failed to run: {exc}"
    if out.returncode != 0:
        first = (out.stderr or out.stdout).strip().splitlines()
        return None, f"{cc} -O2 failed: {first[0] if first else 'exit ' + str(out.returncode)}"
    return exe, None
