"""Whether the fast path's repeat loop runs in C (`_kernel.c`) or in Python.

The package's build compiles the kernel when it can (a compiler and Python's headers); when
it could not, or `ARPWATCHD_KERNEL=off` is set (to compare the two), the fast path runs the
same rules in Python, with the same events, only slower. `--version`, one log line at start
and the `arpwatchd_build_info` metric say which one runs.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def load() -> tuple[ModuleType | None, str | None]:
    """The compiled kernel, or None and why (absent, or switched off)."""
    if os.environ.get("ARPWATCHD_KERNEL", "").lower() in ("off", "0", "python"):
        return None, "switched off by ARPWATCHD_KERNEL"
    try:
        return importlib.import_module("arpwatchd._kernel"), None
    except ImportError as exc:
        return None, f"C kernel not built: {exc}"


KERNEL, FALLBACK = load()
FASTPATH = "c" if KERNEL is not None else "python"
"""Which fast path runs: the label of `arpwatchd_build_info` and `--version`."""
