"""The optional C accelerator, or None.

``hftkit._native`` is built by ``pip install`` when a C compiler is present. Callers keep a
pure-Python twin of every native loop and pick one at import time; both are tested against
each other. ``HFTKIT_PURE_PYTHON=1`` forces the pure path (for tests, benchmarks and
debugging with a Python-level profiler).
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("HFTKIT_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from hftkit import _native
    except ImportError:
        return None
    return _native


NATIVE: ModuleType | None = _load()
"""``hftkit._native`` when built and not disabled, else None."""
