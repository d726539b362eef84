"""Builds the C reference servers shipped in this package (``c_epoll_server.c``, ``c_io_uring_server.c``) at run time.

Both include ``c_server_common.h``, what they share, so it is copied next to
the source before the compiler runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources

SOURCE_NAME = "c_epoll_server.c"
#: The headers every server source includes from its own directory.
HEADER_NAMES = ("c_server_common.h",)


def source_text(name: str = SOURCE_NAME) -> str:
    return resources.files(__package__).joinpath(name).read_text()


def build(directory: str, compiler: str | None = None, source: str = SOURCE_NAME) -> tuple[str | None, str | None]:
    """Compile the server ``source`` into ``directory``: ``(executable, None)`` or ``(None, reason)``."""
    cc = compiler or os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        return None, f"no C compiler: {cc!r} is not on PATH"
    for name in (source, *HEADER_NAMES):
        try:
            text = source_text(name)
        except (OSError, FileNotFoundError) as exc:
            return None, f"the C source {name} is not installed with the package ({exc})"
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)
    src = os.path.join(directory, source)
    exe = os.path.join(directory, source[:-2])
    try:
        out = subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{cc} -O2 failed to run: {exc}"
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        # The first error, not the "In function" line before it.
        errors = [line for line in lines if "error" in line] or lines
        return None, f"{cc} -O2 {source} failed: {errors[0] if errors else 'exit ' + str(out.returncode)}"
    return exe, None
