"""The environment switches, read the same way by setup.py and at import time.

``AIOC_NO_EXTENSIONS=1`` builds and runs without the compiled loop;
``AIOC_REQUIRE_EXTENSIONS=1`` makes a missing compiled loop an import error.
"""

from __future__ import annotations

import os


def flag(name: str) -> bool:
    """True when the variable is set to anything but empty, 0, false, no or off."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def no_extensions() -> bool:
    return flag("AIOC_NO_EXTENSIONS")


def require_extensions() -> bool:
    return flag("AIOC_REQUIRE_EXTENSIONS")
