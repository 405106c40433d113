"""Whether the C kernel (`_kernel.c`) proves repeats, or every frame takes the slow path.

The package's build compiles the kernel when it can (a compiler and Python's headers); when
it could not, or `ARPWATCHD_KERNEL=off` is set (to compare the two), every frame is decoded
(dpkt) and tracked in Python: the exact slow path, the same events, only slower. The rules of
what is a provable repeat live in the kernel only. `--version` ("fast path: python"), one log
line at start and the `arpwatchd_build_info` metric (`fastpath="python"`) say which one runs.
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
"""Which fast path runs (c: the kernel; python: none, the slow path for every frame): the
label of `arpwatchd_build_info` and `--version`."""
