"""Chooses the loop implementation: compiled when built, pure Python otherwise."""

from __future__ import annotations

from types import ModuleType

from . import _env
from . import _loop_py

implementation: ModuleType
if _env.no_extensions():
    implementation = _loop_py
else:
    try:
        from . import _loop_c as implementation
    except ImportError as exc:
        if _env.require_extensions():
            raise ImportError(
                "AIOC_REQUIRE_EXTENSIONS is set but the compiled loop aioc._loop_c "
                f"cannot be imported: {exc}"
            ) from exc
        implementation = _loop_py

#: "compiled" or "pure": which loop ``import aioc`` gives.
IMPLEMENTATION = "pure" if implementation is _loop_py else "compiled"
